"""Connect a 1-bit optimizer (OnebitAdam, OnebitLamb, ZeroOneAdam) to mmengine's Runner.

The optimizer constructor calls :func:`connect_onebit` with the model as the Runner hands it
over (still wrapped): under ``MMDistributedDataParallel`` the DDP communication hook is
installed, so DDP's gradient all-reduce stops when the optimizer's compression starts. Set-ups
that cannot work are refused before training, with the fix.

Checkpoints gather every rank's 1-bit state first (``compat.mmengine_runner_onebit``), so the
checkpoint resumes every rank exactly.
"""
from __future__ import annotations

import logging

import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

from ..algorithms.onebit import OnebitOptimizer, install_ddp_hook
from ..errors import OptimizerConfigError

DEFAULT_RUN = ("train with the default Runner and model wrapper (tools/train.py --launcher "
               "pytorch, MMDistributedDataParallel)")


def _is_fsdp(model) -> bool:
    from torch.distributed import fsdp
    sharded = tuple(getattr(fsdp, name) for name in ("FullyShardedDataParallel", "FSDPModule")
                    if hasattr(fsdp, name))
    return isinstance(model, sharded)


def _wrapper_class(wrapper_cfg: dict):
    kind = wrapper_cfg.get("type", "OptimWrapper")
    return OPTIM_WRAPPERS.get(kind) if isinstance(kind, str) else kind


def connect_onebit(model, optimizer, wrapper_cfg: dict) -> None:
    """Install the DDP hook for a 1-bit optimizer, or refuse a set-up it cannot train in."""
    if not isinstance(optimizer, OnebitOptimizer):
        return
    name = type(optimizer).__name__
    if _is_fsdp(model):
        raise OptimizerConfigError(
            f"{name} cannot train a model sharded by FSDP: it averages 1-bit compressed momenta of "
            f"whole parameters, and FSDP shards them and reduce-scatters the gradients itself. "
            f"Fix: {DEFAULT_RUN}, or use Adam/LAMB with FSDP.")
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world == 1:
        print_log(f"{name} in a single process: its 1-bit compression acts only between "
                  "processes, so this run pays for it and gains nothing. Train on several "
                  "processes (--launcher pytorch), or use Adam/LAMB here.", logger="current",
                  level=logging.WARNING)
    if not isinstance(model, DistributedDataParallel):
        if world > 1:
            raise OptimizerConfigError(
                f"{name} runs on {world} processes but the model is a {type(model).__name__}, not "
                "a DistributedDataParallel: the optimizer needs DDP's communication hook to stop "
                f"the gradient all-reduce once it communicates compressed momenta. Fix: "
                f"{DEFAULT_RUN}.")
        return
    wrapper = _wrapper_class(wrapper_cfg)
    if world > 1 and isinstance(wrapper, type) and issubclass(wrapper, AmpOptimWrapper):
        raise OptimizerConfigError(
            f"{name} with {wrapper.__name__} on {world} processes: after the warm-up each rank "
            "sees only its own gradients, so a loss-scale overflow on one rank would skip the step "
            "there and leave the others waiting in the compressed all-reduce. Fix: train in fp32 "
            "(optim_wrapper type='OptimWrapper').")
    install_ddp_hook(model, optimizer)
