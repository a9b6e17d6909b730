"""OptimWrappers that close gaps between mmengine's training loop and some optimizers."""
from .closure import ClosureOptimWrapper
from .effective_lr import DAdaptOptimWrapper
from .prodigy import ProdigyOptimWrapper
from .schedule_free import ScheduleFreeOptimWrapper
from .sophia import SophiaOptimWrapper

__all__ = ["ClosureOptimWrapper", "DAdaptOptimWrapper", "ProdigyOptimWrapper",
           "ScheduleFreeOptimWrapper", "SophiaOptimWrapper"]
