"""Provider: SophiaH and SOAP from the ``pytorch-optimizer`` collection.

Only the catalog's rows are registered: the collection's other classes (its own Lion, LAMB,
ADOPT, Adan, Prodigy, schedule-free variants, ...) would shadow names this catalog gives to other packages.
"""
from .base import register_package


def register(registry):
    return register_package(registry, "pytorch_optimizer", "pytorch_optimizer")
