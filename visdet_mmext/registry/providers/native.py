"""Provider: this package's own optimizers (Lion, LAMB, Muon, ADOPT, Adan, SophiaG, 1-bit), replacing
mmengine's registrations of those names."""
from ...catalog import CATALOG
from .base import register_rows


def register(registry):
    return register_rows(registry, CATALOG.rows_of("native"), "native")
