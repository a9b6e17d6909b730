"""Provider: Hugging Face ``Adafactor`` (torch's own stays ``TorchAdafactor``)."""
from .base import register_package


def register(registry):
    return register_package(registry, "transformers", "transformers")
