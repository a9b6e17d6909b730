"""Config adapters: what some optimizers need from an mmengine build that others do not.

A catalog row may name one. The constructor calls it with the :class:`BuildPlan` (param groups,
optimizer and wrapper configs, the model) before the optimizer exists; it edits the plan or raises
:class:`OptimizerConfigError` naming the fix. The first docstring line is the row's README note.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import OptimizerConfigError


@dataclass
class BuildPlan:
    """What the constructor is about to build."""
    name: str  # registry name of the optimizer (or class name)
    optimizer_cfg: dict
    wrapper_cfg: dict
    groups: list[dict]  # param groups (a single group for a plain parameter list)
    model: nn.Module
    notes: list[str] = field(default_factory=list)  # logged as information
    warnings: list[str] = field(default_factory=list)  # logged as warnings


def line_search_on_minibatches(plan: BuildPlan) -> None:
    """Warns when no line search guards its steps on mini-batches."""
    if plan.optimizer_cfg.get("line_search_fn") is None:
        plan.warnings.append(
            f"{plan.name} without line_search_fn takes full quasi-Newton steps from curvature pairs "
            "of different mini-batches, which often diverges (NaN). Settings that work on "
            "mini-batches: lr=1.0, max_iter=4, history_size=10, line_search_fn='strong_wolfe', "
            "with a decaying lr schedule (the packaged config optimizers/lbfgs); or use full batches.")


def sparse_only(plan: BuildPlan) -> None:
    """Refuses dense parameters before training."""
    sparse = {id(m.weight) for m in plan.model.modules()
              if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse}
    dense = [name for g in plan.groups for p, name in zip(g["params"], g["param_names"])
             if id(p) not in sparse and p.requires_grad]
    if dense:
        shown = ", ".join(map(str, dense[:5])) + (" ..." if len(dense) > 5 else "")
        raise OptimizerConfigError(
            f"SparseAdam steps only sparse gradients, which come from nn.Embedding(sparse=True) or "
            f"nn.EmbeddingBag(sparse=True); {len(dense)} parameter(s) would get dense gradients: "
            f"{shown}. Make those embeddings sparse, freeze the dense parameters, or use Adam.")


def _group_lrs(plan: BuildPlan, base_lr: float) -> set:
    return {g.get("lr", base_lr) for g in plan.groups}


def lr_mult_as_layer_scale(plan: BuildPlan) -> None:
    """lr_mult becomes layer_scale; d*lr logged as train/effective_lr."""
    base_lr = plan.optimizer_cfg.get("lr", 1.0)
    if len(_group_lrs(plan, base_lr)) > 1:
        for group in plan.groups:  # DAdaptAdam scales its step per group by layer_scale
            group["layer_scale"] = group.pop("lr", base_lr) / base_lr if base_lr else 1.0
            group["lr"] = base_lr
        plan.notes.append(f"{plan.name}: lr multipliers applied as layer_scale")


def single_lr(plan: BuildPlan) -> None:
    """Refuses per-group lr; d*lr logged as train/effective_lr."""
    base_lr = plan.optimizer_cfg.get("lr", 1.0)
    lrs = _group_lrs(plan, base_lr)
    if len(lrs) > 1:
        raise OptimizerConfigError(
            f"{plan.name} needs the same lr in every param group (it adapts one step size d), but "
            f"paramwise_cfg gives {len(lrs)} different values {sorted(lrs)}. Remove lr_mult/"
            "bias_lr_mult from paramwise_cfg, or use DAdaptAdam, which maps them to layer_scale.")


def relative_step(plan: BuildPlan) -> None:
    """lr=None logs the relative step it applies instead of crashing the lr logger."""
    relative = plan.optimizer_cfg.get("relative_step", True)
    if relative and plan.optimizer_cfg.get("lr") is not None:
        raise OptimizerConfigError("Adafactor: lr is ignored with relative_step=True; drop lr, or set "
                                   "relative_step=False (and scale_parameter=False) to use it.")
    if not relative and plan.optimizer_cfg.get("lr") is None:
        raise OptimizerConfigError("Adafactor: relative_step=False needs a numeric lr.")
    if relative:
        # the constructor groups with a placeholder base lr of 1.0 when lr is None
        if {g.get("lr") for g in plan.groups} - {None, 1.0}:
            raise OptimizerConfigError("Adafactor with relative_step=True computes its own step size: "
                                       "lr multipliers in paramwise_cfg have no effect. Remove them "
                                       "or use relative_step=False with a numeric lr.")
        for group in plan.groups:
            group.pop("lr", None)


def _refreshed_by_sophia_wrapper(plan: BuildPlan) -> None:
    wrapper = plan.wrapper_cfg.get("type", "OptimWrapper")
    if wrapper not in ("OptimWrapper", "SophiaOptimWrapper"):
        raise OptimizerConfigError(
            f"{plan.name} needs its Hessian estimate refreshed every update_period steps, which "
            f"SophiaOptimWrapper does; optim_wrapper type {wrapper!r} would never refresh it. "
            "Remove optim_wrapper.type (or set it to 'SophiaOptimWrapper').")


def gnb_refresh(plan: BuildPlan) -> None:
    """Hessian refreshed every update_period steps from the model's logits (one extra backward).

    The model names the module whose output is its logits: a ``logits_module`` attribute, or
    ``optim_wrapper=dict(type='SophiaOptimWrapper', logits_module='head', ...)`` (docs/sophia.md).
    """
    _refreshed_by_sophia_wrapper(plan)
    name = plan.wrapper_cfg.get("logits_module")
    if name is not None:
        if name not in dict(plan.model.named_modules()):
            raise OptimizerConfigError(
                f"optim_wrapper.logits_module={name!r} is not a module of "
                f"{type(plan.model).__name__}; name the module whose output is the logits, "
                "e.g. 'head'.")
    elif not isinstance(getattr(plan.model, "logits_module", None), nn.Module):
        raise OptimizerConfigError(
            f"SophiaG estimates the Hessian from the model's logits, and "
            f"{type(plan.model).__name__} does not say where they are: give it a `logits_module` "
            "attribute (the module whose output is the logits), or name it in the config: "
            "optim_wrapper=dict(type='SophiaOptimWrapper', logits_module='head', ...) "
            "(docs/sophia.md); or use SophiaH.")


def hutchinson_refresh(plan: BuildPlan) -> None:
    """Hessian refreshed every update_period steps by a Hutchinson product (one extra backward)."""
    _refreshed_by_sophia_wrapper(plan)
