"""OptimWrappers that close gaps between mmengine's training loop and some optimizers."""
from .applied_lr import AdafactorOptimWrapper, MuonOptimWrapper
from .closure import ClosureOptimWrapper
from .effective_lr import DAdaptOptimWrapper
from .prodigy import ProdigyOptimWrapper
from .schedule_free import ScheduleFreeOptimWrapper
from .sophia import SophiaOptimWrapper

__all__ = ["AdafactorOptimWrapper", "ClosureOptimWrapper", "DAdaptOptimWrapper", "MuonOptimWrapper",
           "ProdigyOptimWrapper", "ScheduleFreeOptimWrapper", "SophiaOptimWrapper"]
