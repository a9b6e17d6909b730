"""Another constructor's grouping under this package's routing (``optim_wrapper.base``).

    optim_wrapper = dict(
        constructor='VisdetOptimWrapperConstructor',
        base='LearningRateDecayOptimWrapperConstructor',   # mmpretrain's or mmdet's, by name
        optimizer=dict(type='Muon', lr=0.02, weight_decay=0.05, adamw_lr=4e-3),
        paramwise_cfg=dict(layer_decay_rate=0.65, muon=dict(exclude=['backbone.patch_embed.*'])))

The base is built with the same ``optimizer`` and ``paramwise_cfg`` (less ``muon``) and makes the
param groups through its ``add_params`` (every ``DefaultOptimWrapperConstructor`` subclass has
one: layer-wise decay constructors override it). Its groups are split one per parameter, so the
routing sees each parameter's lr and weight decay; the AdamW side then gets ``adamw_lr`` and
``adamw_weight_decay`` times the same multipliers.
"""
from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from ..errors import OptimizerConfigError
from ..suggest import did_you_mean

#: Keys of a base's groups that name parameters rather than set anything (mmpretrain's
#: LearningRateDecayOptimWrapperConstructor adds ``param_name``).
NAME_KEYS = ("params", "param_names", "param_name")


def _resolve(base):
    if isinstance(base, dict):
        if set(base) != {"type"}:
            raise OptimizerConfigError(f"optim_wrapper.base={base!r}: give the constructor's name "
                                       "(or dict(type=name)); its settings go in paramwise_cfg.")
        base = base["type"]
    if isinstance(base, type):
        return base
    with OPTIM_WRAPPER_CONSTRUCTORS.switch_scope_and_registry(None) as registry:
        found = registry.get(base)
    if found is None:
        raise OptimizerConfigError(
            f"optim_wrapper.base={base!r} is not a registered constructor."
            f"{did_you_mean(base, OPTIM_WRAPPER_CONSTRUCTORS.module_dict)} A downstream "
            "constructor needs its package imported (custom_imports) or its default_scope.")
    return found


def build_base(base, optim_wrapper_cfg: dict, paramwise_cfg: dict):
    """The base constructor, or None without ``base``."""
    if base is None:
        return None
    cls = _resolve(base)
    if not (isinstance(cls, type) and issubclass(cls, DefaultOptimWrapperConstructor)) or \
            getattr(cls, "reads_package_settings", False):
        raise OptimizerConfigError(
            f"optim_wrapper.base={getattr(cls, '__name__', cls)!r} must be a constructor derived "
            "from mmengine's DefaultOptimWrapperConstructor (its add_params makes the groups), "
            "other than VisdetOptimWrapperConstructor itself.")
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type=cls, optim_wrapper_cfg=dict(optim_wrapper_cfg),
                                                 paramwise_cfg=dict(paramwise_cfg)))


def base_groups(base, model) -> list[dict]:
    """The base's groups, one per parameter (without its naming keys)."""
    groups: list[dict] = []
    base.add_params(groups, model)
    single = []
    for group in groups:
        settings = {k: v for k, v in group.items() if k not in NAME_KEYS}
        single += [dict(settings, params=[p]) for p in group["params"]]
    return single
