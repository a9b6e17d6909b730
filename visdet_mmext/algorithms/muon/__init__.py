"""Hybrid Muon: orthogonalised momentum for matrices, AdamW for the rest."""
from .hybrid import adamw_settings
from .newton_schulz import orthogonalize, orthogonalize_many
from .optimizer import Muon, lr_scale, matrix_shape

__all__ = ["Muon", "adamw_settings", "lr_scale", "matrix_shape", "orthogonalize",
           "orthogonalize_many"]
