"""mmengine's default constructor, with clear errors and each optimizer's catalog adapter.

Installed as mmengine's ``DefaultOptimWrapperConstructor`` (``visdet_mmext.compat``), so every
config gets it without naming it. Grouping is exactly mmengine's (``paramwise_cfg`` keeps its
meaning); what changes: a bad optimizer config fails at build time with a message naming the fix;
the catalog row's adapter and wrapper make LBFGS, SparseAdam, D-Adaptation and HF Adafactor train
through the Runner; every group names its parameters, so resuming with another grouping or
optimizer fails with the parameters that moved (``grouping_check``).
"""
from __future__ import annotations

import inspect
import logging

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from ..algorithms.shards import is_dtensor
from ..catalog import CATALOG
from ..catalog.adapters import BuildPlan
from ..errors import OptimizerConfigError
from .grouping_check import guard_grouping
from .onebit_setup import connect_onebit
from .trainability import check_learning_rates, check_muon_flags
from .validation import (check_device, check_optimizer_cfg, check_paramwise_cfg, check_sharded,
                         warn_unmatched_keys)


def _default_lr(optimizer_cls):
    try:
        parameter = inspect.signature(optimizer_cls).parameters.get("lr")
    except (TypeError, ValueError):
        return None
    if parameter is None or not isinstance(parameter.default, (int, float)):
        return None
    return parameter.default


def name_groups(groups: list[dict], model) -> list[dict]:
    """``groups`` with ``param_names`` (the one place the model's name map is built)."""
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        group["param_names"] = [names[id(p)] for p in group["params"]]
    return groups


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CheckedOptimWrapperConstructor(DefaultOptimWrapperConstructor):

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.optimizer_cls = check_optimizer_cfg(self.optimizer_cfg)
        check_paramwise_cfg(self.paramwise_cfg, self.optimizer_cls, self.optimizer_name)
        if self.base_lr is None:
            # paramwise multipliers need a base; take the optimizer's own default lr.
            # (1.0 is a placeholder for lr-free optimizers such as HF Adafactor.)
            self.base_lr = _default_lr(self.optimizer_cls) or 1.0

    @property
    def optimizer_name(self) -> str:
        kind = self.optimizer_cfg["type"]
        return kind if isinstance(kind, str) else kind.__name__

    @property
    def spec(self):
        """The catalog row of the optimizer being built (by name, else by class), or None."""
        spec = CATALOG.get(self.optimizer_name)
        if spec is None and isinstance(self.optimizer_cls, type):
            spec = CATALOG.spec_of(self.optimizer_cls)
        return spec

    def param_groups(self, model) -> list[dict]:
        """mmengine's grouping: one group per parameter with paramwise_cfg, else one group."""
        return self.named_groups(model, per_parameter=bool(self.paramwise_cfg))

    def named_groups(self, model, per_parameter: bool) -> list[dict]:
        """mmengine's groups (``add_params``) or one group, each naming its parameters."""
        if not per_parameter:
            return name_groups([{"params": list(model.parameters())}], model)
        groups: list[dict] = []
        self.add_params(groups, model)
        names = name_groups(groups, model)
        warn_unmatched_keys(self.paramwise_cfg, [n for g in names for n in g["param_names"]])
        return names

    def __call__(self, model):
        wrapped = model  # the Runner hands the model over wrapped (DDP): 1-bit optimizers hook it
        if hasattr(model, "module"):
            model = model.module
        device = next(model.parameters(), torch.empty(0)).device
        check_device(self.optimizer_cfg["type"], device)
        if any(is_dtensor(p) for p in model.parameters()):
            check_sharded(self.optimizer_cfg["type"])
        plan = BuildPlan(self.optimizer_name, dict(self.optimizer_cfg), dict(self.optim_wrapper_cfg),
                         self.param_groups(model), model)
        plan.wrapper_cfg.setdefault("type", "OptimWrapper")
        spec = self.spec
        if spec is not None and spec.adapter is not None:
            spec.adapter(plan)
        if spec is not None and spec.wrapper and plan.wrapper_cfg["type"] == "OptimWrapper":
            plan.wrapper_cfg["type"] = spec.wrapper
            plan.notes.append(f"{plan.name} trains through {spec.wrapper}")
        for note in plan.notes:
            print_log(note, logger="current", level=logging.INFO)
        for warning in plan.warnings:
            print_log(warning, logger="current", level=logging.WARNING)
        if spec is not None and spec.routes_muon:
            check_muon_flags(model, (self.paramwise_cfg or {}).get("custom_keys"))
        optimizer = self.build_optimizer(plan)
        check_learning_rates(optimizer)
        guard_grouping(optimizer)
        connect_onebit(wrapped, optimizer, plan.wrapper_cfg)
        return OPTIM_WRAPPERS.build(plan.wrapper_cfg, default_args=dict(optimizer=optimizer))

    def build_optimizer(self, plan: BuildPlan):
        optimizer_cfg = dict(plan.optimizer_cfg)
        # DeepSpeedCPUAdam and similar name their first argument model_params.
        first_argument = next(iter(inspect.signature(self.optimizer_cls).parameters))
        optimizer_cfg[first_argument] = plan.groups
        try:
            return OPTIMIZERS.build(optimizer_cfg)
        except (TypeError, ValueError, RuntimeError, AssertionError) as error:
            settings = {k: v for k, v in plan.optimizer_cfg.items() if k != "type"}
            raise OptimizerConfigError(f"{plan.name} rejected its settings {settings}: "
                                       f"{type(error).__name__}: {error}") from error
