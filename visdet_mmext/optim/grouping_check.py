"""Refuse to load optimizer state into another optimizer, grouping or Muon routing.

Optimizer state is matched to parameters by position. Loaded into a different grouping (a
parameter moved from Muon to AdamW, another ``paramwise_cfg``, another constructor) torch would
hand one parameter's moments to another, or fail with a bare size mismatch; loaded into another
optimizer class it may even succeed, silently dropping the moments. The optimizers built by this
package's constructors name every group's parameters; ``state_dict`` also records the class and
the shapes, and
``load_state_dict`` compares both, and the parameter shapes, with the checkpoint's and names what
moved. A routing the loss graph changed at the first step is recorded beside them
(``traced_routing``), whose load hook runs first and puts the parameters where the checkpoint had
them, so this check compares like with like.
"""
from __future__ import annotations

from ..errors import CheckpointMismatchError
from ..registry.availability import qualified_name

RECORD_KEY = "visdet_mmext"  # extra top-level entry of the optimizer's state dict (torch ignores it)
_ADVICE = ("Resume with the optimizer, constructor and paramwise_cfg of the run that wrote the "
           "checkpoint, or start from its weights only (load_from=..., resume=False).")


def _placement(param_groups) -> dict[str, tuple[int, bool | None]]:
    return {name: (index, group.get("use_muon"))
            for index, group in enumerate(param_groups) for name in group.get("param_names", ())}


def _where(place) -> str:
    if place is None:
        return "absent"
    index, use_muon = place
    return f"group {index}" + ("" if use_muon is None else " (Muon)" if use_muon else " (AdamW)")


def describe_moves(saved_groups, current_groups, limit: int = 10) -> list[str]:
    saved, current = _placement(saved_groups), _placement(current_groups)
    moves = [f"{name}: checkpoint {_where(saved.get(name))} -> now {_where(current.get(name))}"
             for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]
    return moves[:limit] + ([f"... and {len(moves) - limit} more"] if len(moves) > limit else [])


def _sizes(groups) -> list[int]:
    return [len(group["params"]) for group in groups]


def _shapes(param_groups) -> list[list[list[int]]]:
    return [[list(p.shape) for p in group["params"]] for group in param_groups]


def _reshaped(saved_groups, saved_shapes, current_groups, limit: int = 10) -> list[str]:
    """Parameters (same position) whose shape differs between the checkpoint and now."""
    changes = []
    for g, (saved, now) in enumerate(zip(saved_shapes, _shapes(current_groups))):
        names = saved_groups[g].get("param_names") or [f"group {g} parameter {i}"
                                                       for i in range(len(saved))]
        changes += [f"{name}: checkpoint {tuple(a)} -> now {tuple(b)}"
                    for name, a, b in zip(names, saved, now) if a != b]
    return changes[:limit] + ([f"... and {len(changes) - limit} more"] if len(changes) > limit else [])


def _check(optimizer, state_dict):
    recorded = state_dict.get(RECORD_KEY) or {}
    saved_class = recorded.get("optimizer")
    if saved_class is not None and saved_class != qualified_name(optimizer):
        raise CheckpointMismatchError(
            f"The checkpoint's optimizer state was written by {saved_class}, and this run builds "
            f"{qualified_name(optimizer)}: its moments cannot be reused. {_ADVICE}")
    saved_groups = state_dict.get("param_groups", [])
    if all("param_names" in g for g in saved_groups):
        moves = describe_moves(saved_groups, optimizer.param_groups)
        if moves:
            raise CheckpointMismatchError(
                "The checkpoint's optimizer state was saved with a different parameter grouping or "
                "Muon routing; loading it would give parameters each other's moments. Parameters "
                "that moved:\n  " + "\n  ".join(moves) + f"\n{_ADVICE}")
    elif _sizes(saved_groups) != _sizes(optimizer.param_groups):
        raise CheckpointMismatchError(
            f"The checkpoint's optimizer state has {len(saved_groups)} param group(s) of "
            f"{_sizes(saved_groups)} parameters, this run builds {len(optimizer.param_groups)} of "
            f"{_sizes(optimizer.param_groups)}. {_ADVICE}")
    if "shapes" in recorded:
        reshaped = _reshaped(saved_groups, recorded["shapes"], optimizer.param_groups)
        if reshaped:
            raise CheckpointMismatchError(
                "The checkpoint's optimizer state belongs to a model with other parameter shapes "
                "(another model size or config):\n  " + "\n  ".join(reshaped) + f"\n{_ADVICE}")
    return None


def _record_class(optimizer, state_dict):
    state_dict.setdefault(RECORD_KEY, {}).update(optimizer=qualified_name(optimizer),
                                                shapes=_shapes(optimizer.param_groups))
    return state_dict


def guard_grouping(optimizer) -> None:
    """Check groups and class when state is loaded into ``optimizer``; record the class on save."""
    optimizer.register_load_state_dict_pre_hook(_check)
    optimizer.register_state_dict_post_hook(_record_class)
