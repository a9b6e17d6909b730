"""Provider: D-Adaptation (learning-rate-free Adam, AdaGrad, SGD, Adan, Lion)."""
from .base import register_package


def register(registry):
    return register_package(registry, "dadaptation", "dadaptation")
