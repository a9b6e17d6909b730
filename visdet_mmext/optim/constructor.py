"""The package's OptimWrapperConstructor: Muon applied selectively per layer.

    optim_wrapper = dict(
        optimizer=dict(type='Muon', lr=0.02, momentum=0.95, weight_decay=0.01,
                       adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_weight_decay=0.05),
        constructor='VisdetOptimWrapperConstructor',
        paramwise_cfg=dict(muon=dict(exclude=['neck.*']),
                           custom_keys={'backbone': dict(lr_mult=0.1)}))

mmengine's grouping runs first (every ``paramwise_cfg`` key keeps its meaning), or that of the
constructor named by ``optim_wrapper.base`` (e.g. a layer-wise lr decay one; ``base_constructor``),
then ``routing`` routes each parameter from the model's structure and gives the AdamW side its
settings with the same multipliers, and groups with equal settings are merged. Each parameter the
loss graph may move also gets a group on its other side (shared, so usually none is added); at the
first backward ``traced_routing`` moves the parameters the graph places elsewhere. For an
optimizer that does not route (its catalog row), it is the checked default constructor, and
refuses Muon-only settings.
"""
from __future__ import annotations

import logging

from mmengine.logging import print_log
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

from ..errors import OptimizerConfigError
from .base_constructor import base_groups, build_base
from .checked_constructor import CheckedOptimWrapperConstructor, name_groups
from .routing import ADAMW_KEYS, MuonRules, Routing, assign_sides, route_parameters
from .traced_routing import attach

#: Group keys that are bookkeeping, not optimizer settings (ignored when merging).
_BOOKKEEPING = ("params", "param_names", "lr_mult", "decay_mult")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class VisdetOptimWrapperConstructor(CheckedOptimWrapperConstructor):
    #: It reads ``paramwise_cfg.muon`` and ``optim_wrapper.base`` (checked by ``validation``;
    #: ``base_constructor`` refuses it as a base).
    reads_package_settings = True

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
        self.alternates: dict[str, int] = {}  # name -> index of its group on the other side

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
        return name_groups(base_groups(self.base, model), model)

    def param_groups(self, model) -> list[dict]:
        if not self.routes_muon:
            return super().param_groups(model)
        groups = self.named_groups(model, per_parameter=True)
        routing = self.route(model, groups)
        merged, self.alternates = merge_groups(
            assign_sides(groups, routing, self.optimizer_cfg, self.base_lr, self.base_wd),
            reserve=not self.groups_fixed_early)
        return merged

    @property
    def groups_fixed_early(self) -> bool:
        """The wrapper's engine fixes the groups when it is built (DeepSpeed ZeRO), so the loss
        graph cannot move parameters later."""
        kind = self.optim_wrapper_cfg.get("type", "OptimWrapper")
        cls = OPTIM_WRAPPERS.get(kind) if isinstance(kind, str) else kind
        names = {c.__name__ for c in getattr(cls, "__mro__", ())} | {str(kind)}
        return "DeepSpeedOptimWrapper" in names

    def route(self, model, groups: list[dict]) -> Routing:
        flags = {name: group["use_muon"] for group in groups if "use_muon" in group
                 for name in group["param_names"]}
        routing = route_parameters(model, self.rules, flags)
        for warning in routing.warnings:
            print_log(f"Muon routing: {warning}", logger="current", level=logging.WARNING)
        if self.groups_fixed_early:  # no loss graph will settle what structure doubts
            for doubt in routing.doubts:
                print_log(f"Muon routing: {doubt}", logger="current", level=logging.WARNING)
            when = ""
        else:
            when = " (from the model's structure; the loss graph corrects it at the first backward)"
        print_log(f"Muon routing: {routing.summary()}{when}", logger="current", level=logging.INFO)
        print_log(f"Muon routing table:\n{routing.table()}", logger="current", level=logging.DEBUG)
        self.routing = routing
        return routing

    def __call__(self, model):
        wrapper = super().__call__(model)
        inner = getattr(model, "module", model)
        if self.routing is None:
            return wrapper
        attach(wrapper, inner, self.routing, self.alternates, fixed=self.groups_fixed_early)
        return wrapper


def _settings_key(group: dict):
    return tuple(sorted((k, repr(v)) for k, v in group.items() if k not in _BOOKKEEPING))


def merge_groups(sided: list[tuple[dict, dict | None]],
                 reserve: bool = True) -> tuple[list[dict], dict[str, int]]:
    """Merge groups whose settings are equal, keeping first-seen order (deterministic).

    ``sided``: each one-parameter group and its other side (None where it cannot move). With
    ``reserve``, every other side gets a group (empty where no group has its settings), after
    the others; returns the groups and, per movable parameter, its other group's index."""
    merged: dict = {}

    def group_for(group: dict) -> dict:
        key = _settings_key(group)
        if key not in merged:
            merged[key] = {k: v for k, v in group.items() if k not in _BOOKKEEPING}
            merged[key].update(params=[], param_names=[])
        return merged[key]

    for group, _ in sided:
        target = group_for(group)
        target["params"] += group["params"]
        target["param_names"] += group["param_names"]
    others = {}
    if reserve:
        others = {group["param_names"][0]: id(group_for(other))
                  for group, other in sided if other is not None}
    index = {id(group): i for i, group in enumerate(merged.values())}
    return list(merged.values()), {name: index[key] for name, key in others.items()}
