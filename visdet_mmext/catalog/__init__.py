"""The catalog: every optimizer name this package registers, and every fact about each one.

``CATALOG[name]`` is an :class:`OptimizerSpec`; ``CATALOG.spec_of(optimizer)`` finds the row of
a built optimizer. No heavy imports: the rows name their classes as strings.
"""
from .rows import BNB_PREFIXED, FIXED_NAMES, CATALOG
from .spec import INSTALL_HINTS, Catalog, Impossible, OptimizerSpec

__all__ = ["BNB_PREFIXED", "CATALOG", "FIXED_NAMES", "INSTALL_HINTS", "Catalog", "Impossible",
           "OptimizerSpec"]
