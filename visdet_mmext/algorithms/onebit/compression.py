"""Error-compensated 1-bit all-reduce: the averaging step of 1-bit Adam, 1-bit LAMB and 0/1 Adam.

The procedure of Tang et al. 2021 (arXiv 2102.02888, Sec. 4), with ``w`` ranks:

1. worker: ``y = x + e_worker``; each chunk of ``y`` becomes ``scale * sign(y)`` with
   ``scale = ||chunk|| / sqrt(len)`` (same l2 norm); ``e_worker = y - that``. Chunk ``j`` of every
   tensor goes to rank ``j`` (all-to-all of the signs, 8 per byte, and the scales);
2. server (every rank, for the chunks it owns): ``z = mean over workers + e_server``, compressed the
   same way, ``e_server = z - that``; every rank gathers every server's signs and scales
   (all-gather) and rebuilds the same average.

``sign(0)`` counts as ``+1`` (one bit has no zero). Chunks follow tensors: tensor ``t`` is cut into
``w`` chunks of ``c_t`` elements (a multiple of 8, zero-padded), so each tensor keeps its own
scales; padding is masked out of the scales and stays zero in the error buffers.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # first element in the high bit, like numpy.packbits


def pack_signs(nonnegative: Tensor) -> Tensor:
    """Bool ``[..., 8k]`` -> uint8 ``[..., k]``, eight signs per byte."""
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=nonnegative.device)
    bits = nonnegative.reshape(*nonnegative.shape[:-1], -1, 8).to(torch.uint8)
    return (bits * weights).sum(-1, dtype=torch.uint8)


def unpack_signs(packed: Tensor) -> Tensor:
    """uint8 ``[..., k]`` -> bool ``[..., 8k]`` (True means +1)."""
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    return ((packed.unsqueeze(-1) & weights) != 0).reshape(*packed.shape[:-1], -1)


class ChunkLayout:
    """Where each tensor's elements sit in the ``[world, width]`` exchange buffer.

    Row ``j`` holds the chunks rank ``j`` averages: columns ``offsets[t]:offsets[t] + chunks[t]``
    are chunk ``j`` of tensor ``t``.
    """

    def __init__(self, numels: list[int], world: int, device: torch.device | str = "cpu"):
        self.numels = list(numels)
        self.world = world
        self.chunks = [-(-n // (8 * world)) * 8 for n in self.numels]
        self.offsets = [sum(self.chunks[:t]) for t in range(len(self.chunks))]
        self.width = sum(self.chunks)
        lengths = torch.tensor(self.chunks, device=device)
        self.segment_ids = torch.repeat_interleave(torch.arange(len(self.chunks), device=device),
                                                   lengths)
        rows = torch.arange(world, device=device).unsqueeze(1)
        numels_t = torch.tensor(self.numels, device=device)
        # valid elements of chunk (row j, tensor t): what is left of the tensor after j chunks
        self.counts = (numels_t - rows * lengths).clamp(0).minimum(lengths).float()
        position = torch.arange(self.width, device=device) - torch.tensor(
            self.offsets, device=device).repeat_interleave(lengths)
        self.valid = position < self.counts[:, self.segment_ids]

    @property
    def num_tensors(self) -> int:
        return len(self.chunks)

    def scatter(self, tensors: list[Tensor], out: Tensor) -> Tensor:
        """Copy ``tensors`` into ``out`` ([world, width], padding zeroed)."""
        out.zero_()
        for tensor, offset, chunk in zip(tensors, self.offsets, self.chunks):
            flat = tensor.reshape(-1)
            full, rest = divmod(flat.numel(), chunk) if chunk else (0, 0)
            out[:full, offset:offset + chunk].copy_(flat[:full * chunk].view(full, chunk))
            if rest:
                out[full, offset:offset + rest].copy_(flat[full * chunk:])
        return out

    def gather(self, buffer: Tensor, tensors: list[Tensor]) -> None:
        """Copy the rows of ``buffer`` back into ``tensors`` (inverse of :meth:`scatter`)."""
        for tensor, offset, chunk in zip(tensors, self.offsets, self.chunks):
            flat = tensor.view(-1)
            full, rest = divmod(flat.numel(), chunk) if chunk else (0, 0)
            flat[:full * chunk].view(full, chunk).copy_(buffer[:full, offset:offset + chunk])
            if rest:
                flat[full * chunk:].copy_(buffer[full, offset:offset + rest])


def compress(values: Tensor, layout: ChunkLayout, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
    """1-bit compression per chunk of ``values`` (the ``rows`` of the layout's buffer).

    Returns the signs (bool, True = +1), the scales ``[rows, tensors]`` (l2 norm / sqrt(count))
    and the decompressed values (``scale * sign``, zero on padding).
    """
    # norms in float64: a float32 sum of a large chunk's squares drifts by more than 1e-6
    norms = torch.stack([torch.linalg.vector_norm(values[:, offset:offset + chunk], dim=1,
                                                  dtype=torch.float64)
                         for offset, chunk in zip(layout.offsets, layout.chunks)], dim=1)
    counts = layout.counts[rows].double()
    scales = torch.where(counts > 0, norms / counts.clamp(min=1).sqrt(), 0.0).to(values.dtype)
    nonnegative = values >= 0
    magnitude = scales[:, layout.segment_ids]
    decompressed = torch.where(nonnegative, magnitude, -magnitude)
    return nonnegative, scales, decompressed.masked_fill_(~layout.valid[rows], 0.0)


def _message(signs: Tensor, scales: Tensor) -> Tensor:
    """Packed signs followed by the float32 scales, as bytes (one row per destination)."""
    return torch.cat([pack_signs(signs), scales.float().contiguous().view(torch.uint8)], dim=-1)


def _read(message: Tensor, layout: ChunkLayout) -> tuple[Tensor, Tensor]:
    sign_bytes = layout.width // 8
    signs = unpack_signs(message[..., :sign_bytes])
    scales = message[..., sign_bytes:].contiguous().view(torch.float32)
    return signs, scales


def compressed_allreduce(tensors: list[Tensor], worker_error: Tensor, server_error: Tensor,
                         layout: ChunkLayout, group=None) -> None:
    """Replace ``tensors`` by their compressed average over the ranks of ``group``.

    ``worker_error`` ([world, width]) and ``server_error`` ([width]) are this rank's error
    buffers, updated in place. Two collectives: an all-to-all and an all-gather of bytes.
    """
    rank = dist.get_rank(group)
    segment_ids, valid = layout.segment_ids, layout.valid
    compensated = layout.scatter(tensors, torch.empty_like(worker_error)).add_(worker_error)
    signs, scales, decompressed = compress(compensated, layout, slice(None))
    torch.sub(compensated, decompressed, out=worker_error)

    outgoing = _message(signs, scales)
    incoming = torch.empty_like(outgoing)
    dist.all_to_all_single(incoming, outgoing, group=group)
    worker_signs, worker_scales = _read(incoming, layout)
    magnitude = worker_scales[:, segment_ids].to(server_error.dtype)
    average = torch.where(worker_signs, magnitude, -magnitude).sum(0).div_(layout.world)
    average.masked_fill_(~valid[rank], 0.0).add_(server_error)
    server_signs, server_scales, server_decompressed = compress(
        average.unsqueeze(0), layout, slice(rank, rank + 1))
    torch.sub(average, server_decompressed[0], out=server_error)

    mine = _message(server_signs[0], server_scales[0])
    everyone = torch.empty((layout.world, mine.numel()), dtype=torch.uint8, device=mine.device)
    dist.all_gather_into_tensor(everyone.view(-1), mine, group=group)
    all_signs, all_scales = _read(everyone, layout)
    magnitude = all_scales[:, segment_ids].to(worker_error.dtype)
    result = torch.where(all_signs, magnitude, -magnitude).masked_fill_(~valid, 0.0)
    layout.gather(result, tensors)
