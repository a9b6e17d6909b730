"""mmengine's default constructor, with clear errors and the per-optimizer fixes.

Registered under mmengine's own name ``DefaultOptimWrapperConstructor`` (deliberately, with
``force=True``) so every config gets it without naming it: grouping is exactly mmengine's
(``paramwise_cfg`` keeps its meaning); what changes is that an unknown, unavailable or
misconfigured optimizer fails at build time with a message naming the fix, and LBFGS,
SparseAdam, D-Adaptation and HF Adafactor train through the Runner.
"""
from __future__ import annotations

import inspect
import logging

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from .host_gaps import BuildPlan, adapt
from .onebit_setup import connect_onebit
from .validation import OptimizerConfigError, check_device, check_optimizer_cfg


def _default_lr(optimizer_cls):
    try:
        parameter = inspect.signature(optimizer_cls).parameters.get("lr")
    except (TypeError, ValueError):
        return None
    if parameter is None or not isinstance(parameter.default, (int, float)):
        return None
    return parameter.default


class CheckedOptimWrapperConstructor(DefaultOptimWrapperConstructor):

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.optimizer_cls = check_optimizer_cfg(self.optimizer_cfg)
        if self.base_lr is None:
            # paramwise multipliers need a base; take the optimizer's own default lr.
            # (1.0 is a placeholder for lr-free optimizers such as HF Adafactor.)
            self.base_lr = _default_lr(self.optimizer_cls) or 1.0

    @property
    def optimizer_name(self) -> str:
        kind = self.optimizer_cfg["type"]
        return kind if isinstance(kind, str) else kind.__name__

    def param_groups(self, model) -> list[dict]:
        """mmengine's grouping: one group per parameter with paramwise_cfg, else one group."""
        if not self.paramwise_cfg:
            return [{"params": list(model.parameters())}]
        groups: list[dict] = []
        self.add_params(groups, model)
        return groups

    def __call__(self, model):
        wrapped = model
        if hasattr(model, "module"):
            model = model.module
        device = next(model.parameters(), torch.empty(0)).device
        check_device(self.optimizer_cfg["type"], device)
        plan = BuildPlan(self.optimizer_name, dict(self.optimizer_cfg), dict(self.optim_wrapper_cfg),
                         self.param_groups(model), model)
        plan.wrapper_cfg.setdefault("type", "OptimWrapper")
        adapt(plan)
        for note in plan.notes:
            print_log(note, logger="current", level=logging.INFO)
        optimizer = self.build_optimizer(plan)
        connect_onebit(wrapped, optimizer, plan.wrapper_cfg)
        return OPTIM_WRAPPERS.build(plan.wrapper_cfg, default_args=dict(optimizer=optimizer))

    def build_optimizer(self, plan: BuildPlan):
        optimizer_cfg = dict(plan.optimizer_cfg)
        plain = len(plan.groups) == 1 and set(plan.groups[0]) == {"params"}
        params = plan.groups[0]["params"] if plain else plan.groups
        # DeepSpeedCPUAdam and similar name their first argument model_params.
        first_argument = next(iter(inspect.signature(self.optimizer_cls).parameters))
        optimizer_cfg[first_argument] = params
        try:
            return OPTIMIZERS.build(optimizer_cfg)
        except (TypeError, ValueError, RuntimeError, AssertionError) as error:
            settings = {k: v for k, v in plan.optimizer_cfg.items() if k != "type"}
            raise OptimizerConfigError(f"{plan.name} rejected its settings {settings}: "
                                       f"{type(error).__name__}: {error}") from error


def register() -> None:
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(name="DefaultOptimWrapperConstructor",
                                               module=CheckedOptimWrapperConstructor, force=True)
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=CheckedOptimWrapperConstructor, force=True)
