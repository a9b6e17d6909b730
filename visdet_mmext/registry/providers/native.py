"""Provider: this package's own Lion, LAMB and Muon (replacing mmengine's registrations)."""
from ...catalog import CATALOG
from .base import register_rows


def register(registry):
    return register_rows(registry, CATALOG.rows_of("native"), "native")
