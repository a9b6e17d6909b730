"""Provider: D-Adaptation (learning-rate-free Adam, AdaGrad, SGD, Adan, Lion)."""
from ...catalog import CATALOG
from .base import import_package, register_rows


def register(registry):
    rows = CATALOG.rows_of("dadaptation")
    package, failed = import_package("dadaptation", "dadaptation", rows)
    return failed if package is None else register_rows(registry, rows, "dadaptation")
