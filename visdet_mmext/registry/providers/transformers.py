"""Provider: Hugging Face ``Adafactor`` (torch's own stays ``TorchAdafactor``)."""
from ...catalog import CATALOG
from .base import import_package, register_rows


def register(registry):
    rows = CATALOG.rows_of("transformers")
    package, failed = import_package("transformers", "transformers", rows)
    return failed if package is None else register_rows(registry, rows, "transformers")
