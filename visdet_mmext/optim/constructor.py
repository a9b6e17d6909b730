"""The package's OptimWrapperConstructor: Muon applied selectively per layer.

    optim_wrapper = dict(
        optimizer=dict(type='Muon', lr=0.02, momentum=0.95, weight_decay=0.01,
                       adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_weight_decay=0.05),
        constructor='VisdetOptimWrapperConstructor',
        paramwise_cfg=dict(muon=dict(exclude=['neck.*']),
                           custom_keys={'backbone': dict(lr_mult=0.1)}))

mmengine's grouping runs first (every ``paramwise_cfg`` key keeps its meaning), or that of the
constructor named by ``optim_wrapper.base`` (e.g. a layer-wise lr decay one; ``base_constructor``),
then ``routing`` routes each parameter and gives the AdamW side its settings with the same
multipliers, and groups with equal settings are merged. For an optimizer that does not route
(its catalog row), it is the checked default constructor, and refuses Muon-only settings.
"""
from __future__ import annotations

import logging

from mmengine.logging import print_log
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from ..errors import OptimizerConfigError
from .base_constructor import base_groups, build_base
from .checked_constructor import CheckedOptimWrapperConstructor
from .routing import ADAMW_KEYS, MuonRules, Routing, assign_sides, route_parameters

#: Group keys that are bookkeeping, not optimizer settings (ignored when merging).
_BOOKKEEPING = ("params", "param_names", "lr_mult", "decay_mult")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VisdetOptimWrapperConstructor(CheckedOptimWrapperConstructor):

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        optim_wrapper_cfg = dict(optim_wrapper_cfg)
        base = optim_wrapper_cfg.pop("base", None)
        paramwise_cfg = dict(paramwise_cfg or {})
        muon_cfg = paramwise_cfg.pop("muon", None)
        # with a base, paramwise_cfg is the base's (its own keys included), checked by it
        super().__init__(optim_wrapper_cfg, None if base is not None else paramwise_cfg)
        self.base = build_base(base, optim_wrapper_cfg, paramwise_cfg)
        self.paramwise_cfg = paramwise_cfg
        spec = self.spec
        self.routes_muon = spec is not None and spec.routes_muon
        if not self.routes_muon:
            self._refuse_muon_settings(muon_cfg)
        try:
            self.rules = MuonRules.from_cfg(muon_cfg)
        except (TypeError, ValueError) as error:
            raise OptimizerConfigError(str(error)) from None
        self.routing: Routing | None = None

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

    def named_groups(self, model, per_parameter: bool) -> list[dict]:
        if self.base is None:
            return super().named_groups(model, per_parameter)
        return base_groups(self.base, model)

    def param_groups(self, model) -> list[dict]:
        if not self.routes_muon:
            return super().param_groups(model)
        groups = self.named_groups(model, per_parameter=True)
        routing = self.route(model, groups)
        return merge_groups(assign_sides(groups, routing, self.optimizer_cfg, self.base_lr,
                                         self.base_wd))

    def route(self, model, groups: list[dict]) -> Routing:
        flags = {name: group["use_muon"] for group in groups if "use_muon" in group
                 for name in group["param_names"]}
        routing = route_parameters(model, self.rules, flags)
        for warning in routing.warnings:
            print_log(f"Muon routing: {warning}", logger="current", level=logging.WARNING)
        print_log(f"Muon routing: {routing.summary()}", logger="current", level=logging.INFO)
        print_log(f"Muon routing table:\n{routing.table()}", logger="current", level=logging.DEBUG)
        self.routing = routing
        return routing


def _settings_key(group: dict):
    return tuple(sorted((k, repr(v)) for k, v in group.items() if k not in _BOOKKEEPING))


def merge_groups(groups: list[dict]) -> list[dict]:
    """Merge groups whose settings are equal, keeping first-seen order (deterministic)."""
    merged: dict = {}
    for group in groups:
        key = _settings_key(group)
        if key not in merged:
            merged[key] = {k: v for k, v in group.items() if k not in _BOOKKEEPING}
            merged[key].update(params=[], param_names=[])
        merged[key]["params"] += group["params"]
        merged[key]["param_names"] += group["param_names"]
    return list(merged.values())
