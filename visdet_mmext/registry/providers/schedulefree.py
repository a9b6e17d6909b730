"""Provider: the schedule-free optimizers of the authors' ``schedulefree`` package."""
from .base import register_package


def register(registry):
    return register_package(registry, "schedulefree", "schedulefree")
