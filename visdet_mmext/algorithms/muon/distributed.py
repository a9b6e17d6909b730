"""Newton-Schulz shared out across data-parallel ranks.

Under data parallelism (mmengine's ``MMDistributedDataParallel``, DDP, DeepSpeed stage 0) every
rank holds the same averaged gradients, so without this every rank orthogonalises every matrix:
world-size times the same work. Instead each rank orthogonalises a share of the matrices and
broadcasts its results; every rank then applies every update itself, so parameters and momentum
stay identical on all ranks (rank 0's checkpoint holds the whole state, and resuming on any number
of processes is exact).

The shares balance Newton-Schulz FLOPs: matrices in decreasing cost go to the least-loaded rank
(greedy longest-processing-time, within 4/3 of the best split), computed from the shapes alone, so
every rank derives the same plan without communicating. Within a share, same-shaped matrices are
still batched. One matrix is never split, so a rank's work is at least its largest matrix.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
from torch import Tensor


def ns_flops(rows: int, cols: int, steps: int) -> float:
    """FLOPs of ``steps`` quintic iterations on a rows x cols matrix (m <= n after orienting)."""
    m, n = sorted((rows, cols))
    return steps * (4.0 * m * m * n + 2.0 * m ** 3)


def assign(costs: Sequence[float], world: int) -> list[int]:
    """The rank that computes each item: largest cost first, to the least-loaded rank (ties: the
    lower index), so the plan depends only on ``costs`` and ``world``."""
    loads = [0.0] * world
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        owners[i] = rank
        loads[rank] += costs[i]
    return owners


def world_of(enabled: bool) -> tuple[int, int]:
    """``(rank, world size)`` to share the work over: the default process group when
    ``enabled`` and torch.distributed is initialised, else ``(0, 1)``."""
    if not enabled or not torch.distributed.is_available() or \
            not torch.distributed.is_initialized():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def check_same_matrices(shapes: Sequence[tuple], device: torch.device) -> None:
    """Refuse to share work between ranks that do not hold the same list of Muon matrices, laid
    out alike (ranks training different models, or gradients on some ranks only): their plans
    would not match, and their collectives would wait for each other forever."""
    signature = zlib.crc32(repr([tuple(s) for s in shapes]).encode()) - (1 << 31)
    values = torch.tensor([signature, -signature], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    if values[0].item() != -values[1].item():
        raise RuntimeError(
            "Muon(distributed=True): the ranks hold different Muon matrices this step "
            f"(this rank: {len(shapes)}), so the Newton-Schulz work cannot be shared. Distributed "
            "Muon needs every rank to step the same parameters (data-parallel replicas with "
            "averaged gradients, or FSDP2 shards of the same model); set distributed=False to "
            "orthogonalise every matrix on every rank.")


def broadcast_from(flat: Tensor, src: int) -> None:
    """Broadcast ``flat`` from rank ``src`` in place, as bytes (any dtype over gloo or NCCL)."""
    torch.distributed.broadcast(flat.view(torch.uint8), src=src)
