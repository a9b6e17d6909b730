"""Provider: every optimizer of ``torch.optim`` under its catalog name."""
from ..catalog import rows_of
from .base import register_rows


def register(registry):
    return register_rows(registry, rows_of("torch"), "torch")
