"""1-bit Adam, 1-bit LAMB and 0/1 Adam: communication-efficient optimizers in plain torch.

Distributed use: wrap the model in ``DistributedDataParallel`` and call
``install_ddp_hook(ddp_model, optimizer)`` before training (mmengine's Runner does this through
the package's optimizer constructor). See ``docs/onebit.md``.
"""
from .adam import OnebitAdam
from .base import OnebitOptimizer
from .ddp_hook import install_ddp_hook
from .lamb import OnebitLamb
from .zero_one_adam import ZeroOneAdam

__all__ = ["OnebitAdam", "OnebitLamb", "OnebitOptimizer", "ZeroOneAdam", "install_ddp_hook"]
