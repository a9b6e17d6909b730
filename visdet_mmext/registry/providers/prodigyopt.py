"""Provider: Prodigy, from the authors' ``prodigyopt`` package."""
from ...catalog import CATALOG
from .base import import_package, register_rows


def register(registry):
    rows = CATALOG.rows_of("prodigyopt")
    package, failed = import_package("prodigyopt", "prodigyopt", rows)
    return failed if package is None else register_rows(registry, rows, "prodigyopt")
