"""Provider: every optimizer of ``torch.optim`` under its catalog name."""
from ...catalog import CATALOG
from .base import register_rows


def register(registry):
    return register_rows(registry, CATALOG.rows_of("torch"), "torch")
