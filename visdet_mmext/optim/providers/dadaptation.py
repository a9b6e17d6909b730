"""Provider: D-Adaptation (learning-rate-free Adam, AdaGrad, SGD, Adan, Lion)."""
from ..catalog import rows_of
from .base import import_package, register_rows


def register(registry):
    rows = rows_of("dadaptation")
    package, failed = import_package("dadaptation", "dadaptation", rows)
    return failed if package is None else register_rows(registry, rows, "dadaptation")
