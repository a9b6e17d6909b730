"""Newton-Schulz for parameters sharded by FSDP2: each matrix gathered once, on one rank.

Under ``fully_shard`` every rank holds a slice of each matrix (a DTensor placed ``Shard(dim)`` on a
1-D device mesh, split like ``torch.chunk``: uneven sizes allowed, trailing ranks may hold none).
Newton-Schulz needs the whole matrix. Computing it through DTensor's operators gathers every matrix
on every rank, and every rank repeats all of the work. Here instead:

1. each rank updates the momentum of its own slices (element by element: exact on slices);
2. one ``all_to_all`` sends each slice to the rank that owns its matrix (owners balance
   Newton-Schulz FLOPs, :func:`~visdet_mmext.algorithms.muon.distributed.assign`);
3. the owner joins the slices, orthogonalises, and splits the result the way the DTensor is split;
4. a second ``all_to_all`` returns each rank its slice of every update, applied locally.

Each matrix crosses the network twice (its momentum in, its update out) and is orthogonalised once.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..shards import is_dtensor


@dataclass(frozen=True)
class Layout:
    """How a sharded parameter is split: the mesh's process group and the sharded dimension."""
    group: object  # torch.distributed.ProcessGroup
    dim: int
    rank: int  # this process's index in the mesh
    world: int


def chunk_sizes(length: int, parts: int) -> list[int]:
    """Sizes of ``torch.chunk(length, parts)`` padded with zeros to ``parts`` (DTensor's split)."""
    size = -(-length // parts) if length else 0
    return [max(0, min(size, length - i * size)) for i in range(parts)]


def layout(p: Tensor) -> Layout | None:
    """The layout of a DTensor sharded along one dimension of a 1-D mesh, else None (plain
    tensors, replicated or multi-dimensional placements, or a split this module does not know)."""
    if not is_dtensor(p):
        return None
    from torch.distributed.tensor import Shard
    mesh, placements = p.device_mesh, p.placements
    if mesh.ndim != 1 or len(placements) != 1 or type(placements[0]) is not Shard:
        return None  # (subclasses of Shard, e.g. strided shards, split differently)
    dim = placements[0].dim % p.ndim
    world, rank = mesh.size(), mesh.get_local_rank()
    expected = list(p.shape)
    expected[dim] = chunk_sizes(p.shape[dim], world)[rank]
    if list(p.to_local().shape) != expected:
        return None
    return Layout(mesh.get_group(), dim, rank, world)


def _slice_numel(shape: Sequence[int], dim: int, rank: int, world: int) -> int:
    return chunk_sizes(shape[dim], world)[rank] * (math.prod(shape) // shape[dim])


def _slice_shape(shape: Sequence[int], dim: int, rank: int, world: int) -> list[int]:
    shape = list(shape)
    shape[dim] = chunk_sizes(shape[dim], world)[rank]
    return shape


def gather_to_owners(slices: Sequence[Tensor], shapes: Sequence[Sequence[int]], dim_of: Sequence[int],
                     owners: Sequence[int], where: Layout) -> dict[int, Tensor]:
    """This rank's ``slices`` (one per matrix, of global shape ``shapes[i]``) sent to their
    owners; returns ``{i: whole tensor}`` for the matrices this rank owns. Every slice has one
    dtype and device."""
    rank, world = where.rank, where.world
    order = sorted(range(len(slices)), key=lambda i: (owners[i], i))
    send = torch.cat([slices[i].reshape(-1) for i in order]) if slices else None
    send_sizes = [sum(slices[i].numel() for i in order if owners[i] == r) for r in range(world)]
    mine = [i for i in order if owners[i] == rank]
    recv_sizes = [sum(_slice_numel(shapes[i], dim_of[i], r, world) for i in mine)
                  for r in range(world)]
    recv = torch.empty(sum(recv_sizes), dtype=send.dtype, device=send.device)
    torch.distributed.all_to_all_single(recv, send, recv_sizes, send_sizes, group=where.group)
    pieces: dict[int, list[Tensor]] = {i: [] for i in mine}
    for source, block in enumerate(recv.split(recv_sizes)):
        sizes = [_slice_numel(shapes[i], dim_of[i], source, world) for i in mine]
        for i, flat in zip(mine, block.split(sizes)):
            pieces[i].append(flat.view(_slice_shape(shapes[i], dim_of[i], source, world)))
    return {i: torch.cat(parts, dim=dim_of[i]) for i, parts in pieces.items()}


def scatter_from_owners(wholes: dict[int, Tensor], shapes: Sequence[Sequence[int]],
                        dim_of: Sequence[int], owners: Sequence[int], where: Layout,
                        dtype: torch.dtype, device: torch.device) -> list[Tensor]:
    """The inverse of :func:`gather_to_owners`: each owner's whole tensors split and sent back;
    returns this rank's slice of every matrix (in ``shapes`` order)."""
    rank, world = where.rank, where.world
    count = len(shapes)
    mine = sorted(wholes)
    parts = {i: wholes[i].to(dtype).split(chunk_sizes(shapes[i][dim_of[i]], world), dim=dim_of[i])
             for i in mine}  # (torch.chunk drops trailing empty parts: split keeps them)
    send_parts = [parts[i][target].reshape(-1) for target in range(world) for i in mine]
    send_sizes = [sum(parts[i][target].numel() for i in mine) for target in range(world)]
    send = torch.cat(send_parts) if send_parts else torch.empty(0, dtype=dtype, device=device)
    order = sorted(range(count), key=lambda i: (owners[i], i))
    recv_sizes = [sum(_slice_numel(shapes[i], dim_of[i], rank, world) for i in order
                      if owners[i] == r) for r in range(world)]
    recv = torch.empty(sum(recv_sizes), dtype=dtype, device=device)
    torch.distributed.all_to_all_single(recv, send, recv_sizes, send_sizes, group=where.group)
    out: list[Tensor] = [None] * count  # type: ignore[list-item]
    sizes = [_slice_numel(shapes[i], dim_of[i], rank, world) for i in order]
    for i, flat in zip(order, recv.split(sizes)):
        out[i] = flat.view(_slice_shape(shapes[i], dim_of[i], rank, world))
    return out
