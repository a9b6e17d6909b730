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

import itertools

import torch
import torch.distributed as dist
from torch import Tensor

# Eight 0/1 bytes <-> one byte, first element in the high bit (like numpy.packbits), by 64-bit
# multiplications instead of a loop over bits (the 8 bytes read as one little-endian int64).
_GATHER_BITS = 0x8040201008040201 - (1 << 64)  # as a signed int64
_REPEAT, _BIT_OF_BYTE = 0x0101010101010101, 0x0102040810204080
_HIGH_IF_SET, _LOW_BITS = 0x7F7F7F7F7F7F7F7F, 0x0101010101010101


def pack_signs(nonnegative: Tensor) -> Tensor:
    """Bool ``[..., 8k]`` (contiguous) -> uint8 ``[..., k]``, eight signs per byte."""
    words = nonnegative.contiguous().view(torch.uint8).view(torch.int64)
    return ((words * _GATHER_BITS) >> 56).to(torch.uint8)


def unpack_signs(packed: Tensor) -> Tensor:
    """uint8 ``[..., k]`` -> uint8 ``[..., 8k]`` of 0/1 (1 means +1)."""
    spread = (packed.to(torch.int64) * _REPEAT) & _BIT_OF_BYTE
    return ((spread + _HIGH_IF_SET) >> 7 & _LOW_BITS).view(torch.uint8)


class ChunkLayout:
    """Where each tensor's elements sit in the ``[world, width]`` exchange buffer.

    Row ``j`` holds the chunks rank ``j`` averages: columns ``offsets[t]:offsets[t] + chunks[t]``
    are chunk ``j`` of tensor ``t``; a tensor's padding is at the end of its last chunks.
    """

    def __init__(self, numels: list[int], world: int, device: torch.device | str = "cpu"):
        self.numels = list(numels)
        self.world = world
        self.chunks = [-(-n // (8 * world)) * 8 for n in self.numels]
        self.offsets = [0, *itertools.accumulate(self.chunks)][:-1]
        self.width = sum(self.chunks)
        rows = torch.arange(world, device=device).unsqueeze(1)
        lengths = torch.tensor(self.chunks, device=device)
        # valid elements of chunk (row j, tensor t): what is left of the tensor after j chunks
        self.counts = (torch.tensor(self.numels, device=device) - rows * lengths).clamp(0) \
            .minimum(lengths).float()

    def _slices(self):
        """Per tensor: its columns, and (full rows, elements in the next row)."""
        for numel, offset, chunk in zip(self.numels, self.offsets, self.chunks):
            yield offset, chunk, divmod(numel, chunk) if chunk else (0, 0)

    def scatter(self, tensors: list[Tensor], out: Tensor) -> Tensor:
        """Copy ``tensors`` into ``out`` ([world, width]) with zero padding."""
        for tensor, (offset, chunk, (full, rest)) in zip(tensors, self._slices()):
            flat = tensor.reshape(-1)
            out[:full, offset:offset + chunk].copy_(flat[:full * chunk].view(full, chunk))
            if full < self.world:
                out[full, offset:offset + rest].copy_(flat[full * chunk:])
        return self.zero_padding(out, slice(None))

    def gather(self, buffer: Tensor, tensors: list[Tensor]) -> None:
        """Copy the rows of ``buffer`` back into ``tensors`` (inverse of :meth:`scatter`)."""
        for tensor, (offset, chunk, (full, rest)) in zip(tensors, self._slices()):
            flat = tensor.view(-1)
            flat[:full * chunk].view(full, chunk).copy_(buffer[:full, offset:offset + chunk])
            if full < self.world:
                flat[full * chunk:].copy_(buffer[full, offset:offset + rest])

    def zero_padding(self, buffer: Tensor, rows: slice) -> Tensor:
        """Zero the padding of ``buffer``, which holds the layout's ``rows``."""
        first = rows.start or 0
        for offset, chunk, (full, rest) in self._slices():
            for row in range(max(full, first), first + buffer.shape[0]):
                buffer[row - first, offset + (rest if row == full else 0):offset + chunk] = 0
        return buffer

    def scale_columns(self, buffer: Tensor, scales: Tensor) -> Tensor:
        """Multiply each tensor's columns of ``buffer`` by its column of ``scales``, in place."""
        for t, (offset, chunk, _) in enumerate(self._slices()):
            buffer[:, offset:offset + chunk].mul_(scales[:, t:t + 1])
        return buffer


def plus_minus_one(nonnegative: Tensor, dtype: torch.dtype) -> Tensor:
    """Bool or 0/1 uint8 signs -> -1/+1 (via uint8: converting bool is several times slower)."""
    if nonnegative.dtype == torch.bool:
        nonnegative = nonnegative.view(torch.uint8)
    return nonnegative.to(dtype).mul_(2).sub_(1)


def compress(values: Tensor, layout: ChunkLayout, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
    """1-bit compression per chunk of ``values`` (the ``rows`` of the layout's buffer).

    Returns the signs (bool, True = +1), the scales ``[rows, tensors]`` (l2 norm / sqrt(count))
    and the decompressed values (``scale * sign``, zero on padding).
    """
    # sum of squares: torch's sum is a cascade (1e-7); vector_norm's float32 loop drifts by 1e-6
    # on a few thousand elements
    squares = torch.stack([values[:, offset:offset + chunk].square().sum(dim=1)
                           for offset, chunk in zip(layout.offsets, layout.chunks)], dim=1)
    counts = layout.counts[rows]
    scales = (squares / counts.clamp(min=1)).sqrt_()  # all-padding chunks: 0 / 1
    nonnegative = values >= 0
    decompressed = layout.scale_columns(plus_minus_one(nonnegative, values.dtype), scales)
    return nonnegative, scales, layout.zero_padding(decompressed, rows)


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
    compensated = layout.scatter(tensors, torch.empty_like(worker_error)).add_(worker_error)
    signs, scales, decompressed = compress(compensated, layout, slice(None))
    torch.sub(compensated, decompressed, out=worker_error)

    outgoing = _message(signs, scales)
    incoming = torch.empty_like(outgoing)
    dist.all_to_all_single(incoming, outgoing, group=group)
    worker_signs, worker_scales = _read(incoming, layout)
    received = layout.scale_columns(plus_minus_one(worker_signs, server_error.dtype),
                                    worker_scales.to(server_error.dtype))
    row = slice(rank, rank + 1)
    average = layout.zero_padding(received.sum(0, keepdim=True).div_(layout.world), row)
    average.add_(server_error)
    server_signs, server_scales, server_decompressed = compress(average, layout, row)
    torch.sub(average[0], server_decompressed[0], out=server_error)

    mine = _message(server_signs[0], server_scales[0])
    everyone = torch.empty((layout.world, mine.numel()), dtype=torch.uint8, device=mine.device)
    dist.all_gather_into_tensor(everyone.view(-1), mine, group=group)
    all_signs, all_scales = _read(everyone, layout)
    result = layout.scale_columns(plus_minus_one(all_signs, worker_error.dtype),
                                  all_scales.to(worker_error.dtype))
    layout.gather(layout.zero_padding(result, slice(None)), tensors)
