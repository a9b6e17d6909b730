"""Provider: this package's own Lion, LAMB and Muon (replacing mmengine's registrations)."""
from ..catalog import rows_of
from .base import register_rows


def register(registry):
    return register_rows(registry, rows_of("native"), "native")
