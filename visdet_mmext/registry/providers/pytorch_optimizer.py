"""Provider: SophiaH and SOAP from the ``pytorch-optimizer`` collection.

Only the catalog's rows are registered: the collection's other classes (its own Lion, LAMB,
ADOPT, Adan, Prodigy, schedule-free variants, ...) would shadow names this catalog gives to other packages.
"""
from ...catalog import CATALOG
from .base import import_package, register_rows


def register(registry):
    rows = CATALOG.rows_of("pytorch_optimizer")
    package, failed = import_package("pytorch_optimizer", "pytorch_optimizer", rows)
    return failed if package is None else register_rows(registry, rows, "pytorch_optimizer")
