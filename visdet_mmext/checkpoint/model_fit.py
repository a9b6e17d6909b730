"""Does a checkpoint being resumed belong to this model, and to the iteration its name says?

mmengine loads a resumed checkpoint's weights with ``strict=False``: weights under other names
are skipped and weights of another shape are left as initialised, each with a log line, while
the optimizer state, the schedulers and the iteration count load and training goes on (and
saves a newer checkpoint of the wrong model). Resuming continues one run, so the parameter
and buffer names and shapes must match exactly; ``grouping_check`` does the same for the
optimizer state. Starting another model from a checkpoint's weights is ``load_from``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import CheckpointError, CheckpointMismatchError
from .resume import NUMBERED, WEIGHTS, training_state_problem, weights_only_advice

#: Differences named in the message.
SHOWN = 8


def _shape(value):
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


def differences(model_state: Mapping, saved_state: Mapping) -> tuple[list[str], dict[str, int]]:
    """Each name whose presence or shape differs, model order first; and the counts by kind."""
    lines, counts = [], {"missing": 0, "extra": 0, "reshaped": 0}
    for name, value in model_state.items():
        if name not in saved_state:
            counts["missing"] += 1
            lines.append(f"{name}: in the model {_shape(value)}, not in the checkpoint")
        elif _shape(saved_state[name]) != _shape(value):
            counts["reshaped"] += 1
            lines.append(f"{name}: checkpoint {_shape(saved_state[name])}, model {_shape(value)}")
    for name, value in saved_state.items():
        if name not in model_state:
            counts["extra"] += 1
            lines.append(f"{name}: in the checkpoint {_shape(value)}, not in the model")
    return lines, counts


def revised(state_dict: Mapping, revise_keys) -> dict:
    """The checkpoint's names as mmengine loads them (``revise_keys``, e.g. a ``module.`` prefix
    stripped)."""
    state = dict(state_dict)
    for pattern, replacement in revise_keys:
        state = {re.sub(pattern, replacement, key): value for key, value in state.items()}
    return state


def check_resumed(model_state: Mapping, checkpoint, path: str, revise_keys=(),
                  weights: str = WEIGHTS) -> None:
    """Before a resumed checkpoint reaches the model whose ``state_dict()`` is ``model_state``:
    it holds training state and the model's weights (:class:`CheckpointError` otherwise, naming
    the fix); a file named for another iteration is reported."""
    problem = training_state_problem(checkpoint, path, weights)
    if problem:
        raise CheckpointError(f"--resume {path}: {problem}. Nothing was loaded.")
    check_model_fit(model_state, checkpoint[weights], path, revise_keys)
    warning = iteration_mismatch(checkpoint, path)
    if warning:
        import logging

        from mmengine.logging import print_log
        print_log(warning, logger="current", level=logging.WARNING)


def check_model_fit(model_state: Mapping, saved: Mapping, path: str, revise_keys=()) -> None:
    """Raise :class:`CheckpointMismatchError` unless the weights ``saved`` fit the model whose
    ``state_dict()`` is ``model_state``."""
    lines, counts = differences(model_state, revised(saved, revise_keys))
    if not lines:
        return
    counts = [f"{counts['reshaped']} of them have another shape in it" * bool(counts["reshaped"]),
              f"{counts['missing']} are missing from it" * bool(counts["missing"]),
              f"it holds {counts['extra']} entries the model lacks" * bool(counts["extra"])]
    shown = lines[:SHOWN] + ([f"... and {len(lines) - SHOWN} more"] if len(lines) > SHOWN else [])
    raise CheckpointMismatchError(
        f"Checkpoint {path} was not saved from this model ({len(model_state)} weights and "
        f"buffers), so it cannot be resumed: {'; '.join(filter(None, counts))}. First "
        "differences:\n  " + "\n  ".join(shown) + "\nNothing was loaded. Resume with the config "
        "of the run that wrote it, or " + weights_only_advice(path) + ": the weights that fit "
        "load and the rest are listed in the log.")


def iteration_mismatch(checkpoint: Mapping, path: str) -> str | None:
    """A warning when the file name's count (``iter_40.pth``) is not the checkpoint's own."""
    match = NUMBERED.fullmatch(str(path).replace("\\", "/").rsplit("/", 1)[-1])
    meta = checkpoint.get("meta")
    if match is None or not isinstance(meta, Mapping):
        return None
    unit, number = match.group(1), int(match.group(2))
    own = meta.get(unit)
    if not isinstance(own, int) or own == number:
        return None
    word = {"iter": "iteration", "epoch": "epoch"}[unit]
    return (f"{path} is named for {word} {number}, but the checkpoint holds {word} {own} (its "
            f"meta.{unit}): the run resumes at {word} {own}. The file was renamed or copied over "
            "another; check that it is the checkpoint you meant.")
