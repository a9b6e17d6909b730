"""Tensors the fast paths may not address directly: FSDP2 shards (DTensor) and other subclasses.

A C kernel or a compiled kernel reads raw memory through ``data_ptr()`` and ``numel()``; on a
DTensor those describe the global tensor while this rank holds a slice, which crashes the process.
So the fast paths take only :func:`plain` tensors. An update that is element by element gives the
same result on each rank's slice as on the whole tensor, so its DTensors are stepped as their local
shards (:func:`local_work`), which are plain and take the fast paths; everything else stays as it
is and runs on the eager paths, where DTensor's own operators reduce over the shards.
"""
from __future__ import annotations

import torch
from torch import Tensor

PLAIN_TYPES = (Tensor, torch.nn.Parameter)


def plain(t: Tensor) -> bool:
    """A dense strided tensor of torch's own classes, in addressable memory."""
    # is_meta, not device.type: a step checks every tensor, and a device object costs more
    return type(t) in PLAIN_TYPES and t.layout == torch.strided and not t.is_nested \
        and not t.is_meta


def dtensor_class():
    """``DTensor``, or None where torch.distributed is not built in."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor
    return DTensor


def is_dtensor(t: Tensor) -> bool:
    if type(t) in PLAIN_TYPES:
        return False
    cls = dtensor_class()
    return cls is not None and isinstance(t, cls)


def local_shards(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
    """The local shards of DTensors laid out alike (same mesh and placements, nothing pending a
    reduction), on which an element-by-element update is the whole tensor's; else None."""
    if not tensors or not all(is_dtensor(t) for t in tensors):
        return None
    from torch.distributed.tensor import Replicate, Shard
    mesh, placements = tensors[0].device_mesh, tensors[0].placements
    if not all(isinstance(pl, (Shard, Replicate)) for pl in placements):
        return None  # Partial: the local values are summands, not the tensor's elements
    if any(t.device_mesh != mesh or t.placements != placements for t in tensors[1:]):
        return None
    local = tuple(t.to_local() for t in tensors)  # under no_grad: the shard itself, not a copy
    if any(t.shape != local[0].shape for t in local[1:]):
        return None
    return local


def local_work(work: tuple) -> tuple:
    """``(tensors, hp)`` with DTensor tensors replaced by their local shards where that is exact."""
    tensors, hp = work
    local = local_shards(tensors)
    return work if local is None else (local, hp)


def whole(t: Tensor) -> Tensor:
    """A DTensor gathered to the whole tensor (on every rank: a collective), else ``t``."""
    return t.full_tensor() if is_dtensor(t) else t


def shard_like(value: Tensor, reference: Tensor) -> Tensor:
    """``value``, a whole tensor every rank holds alike, as a DTensor laid out like ``reference``
    (each rank keeps its own slice: no communication)."""
    from torch.distributed.tensor import distribute_tensor
    return distribute_tensor(value.to(reference.device), reference.device_mesh,
                             reference.placements, src_data_rank=None)
