"""Optimizers that are built fine and would train nothing, found before the first iteration.

Each setting may be valid on its own and the whole still moves no weight: ``custom_keys`` with
``lr_mult=0.0`` on every parameter (``{'': dict(lr_mult=0.0)}``), or an lr times a multiplier
that overflows; ``use_muon=True`` on parameters Muon cannot take (vectors: routing sends them
to AdamW, so the entry's flag does nothing). These read the groups of the built optimizer.
"""
from __future__ import annotations

import logging
import math
import numbers

from mmengine.logging import print_log

from ..errors import OptimizerConfigError, RoutingError


def _trained(group) -> bool:
    return any(getattr(p, "requires_grad", True) for p in group["params"])


def check_learning_rates(optimizer) -> str | None:
    """Refuse a non-finite group lr; warn (and return the warning) when every trained group's
    lr is 0: an lr scheduler that sets absolute values (OneCycleLR) still trains such a run."""
    groups = [g for g in optimizer.param_groups if _trained(g)]
    for index, group in enumerate(optimizer.param_groups):
        lr = group.get("lr")
        if isinstance(lr, numbers.Real) and not math.isfinite(lr):
            names = group.get("param_names", [])[:3]
            raise OptimizerConfigError(
                f"param group {index} ({', '.join(names) or 'its parameters'}) gets lr={lr}: the "
                "optimizer lr times its paramwise_cfg lr_mult is not a finite number. Lower them.")
    rates = [g.get("lr") for g in groups]
    if not groups or not all(isinstance(lr, numbers.Real) and lr == 0 for lr in rates):
        return None
    warning = (f"every parameter group of {type(optimizer).__name__} has lr=0 (the optimizer's lr "
               "times paramwise_cfg lr_mult, e.g. custom_keys={'': dict(lr_mult=0.0)}): no weight "
               "will change. Set a positive lr, or lr_mult=0 only on the parameters to freeze.")
    print_log(warning, logger="current", level=logging.WARNING)
    return warning


def _matching_key(name: str, keys: list[str]) -> str | None:
    """The ``custom_keys`` entry mmengine applies to ``name``: the longest key it contains."""
    return next((key for key in sorted(sorted(keys), key=len, reverse=True) if key in name), None)


def check_muon_flags(model, custom_keys) -> None:
    """Refuse a ``custom_keys`` entry whose ``use_muon=True`` reaches no parameter Muon can take."""
    flagged = [key for key, entry in (custom_keys or {}).items()
               if isinstance(entry, dict) and entry.get("use_muon") is True]
    if not flagged:
        return
    reached: dict[str, list] = {key: [] for key in flagged}
    for name, param in model.named_parameters():
        key = _matching_key(name, list(custom_keys))
        if key in reached and param.requires_grad:
            reached[key].append((name, param.ndim))
    for key, params in reached.items():
        if params and all(ndim < 2 for _, ndim in params):
            names = ", ".join(name for name, _ in params[:3]) + (" ..." if len(params) > 3 else "")
            raise RoutingError(
                f"paramwise_cfg.custom_keys[{key!r}] sets use_muon=True, but every parameter it "
                f"reaches ({names}) has fewer than 2 dimensions: Muon orthogonalises matrices, so "
                "they train with AdamW and the flag does nothing. Remove use_muon from that entry, "
                "or name the weight matrices (e.g. a key ending in '.weight').")
