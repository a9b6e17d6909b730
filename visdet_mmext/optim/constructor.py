"""The package's OptimWrapperConstructor: Muon applied selectively per layer.

    optim_wrapper = dict(
        optimizer=dict(type='Muon', lr=0.02, momentum=0.95, weight_decay=0.01,
                       adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_weight_decay=0.05),
        constructor='VisdetOptimWrapperConstructor',
        paramwise_cfg=dict(muon=dict(exclude=['neck.*']),
                           custom_keys={'backbone': dict(lr_mult=0.1)}))

mmengine's grouping runs first (every ``paramwise_cfg`` key keeps its meaning); each
parameter is then routed (``routing.route_parameters``), its AdamW settings are applied
with the same multipliers, and groups with equal settings are merged. The routing table is
logged. Every group carries ``param_names``, and loading a checkpoint whose grouping differs
fails with the names of the parameters that moved. For any other optimizer it behaves like
the checked default constructor, and refuses Muon-only settings.
"""
from __future__ import annotations

import logging

from mmengine.logging import print_log
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .checked_constructor import CheckedOptimWrapperConstructor
from .grouping_check import guard_grouping
from .routing import MuonRules, Routing, route_parameters
from .validation import OptimizerConfigError

MUON_TYPES = ("Muon",)
#: Optimizer settings that describe the AdamW side of the hybrid Muon.
ADAMW_KEYS = ("adamw_lr", "adamw_betas", "adamw_eps", "adamw_weight_decay")


def default_adamw_lr(lr: float, adjust_lr: str) -> float:
    """AdamW-side lr when none is given: same lr under match_rms_adamw, else 3e-4 per 0.02."""
    return lr if adjust_lr == "match_rms_adamw" else lr * 0.015


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VisdetOptimWrapperConstructor(CheckedOptimWrapperConstructor):

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        muon_cfg = paramwise_cfg.pop("muon", None)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.is_muon = self.optimizer_name in MUON_TYPES
        if not self.is_muon:
            self._refuse_muon_settings(muon_cfg)
        try:
            self.rules = MuonRules.from_cfg(muon_cfg)
        except (TypeError, ValueError) as error:
            raise OptimizerConfigError(str(error)) from None

    def _refuse_muon_settings(self, muon_cfg) -> None:
        flagged = [key for key, value in self.paramwise_cfg.get("custom_keys", {}).items()
                   if "use_muon" in value]
        adamw = [key for key in ADAMW_KEYS if key in self.optimizer_cfg]
        if muon_cfg is not None or flagged or adamw:
            found = (["paramwise_cfg.muon"] if muon_cfg is not None else []) + \
                [f"custom_keys[{k!r}].use_muon" for k in flagged] + adamw
            raise OptimizerConfigError(f"{', '.join(found)} only apply to optimizer type 'Muon', "
                                       f"but the optimizer is {self.optimizer_name!r}. Remove them or "
                                       "switch to Muon.")

    def param_groups(self, model) -> list[dict]:
        names = {id(p): n for n, p in model.named_parameters()}
        groups = []
        self.add_params(groups, model)  # mmengine's rules: one group per parameter
        for group in groups:
            group["param_names"] = [names[id(p)] for p in group["params"]]
        if not self.is_muon:
            return groups if self.paramwise_cfg else [_merge_all(groups)]
        routing = self.route(model, groups)
        return merge_groups([self._apply_side(group, routing) for group in groups])

    def route(self, model, groups: list[dict]) -> Routing:
        flags = {name: bool(group["use_muon"]) for group in groups if "use_muon" in group
                 for name in group["param_names"]}
        try:
            routing = route_parameters(model, self.rules, flags)
        except ValueError as error:
            raise OptimizerConfigError(f"Muon routing: {error}") from None
        for warning in routing.warnings:
            print_log(f"Muon routing: {warning}", logger="current", level=logging.WARNING)
        print_log(f"Muon routing: {routing.summary()}", logger="current", level=logging.INFO)
        print_log(f"Muon routing table:\n{routing.table()}", logger="current", level=logging.DEBUG)
        self.routing = routing
        return routing

    def _apply_side(self, group: dict, routing: Routing) -> dict:
        """Set use_muon and, on the AdamW side, AdamW settings scaled by the same multipliers."""
        cfg, base_lr, base_wd = self.optimizer_cfg, self.base_lr, self.base_wd or 0.0
        route = routing.by_name()[group["param_names"][0]]
        group = dict(group, use_muon=route.use_muon)
        if route.use_muon:
            return group
        lr_mult = group.get("lr", base_lr) / base_lr if base_lr else 1.0
        decay_mult = group.get("weight_decay", base_wd) / base_wd if base_wd else 1.0
        adamw_lr = cfg.get("adamw_lr")
        if adamw_lr is None:
            adamw_lr = default_adamw_lr(base_lr, cfg.get("adjust_lr", "original"))
        adamw_wd = cfg.get("adamw_weight_decay")
        adamw_wd = base_wd if adamw_wd is None else adamw_wd
        group.update(lr=adamw_lr * lr_mult, weight_decay=adamw_wd * decay_mult,
                     betas=tuple(cfg.get("adamw_betas", (0.9, 0.95))), eps=cfg.get("adamw_eps", 1e-8))
        return group

    def build_optimizer(self, plan):
        optimizer = super().build_optimizer(plan)
        guard_grouping(optimizer)
        return optimizer


def _merge_all(groups: list[dict]) -> dict:
    merged = {"params": [], "param_names": []}
    for group in groups:
        merged["params"] += group["params"]
        merged["param_names"] += group["param_names"]
    return merged


def _settings_key(group: dict):
    return tuple(sorted((k, repr(v)) for k, v in group.items()
                        if k not in ("params", "param_names", "lr_mult", "decay_mult")))


def merge_groups(groups: list[dict]) -> list[dict]:
    """Merge groups whose settings are equal, keeping first-seen order (deterministic)."""
    merged: dict = {}
    for group in groups:
        key = _settings_key(group)
        if key not in merged:
            merged[key] = {k: v for k, v in group.items()
                           if k not in ("params", "param_names", "lr_mult", "decay_mult")}
            merged[key].update(params=[], param_names=[])
        merged[key]["params"] += group["params"]
        merged[key]["param_names"] += group["param_names"]
    return list(merged.values())
