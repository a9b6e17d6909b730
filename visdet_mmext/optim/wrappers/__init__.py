"""OptimWrappers that close gaps between mmengine's training loop and some optimizers."""
from .closure import ClosureOptimWrapper
from .effective_lr import DAdaptOptimWrapper

__all__ = ["ClosureOptimWrapper", "DAdaptOptimWrapper"]
