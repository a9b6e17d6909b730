"""Checkpoints as data: weights-only loading with an allowlist, and integrity checks."""
from .integrity import verify
from .safe_load import allow, safe_torch_load

__all__ = ["allow", "safe_torch_load", "verify"]
