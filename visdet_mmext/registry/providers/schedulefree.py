"""Provider: the schedule-free optimizers of the authors' ``schedulefree`` package."""
from ...catalog import CATALOG
from .base import import_package, register_rows


def register(registry):
    rows = CATALOG.rows_of("schedulefree")
    package, failed = import_package("schedulefree", "schedulefree", rows)
    return failed if package is None else register_rows(registry, rows, "schedulefree")
