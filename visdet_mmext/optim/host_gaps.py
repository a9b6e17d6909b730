"""Per-optimizer fixes for gaps between mmengine's training loop and some optimizers.

Each function looks at the built param groups (and the model) before the optimizer exists
and either adapts the config or raises a clear error. The constructor calls ``adapt``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .validation import OptimizerConfigError

DADAPT_SCALABLE = ("DAdaptAdam",)  # honour per-group ``layer_scale``
DADAPT_NAMES = ("DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DAdaptAdan", "DAdaptLion")


@dataclass
class BuildPlan:
    """What the constructor is about to build; adapters edit it in place."""
    name: str  # registry name of the optimizer (or class name)
    optimizer_cfg: dict
    wrapper_cfg: dict
    groups: list[dict]  # param groups (a single group for a plain parameter list)
    model: nn.Module
    notes: list[str] = field(default_factory=list)


def _use_wrapper(plan: BuildPlan, wrapper: str) -> None:
    if plan.wrapper_cfg.get("type", "OptimWrapper") == "OptimWrapper":
        plan.wrapper_cfg["type"] = wrapper
        plan.notes.append(f"{plan.name} trains through {wrapper}")


def _lbfgs(plan: BuildPlan) -> None:
    _use_wrapper(plan, "ClosureOptimWrapper")


def _sparse_adam(plan: BuildPlan) -> None:
    sparse = {id(m.weight) for m in plan.model.modules()
              if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse}
    names = {id(p): n for n, p in plan.model.named_parameters()}
    dense = [names.get(id(p), tuple(p.shape)) for g in plan.groups for p in g["params"]
             if id(p) not in sparse and p.requires_grad]
    if dense:
        shown = ", ".join(map(str, dense[:5])) + (" ..." if len(dense) > 5 else "")
        raise OptimizerConfigError(
            f"SparseAdam steps only sparse gradients, which come from nn.Embedding(sparse=True) or "
            f"nn.EmbeddingBag(sparse=True); {len(dense)} parameter(s) would get dense gradients: "
            f"{shown}. Make those embeddings sparse, freeze the dense parameters, or use Adam.")


def _dadapt(plan: BuildPlan) -> None:
    base_lr = plan.optimizer_cfg.get("lr", 1.0)
    lrs = {g.get("lr", base_lr) for g in plan.groups}
    if len(lrs) > 1:
        if plan.name not in DADAPT_SCALABLE:
            raise OptimizerConfigError(
                f"{plan.name} needs the same lr in every param group (it adapts one step size d), but "
                f"paramwise_cfg gives {len(lrs)} different values {sorted(lrs)}. Remove lr_mult/"
                "bias_lr_mult from paramwise_cfg, or use DAdaptAdam, which maps them to layer_scale.")
        for group in plan.groups:  # DAdaptAdam scales its step per group by layer_scale
            group["layer_scale"] = group.pop("lr", base_lr) / base_lr if base_lr else 1.0
            group["lr"] = base_lr
        plan.notes.append(f"{plan.name}: lr multipliers applied as layer_scale")
    _use_wrapper(plan, "DAdaptOptimWrapper")


def _hf_adafactor(plan: BuildPlan) -> None:
    relative = plan.optimizer_cfg.get("relative_step", True)
    if relative and plan.optimizer_cfg.get("lr") is not None:
        raise OptimizerConfigError("Adafactor: lr is ignored with relative_step=True; drop lr, or set "
                                   "relative_step=False (and scale_parameter=False) to use it.")
    if not relative and plan.optimizer_cfg.get("lr") is None:
        raise OptimizerConfigError("Adafactor: relative_step=False needs a numeric lr.")
    if relative:
        # the constructor groups with a placeholder base lr of 1.0 when lr is None
        lrs = {g.get("lr") for g in plan.groups}
        if lrs - {None, 1.0}:
            raise OptimizerConfigError("Adafactor with relative_step=True computes its own step size: "
                                       "lr multipliers in paramwise_cfg have no effect. Remove them "
                                       "or use relative_step=False with a numeric lr.")
        for group in plan.groups:
            group.pop("lr", None)


ADAPTERS = {
    "LBFGS": _lbfgs,
    "SparseAdam": _sparse_adam,
    "Adafactor": _hf_adafactor,
    **{name: _dadapt for name in DADAPT_NAMES},
}


def adapt(plan: BuildPlan) -> None:
    adapter = ADAPTERS.get(plan.name)
    if adapter is not None:
        adapter(plan)
