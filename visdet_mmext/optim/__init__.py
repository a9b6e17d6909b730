"""Optimizers for mmengine: catalog, providers, constructors and wrappers.

``OPTIMIZERS`` is mmengine's root registry, re-exported: after ``import visdet_mmext`` it
holds every available catalog name.
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from . import checked_constructor, constructor, wrappers  # noqa: F401  (registers them)
from .catalog import CATALOG, CATALOG_BY_NAME, OptimizerSpec
from .constructor import VisdetOptimWrapperConstructor
from .routing import MuonRules, Route, Routing, route_parameters
from .loader import Report, load_providers
from .validation import OptimizerConfigError, check_optim_wrapper_cfg, check_optimizer_cfg

checked_constructor.register()

__all__ = [
    "CATALOG", "CATALOG_BY_NAME", "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS",
    "OptimizerConfigError", "OptimizerSpec", "Report", "check_optim_wrapper_cfg",
    "check_optimizer_cfg", "load_providers", "MuonRules", "Route", "Routing", "route_parameters",
    "VisdetOptimWrapperConstructor",
]
