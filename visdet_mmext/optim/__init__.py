"""The mmengine side: constructors (Muon routing), config checks, optim wrappers.

``OPTIMIZERS`` is mmengine's root registry, re-exported: after ``import visdet_mmext`` it holds
every available catalog name.
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from . import wrappers  # noqa: F401  (registers them)
from .progress import forward_to_mmengine
from .checked_constructor import CheckedOptimWrapperConstructor
from .constructor import VisdetOptimWrapperConstructor
from .routing import MuonRules, Route, Routing, route_parameters
from .validation import check_optim_wrapper_cfg, check_optimizer_cfg

forward_to_mmengine()

__all__ = [
    "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS", "CheckedOptimWrapperConstructor",
    "MuonRules", "Route", "Routing", "VisdetOptimWrapperConstructor", "check_optim_wrapper_cfg",
    "check_optimizer_cfg", "route_parameters",
]
