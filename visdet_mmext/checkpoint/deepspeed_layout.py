"""A DeepSpeed checkpoint directory, read as data: which file holds what, and its weights.

DeepSpeed saves a checkpoint as a directory of state files: the model states of rank 0
(``mp_rank_00_model_states.pt``, at ZeRO-3 ``zero_pp_rank_0_mp_rank_00_model_states.pt``) hold
the weights under ``module`` and the client state mmengine adds (``meta``, ``message_hub``,
...); the ``*optim_states.pt`` files hold each rank's ZeRO shard. Below ZeRO-3 ``module`` holds
whole weights; at ZeRO-3 it holds empty placeholders, and ``param_shapes`` the whole shapes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..echo import echo
from ..errors import CheckpointError, CorruptCheckpointError
from .integrity import checkpoint_files
from .safe_load import safe_torch_load

#: The key of the weights in the model states.
DEEPSPEED_WEIGHTS = "module"


def model_states_file(directory: str | os.PathLike) -> Path | None:
    """The state file of a DeepSpeed checkpoint directory with the weights and client state."""
    files = [p for p in checkpoint_files(directory) if p.name.endswith("model_states.pt")
             and p.name.startswith(("mp_rank_", "zero_pp_rank_"))]
    return files[0] if files else None


def is_deepspeed_checkpoint(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and model_states_file(path) is not None


def load_deepspeed_checkpoint(directory) -> dict:
    """Every state file of a DeepSpeed checkpoint directory checked and loaded by
    ``safe_torch_load`` (tensors left on disk); returned: the model states.

    DeepSpeed reads these files itself, with no bound on what they hold: this pass gives them
    every bound a checkpoint file has here, before DeepSpeed opens one."""
    files = checkpoint_files(directory)
    states = model_states_file(directory)
    if states is None:
        found = (f"only {', '.join(f.name for f in files[:3])}" if files
                 else "no state files (*.pt)")
        raise CorruptCheckpointError(
            f"DeepSpeed checkpoint {echo(os.fspath(directory), 300)} holds {found}, no "
            "*model_states.pt with its weights. It was not loaded. Use another checkpoint (with "
            "--resume and no path, visdet-mmext train takes the newest usable one in the work dir).")
    loaded = {file: safe_torch_load(file, "cpu", mmap=True, deepspeed=True) for file in files}
    return loaded[states]


def _whole(shape) -> torch.Tensor:
    return torch.empty(tuple(shape), device="meta")  # a shape to compare, no memory


def saved_shapes(states: dict) -> dict:
    """The weights in ``states``, the ZeRO-3 placeholders replaced by their whole shapes."""
    saved = dict(states[DEEPSPEED_WEIGHTS])
    for group in states.get("param_shapes") or ():
        saved.update({name: _whole(shape) for name, shape in group.items() if name in saved})
    return saved


def model_shapes(module: torch.nn.Module) -> dict:
    """``module.state_dict()`` with ZeRO-3's partitioned parameters at their whole shapes."""
    state = module.state_dict()
    for name, param in module.named_parameters():
        if name in state and hasattr(param, "ds_shape"):
            state[name] = _whole(param.ds_shape)
    return state


def sliced(states: dict) -> list[str]:
    """The weights ``states`` holds only as ZeRO-3 placeholders."""
    weights = states.get(DEEPSPEED_WEIGHTS) or {}
    return [name for group in states.get("param_shapes") or () for name, shape in group.items()
            if name in weights and tuple(weights[name].shape) != tuple(shape)]


def as_checkpoint_file(directory: str) -> dict:
    """The checkpoint directory as a checkpoint file holds it: the weights under ``state_dict``,
    with the training state mmengine added. ZeRO-3 checkpoints (no whole weights) are refused."""
    states = load_deepspeed_checkpoint(directory)
    placeholders = sliced(states)
    if placeholders:
        raise CheckpointError(
            f"DeepSpeed checkpoint {echo(directory, 300)} holds ZeRO-3 slices of its weights "
            f"({placeholders[0]} and {len(placeholders) - 1} more), not whole ones. Gather them "
            "into one file with the zero_to_fp32.py script DeepSpeed saved in the same work dir, "
            "and load that file.")
    kept = {key: value for key, value in states.items() if key in ("meta", "message_hub")}
    return {"state_dict": states.get(DEEPSPEED_WEIGHTS) or {}, **kept}
