"""One call for code outside configs: a routed optimizer for an ``nn.Module``.

    optimizer = visdet_mmext.build_optimizer(model, "Muon", lr=0.02, weight_decay=0.01,
                                             muon=dict(exclude=["head.*"]),
                                             custom_keys={"backbone": dict(lr_mult=0.1)})

Keywords that are ``paramwise_cfg`` keys (``custom_keys``, ``muon``, ``bias_decay_mult``, ...)
go to the package constructor, the rest to the optimizer: the same checks, rules and messages
as an ``optim_wrapper`` config. The result is the torch optimizer, for a plain loop; its Muon
routing is corrected from the loss graph at the first ``step()`` (docs/routing.md).
"""
from __future__ import annotations

from mmengine.optim import build_optim_wrapper
from torch import nn

from .validation import MMENGINE_PARAMWISE_KEYS, PACKAGE_PARAMWISE_KEYS, check_optim_wrapper_cfg

PARAMWISE_KEYS = MMENGINE_PARAMWISE_KEYS + PACKAGE_PARAMWISE_KEYS


def build_optimizer(model: nn.Module, type, **settings):
    """The optimizer named ``type`` (a registered name or a class) for ``model``'s parameters,
    built as ``optim_wrapper=dict(optimizer=dict(type=type, **settings), constructor=
    'VisdetOptimWrapperConstructor', paramwise_cfg=...)`` would build it."""
    paramwise = {key: settings.pop(key) for key in list(settings) if key in PARAMWISE_KEYS}
    cfg = dict(optimizer=dict(type=type, **settings), constructor="VisdetOptimWrapperConstructor",
               paramwise_cfg=paramwise or None)
    check_optim_wrapper_cfg(cfg)
    return build_optim_wrapper(model, cfg).optimizer
