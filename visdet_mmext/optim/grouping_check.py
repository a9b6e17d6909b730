"""Refuse to load optimizer state into a different grouping.

Optimizer state is matched to parameters by position. If a checkpoint was written with another
routing or grouping (say a parameter moved from Muon to AdamW), torch would load the moment
buffers of one parameter into another, or fail with a bare size mismatch. Groups built by the
package constructors carry ``param_names``; this pre-hook compares them with the checkpoint's
and names the parameters that moved.
"""
from __future__ import annotations


def _placement(param_groups) -> dict[str, tuple[int, bool | None]]:
    return {name: (index, group.get("use_muon"))
            for index, group in enumerate(param_groups) for name in group.get("param_names", ())}


def describe_moves(saved_groups, current_groups, limit: int = 10) -> list[str]:
    saved, current = _placement(saved_groups), _placement(current_groups)
    moves = []
    for name in sorted(set(saved) | set(current)):
        before, after = saved.get(name), current.get(name)
        if before == after:
            continue
        def where(place):
            if place is None:
                return "absent"
            index, use_muon = place
            side = "" if use_muon is None else (" (Muon)" if use_muon else " (AdamW)")
            return f"group {index}{side}"
        moves.append(f"{name}: checkpoint {where(before)} -> now {where(after)}")
    return moves[:limit] + ([f"... and {len(moves) - limit} more"] if len(moves) > limit else [])


def _check(optimizer, state_dict):
    saved_groups = state_dict.get("param_groups", [])
    if not all("param_names" in g for g in saved_groups):
        return None  # written by another constructor: torch's own checks apply
    moves = describe_moves(saved_groups, optimizer.param_groups)
    if moves:
        raise ValueError(
            "the checkpoint's optimizer state was saved with a different parameter grouping or Muon "
            "routing; loading it would give parameters each other's moment buffers. Parameters "
            "that moved:\n  " + "\n  ".join(moves) + "\nUse the routing/paramwise_cfg of the "
            "checkpoint's run to resume, or load only the weights (load_from, resume=False).")
    return None


def guard_grouping(optimizer) -> None:
    if all("param_names" in group for group in optimizer.param_groups):
        optimizer.register_load_state_dict_pre_hook(_check)
