"""Provider: Prodigy, from the authors' ``prodigyopt`` package."""
from .base import register_package


def register(registry):
    return register_package(registry, "prodigyopt", "prodigyopt")
