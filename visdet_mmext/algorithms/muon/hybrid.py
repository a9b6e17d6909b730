"""The AdamW half of hybrid Muon: its settings, and the split of an unflagged group by shape.

The one place that knows the AdamW side's defaults (Keller Jordan's lr ratio, betas, eps) and how
mmengine's multipliers carry over: a group's ``lr``/``weight_decay`` are Muon-side values (the
optimizer's lr times ``lr_mult``), so its AdamW part gets ``adamw_lr``/``adamw_weight_decay``
times the same factors. Used by :class:`~visdet_mmext.algorithms.muon.Muon` and by the package's
routing (``visdet_mmext.optim.routing``).
"""
from __future__ import annotations

#: AdamW lr per unit of Muon lr when none is given: 3e-4 at Keller Jordan's lr=0.02.
ADAMW_LR_RATIO = 0.015
ADAMW_BETAS = (0.9, 0.95)
ADAMW_EPS = 1e-8


def adamw_settings(lr: float, weight_decay: float, adjust_lr: str = "original",
                   adamw_lr: float | None = None, adamw_betas=None, adamw_eps: float | None = None,
                   adamw_weight_decay: float | None = None) -> dict:
    """The AdamW side's ``lr, betas, eps, weight_decay`` from Muon's optimizer settings.

    Without ``adamw_lr``: ``lr`` itself under ``adjust_lr='match_rms_adamw'`` (an AdamW-sized lr
    already), else ``lr * 0.015``. Without ``adamw_weight_decay``: ``weight_decay``.
    """
    if adamw_lr is None:
        adamw_lr = lr if adjust_lr == "match_rms_adamw" else lr * ADAMW_LR_RATIO
    return dict(lr=adamw_lr, betas=tuple(ADAMW_BETAS if adamw_betas is None else adamw_betas),
                eps=ADAMW_EPS if adamw_eps is None else adamw_eps,
                weight_decay=weight_decay if adamw_weight_decay is None else adamw_weight_decay)


def adamw_group(group: dict, base_lr: float, base_weight_decay: float, adamw: dict) -> dict:
    """``group`` (Muon-side ``lr``/``weight_decay``, scaled from the bases) as an AdamW group.

    ``betas``/``eps`` the group sets itself (e.g. from ``custom_keys``) are kept."""
    lr_mult = group.get("lr", base_lr) / base_lr if base_lr else 1.0
    decay_mult = group.get("weight_decay", base_weight_decay) / base_weight_decay \
        if base_weight_decay else 1.0
    return {"betas": adamw["betas"], "eps": adamw["eps"], **group, "use_muon": False,
            "lr": adamw["lr"] * lr_mult, "weight_decay": adamw["weight_decay"] * decay_mult}


def split_by_shape(group: dict, base_lr: float, base_weight_decay: float,
                   adamw: dict) -> list[dict]:
    """An unflagged group as a Muon group (tensors with >= 2 dims) then an AdamW group (the rest).

    ``params`` entries may be tensors or (name, tensor) pairs; ``param_names`` is split alongside.
    """
    params = list(group["params"])
    is_matrix = [(item[1] if isinstance(item, tuple) else item).ndim >= 2 for item in params]
    names = group.get("param_names")
    parts = []
    for use_muon in (True, False):
        chosen = [m == use_muon for m in is_matrix]
        part = dict(group, use_muon=True) if use_muon else \
            adamw_group(group, base_lr, base_weight_decay, adamw)
        part["params"] = [item for item, keep in zip(params, chosen) if keep]
        if names is not None and len(names) == len(params):
            part["param_names"] = [name for name, keep in zip(names, chosen) if keep]
        if part["params"] or (not use_muon and not any(is_matrix)):
            parts.append(part)
    return parts
