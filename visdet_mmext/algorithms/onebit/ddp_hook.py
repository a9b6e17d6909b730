"""The DDP communication hook that lets a 1-bit optimizer decide when gradients travel.

Before each backward DDP calls the hook per gradient bucket. While the optimizer's next step
needs averaged gradients (warm-up, 0/1 Adam's variance steps) the hook averages exactly like
DDP's default (divide by the world size, then all-reduce); otherwise it hands back the local
gradients without communicating, and the optimizer's compressed all-reduce is the only traffic.
"""
# no `from __future__ import annotations`: DDP compares the hook's annotations to real types
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .base import OnebitOptimizer


def onebit_comm_hook(optimizer: OnebitOptimizer,
                     bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    buffer = bucket.buffer()
    if optimizer.averages_next_gradients:
        buffer.div_(optimizer.world_size)
        work = dist.all_reduce(buffer, group=optimizer.process_group, async_op=True)
        return work.get_future().then(lambda future: future.value()[0])
    local = torch.futures.Future()
    local.set_result(buffer)
    return local


def install_ddp_hook(model: DistributedDataParallel, optimizer: OnebitOptimizer) -> None:
    """Make ``model``'s gradient communication follow ``optimizer``'s stages (before training).

    The optimizer then averages over the same process group as ``model``.
    """
    if not isinstance(model, DistributedDataParallel):
        raise TypeError(f"install_ddp_hook needs a DistributedDataParallel model, got "
                        f"{type(model).__name__}")
    hooked = getattr(model, "_onebit_optimizer", None)
    if hooked is None:
        model.register_comm_hook(optimizer, onebit_comm_hook)
    elif hooked is not optimizer:
        raise RuntimeError("this DistributedDataParallel model already has the hook of another "
                           "1-bit optimizer (DDP accepts one communication hook)")
    model._onebit_optimizer = optimizer
    optimizer.process_group = model.process_group
    optimizer.ddp_hook_installed = True
