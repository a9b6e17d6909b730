"""Which checkpoint a run can resume from, and whether a loaded one can be resumed.

A work dir collects more than a run's own intact checkpoints: a save cut off by a kill (an empty
``last_checkpoint``, a truncated newest file), a flipped bit, a weights-only export dropped in as
``iter_50.pth``, a directory that happens to carry a checkpoint's name, a ``last_checkpoint``
naming a file that was moved. ``--resume`` without a path tries the candidates newest first and
takes the first usable one; each one it skips is named with the reason.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..echo import clip
from ..errors import CheckpointError
from . import integrity
from .deepspeed_layout import DEEPSPEED_WEIGHTS, is_deepspeed_checkpoint, load_deepspeed_checkpoint
from .safe_load import safe_torch_load

NUMBERED = re.compile(r"(iter|epoch)_(\d+)\.pth")
#: What mmengine's ``resume`` reads from a checkpoint besides the weights.
TRAINING_STATE = ("meta", "message_hub")
#: Where a checkpoint file holds the weights (DeepSpeed's model states: ``DEEPSPEED_WEIGHTS``).
WEIGHTS = "state_dict"


def saves_directories(cfg) -> bool:
    """The run's checkpoints are DeepSpeed checkpoint directories (its strategy is DeepSpeed's);
    every other runner and strategy saves one file per checkpoint."""
    strategy = cfg.get("strategy")
    return isinstance(strategy, dict) and "DeepSpeed" in str(strategy.get("type", ""))


def weights_only_advice(path: str) -> str:
    return (f"start a new run from its weights with --cfg-options load_from={path} (and no "
            "--resume)")


def training_state_problem(checkpoint, path: str, weights: str = WEIGHTS) -> str | None:
    """Why a loaded checkpoint cannot be resumed (it holds no training state), or None."""
    if not isinstance(checkpoint, Mapping):
        return f"it holds a {type(checkpoint).__name__}, not a checkpoint dict"
    missing = [key for key in (*TRAINING_STATE, weights) if key not in checkpoint]
    if missing:
        return (f"it holds no training state ({', '.join(missing)} missing), as a weights-only "
                f"export does: {weights_only_advice(path)}")
    meta = checkpoint["meta"]
    if not isinstance(meta, Mapping) or not all(
            isinstance(meta.get(key), int) and not isinstance(meta.get(key), bool)
            for key in ("iter", "epoch")):
        return "its meta has no iteration and epoch counts to continue from"
    return None


def kind_problem(path: str, *, directories: bool = False) -> str | None:
    """Why ``path`` is not the kind of thing this run resumes from, or None. ``directories``:
    the run saves DeepSpeed checkpoints (directories of state files), else checkpoints are
    regular files (a FIFO or a device is never opened: reading it could block or never end)."""
    if not os.path.exists(path):
        if os.path.islink(path):
            return f"a link to {os.readlink(path)}, which does not exist"
        return "no such file or directory"
    if os.path.isdir(path):
        if directories:
            return None
        if is_deepspeed_checkpoint(path):
            return ("a DeepSpeed checkpoint (a directory), and this run saves checkpoint files: "
                    "resume it with the DeepSpeed config that wrote it, or "
                    + weights_only_advice(path))
        return "a directory, not a checkpoint file"
    if not os.path.isfile(path):
        return "not a regular file"
    if directories:
        return ("a checkpoint file, and this run's DeepSpeed checkpoints are directories: "
                "resume it with the config that wrote it, or " + weights_only_advice(path))
    return None


def load_resumable(path: str, *, directories: bool = False):
    """The checkpoint at ``path`` loaded as data for the checks (tensors left on disk), and the
    key of its weights. Raises :class:`CheckpointError` for a damaged or unsafe one."""
    if directories:
        return load_deepspeed_checkpoint(path), DEEPSPEED_WEIGHTS
    return safe_torch_load(path, map_location="cpu", mmap=True), WEIGHTS


def resumable_problem(path: str, *, directories: bool = False) -> str | None:
    """Why ``path`` cannot be resumed (its kind, damage, contents), or None."""
    reason = kind_problem(path, directories=directories) or (
        integrity.directory_problem(path) if directories else integrity.problem(path))
    if reason:
        return reason
    try:
        checkpoint, weights = load_resumable(path, directories=directories)
    except CheckpointError as error:
        return clip(str(error).split(". ")[0], 300)
    return training_state_problem(checkpoint, path, weights)


@dataclass
class Candidates:
    """What ``--resume`` found in a work dir: the checkpoint to take, and what it skipped."""
    chosen: str | None = None
    skipped: list[str] = field(default_factory=list)  # one line each, the reason included
    rejected: int = 0  # checkpoints among them (an empty ``last_checkpoint`` is not one)


def find_resume_checkpoint(work_dir: str, *, directories: bool = False) -> Candidates:
    """The newest usable checkpoint in ``work_dir``: the target of ``last_checkpoint`` (which
    may lie elsewhere) and the numbered checkpoints, newest first."""
    found = Candidates()
    if not os.path.isdir(work_dir):
        return found
    numbered = sorted(((int(m.group(2)), os.path.join(work_dir, name))
                       for name in os.listdir(work_dir) if (m := NUMBERED.fullmatch(name))),
                      reverse=True)
    candidates = [path for _, path in numbered]
    record = os.path.join(work_dir, "last_checkpoint")
    if os.path.isfile(record):
        with open(record) as f:
            last = f.read().strip()
        if not last:
            found.skipped.append(f"{record}: empty (a save was interrupted while recording it)")
        elif os.path.abspath(last) not in map(os.path.abspath, candidates):
            candidates.insert(0, last)
    for path in candidates:
        reason = resumable_problem(path, directories=directories)
        if reason is None:
            found.chosen = path
            return found
        found.skipped.append(f"{path}: {reason}")
        found.rejected += 1
    return found
