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

The tensors live in one flat buffer (:meth:`ChunkLayout.views`), so a step costs a fixed number of
operations whatever the number of tensors: three C calls on the CPU (``native.py``), a few dozen
vectorised torch operations elsewhere (:class:`TorchCodec`), and two collectives.
"""
from __future__ import annotations

import itertools

import torch
import torch.distributed as dist
from torch import Tensor

from .native import NativeCodec

# Eight 0/1 bytes -> one byte, first element in the high bit (like numpy.packbits), by a 64-bit
# multiplication instead of a loop over bits (the 8 bytes read as one little-endian int64).
_GATHER_BITS = 0x8040201008040201 - (1 << 64)  # as a signed int64


def pack_signs(nonnegative: Tensor) -> Tensor:
    """Bool ``[..., 8k]`` (contiguous) -> uint8 ``[..., k]``, eight signs per byte."""
    words = nonnegative.contiguous().view(torch.uint8).view(torch.int64)
    return ((words * _GATHER_BITS) >> 56).to(torch.uint8)


class ChunkLayout:
    """Where each tensor's elements sit, in the flat buffer and in the exchange layout.

    Exchange layout ``[world, width]``: row ``j`` holds the chunks rank ``j`` averages, columns
    ``offsets[t]:offsets[t] + chunks[t]`` being chunk ``j`` of tensor ``t``. The flat buffer
    (``flat_numel`` elements) holds tensor ``t`` whole from ``starts[t]``, followed by its
    padding: its ``world * chunks[t]`` elements are its chunks in order. Messages are ``[rows,
    row_bytes]`` bytes: a row's packed signs, then its ``tensors`` float32 scales.
    """

    def __init__(self, numels: list[int], world: int, device: torch.device | str = "cpu"):
        self.numels = list(numels)
        self.world = world
        self.device = torch.device(device)
        self.chunks = [-(-n // (8 * world)) * 8 for n in self.numels]
        self.offsets = [0, *itertools.accumulate(self.chunks)][:-1]
        self.width = sum(self.chunks)
        self.starts = [world * offset for offset in self.offsets]
        self.flat_numel = world * self.width
        self.row_bytes = self.width // 8 + 4 * len(self.numels)
        rows = torch.arange(world).unsqueeze(1)
        lengths = torch.tensor(self.chunks)
        # valid elements of chunk (row j, tensor t): what is left of the tensor after j chunks
        self.counts = (torch.tensor(self.numels) - rows * lengths).clamp(0).minimum(lengths) \
            .float().to(self.device)
        self._codecs: dict[bool, object] = {}

    def views(self, flat: Tensor) -> list[Tensor]:
        """Each tensor's elements in ``flat`` (1-D views)."""
        return [flat[start:start + numel] for start, numel in zip(self.starts, self.numels)]

    def blocks(self, size: int) -> Tensor:
        """int64 ``[blocks, 5]``: every chunk cut into pieces of at most ``size`` elements (a
        multiple of 8), ordered by row: exchange index, flat index, length, valid elements and
        chunk (``row * tensors + tensor``)."""
        rows = []
        counts = self.counts.to(torch.int64).tolist()
        for j in range(self.world):
            for t, (offset, chunk) in enumerate(zip(self.offsets, self.chunks)):
                for start in range(0, chunk, size):
                    rows.append((j * self.width + offset + start,
                                 self.starts[t] + j * chunk + start, min(size, chunk - start),
                                 min(max(counts[j][t] - start, 0), size),
                                 j * len(self.chunks) + t))
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 5)

    def padding(self, rows: range) -> Tensor:
        """Exchange indices of the padding in ``rows`` (counted from the first of them)."""
        found = []
        counts = self.counts.to(torch.int64).tolist()
        for i, j in enumerate(rows):
            for t, (offset, chunk) in enumerate(zip(self.offsets, self.chunks)):
                base = i * self.width + offset
                found.extend(range(base + counts[j][t], base + chunk))
        return torch.tensor(found, dtype=torch.int64, device=self.device)

    def codec(self, native: bool | None = None):
        """The stages for this layout's device: the C kernels on the CPU (unless ``native`` is
        False or they cannot be built), else vectorised torch."""
        if native is None:
            native = self.device.type == "cpu" and NativeCodec.library() is not None
        elif native and (self.device.type != "cpu" or NativeCodec.library() is None):
            raise RuntimeError("the native 1-bit kernels need a CPU and a working C compiler")
        if native not in self._codecs:
            self._codecs[native] = NativeCodec(self) if native else TorchCodec(self)
        return self._codecs[native]


class TorchCodec:
    """The three stages in vectorised torch operations (any device)."""

    def __init__(self, layout: ChunkLayout):
        self.layout = layout
        device = layout.device
        self.groups = torch.tensor([c // 8 for c in layout.chunks], device=device)
        self.tensor_of_group = torch.repeat_interleave(
            torch.arange(len(layout.chunks), device=device), self.groups)
        self.padding = layout.padding(range(layout.world))
        self.row_padding = [layout.padding(range(j, j + 1)) for j in range(layout.world)]
        # row b: the signs (+-1) of the 8 elements packed in byte b, first element in bit 7
        bits = torch.arange(256).unsqueeze(1) >> torch.arange(7, -1, -1) & 1
        self.signs_of_byte = (bits * 2 - 1).float().to(device)
        self._regions: tuple[int, list[Tensor]] | None = None

    def regions(self, flat: Tensor) -> list[Tensor]:
        """Each tensor's ``[world, chunk]`` block of ``flat`` (cached: the views keep ``flat``'s
        memory alive, so an equal address means the same buffer)."""
        if self._regions is None or self._regions[0] != flat.data_ptr():
            layout = self.layout
            views = [flat[start:start + layout.world * chunk].view(layout.world, chunk)
                     for start, chunk in zip(layout.starts, layout.chunks)]
            self._regions = (flat.data_ptr(), views)
        return self._regions[1]

    def signed(self, packed: Tensor, scales: Tensor) -> Tensor:
        """``[rows, width]`` of ``+-scale`` from packed signs ``[rows, width / 8]`` and scales
        ``[rows, tensors]`` (a table lookup per byte: no bit unpacking)."""
        rows = packed.shape[0]
        per_group = scales.repeat_interleave(self.groups, dim=1,
                                             output_size=self.layout.width // 8).unsqueeze(-1)
        signs = torch.index_select(self.signs_of_byte, 0, packed.reshape(-1).long())
        return signs.view(rows, -1, 8).mul_(per_group).view(rows, -1)

    def compress(self, values: Tensor, counts: Tensor, padding: Tensor) -> tuple[Tensor, Tensor]:
        """Packed signs and scales of ``values`` ``[rows, width]``, which become the error."""
        groups = values.view(values.shape[0], -1, 8)
        partial = torch.linalg.vecdot(groups, groups).double()  # sums of 8 squares
        squares = partial.new_zeros(counts.shape).index_add_(1, self.tensor_of_group, partial)
        scales = (squares / counts.clamp(min=1)).sqrt_().float()  # all-padding chunks: 0 / 1
        packed = pack_signs(values >= 0)
        values.sub_(self.signed(packed, scales)).view(-1).index_fill_(0, padding, 0.0)
        return packed, scales

    def read(self, message: Tensor) -> tuple[Tensor, Tensor]:
        sign_bytes = self.layout.width // 8
        return message[..., :sign_bytes], message[..., sign_bytes:].contiguous().view(torch.float32)

    def write(self, message: Tensor, packed: Tensor, scales: Tensor) -> None:
        sign_bytes = self.layout.width // 8
        message[..., :sign_bytes] = packed
        message[..., sign_bytes:] = scales.contiguous().view(torch.uint8)

    def worker(self, flat: Tensor, error: Tensor, message: Tensor) -> None:
        error.add_(torch.cat(self.regions(flat), dim=1))
        self.write(message, *self.compress(error, self.layout.counts, self.padding))

    def server(self, incoming: Tensor, error: Tensor, message: Tensor, rank: int) -> None:
        mean = self.signed(*self.read(incoming)).sum(0).div_(self.layout.world)
        mean.index_fill_(0, self.row_padding[rank], 0.0)
        error.add_(mean)
        packed, scales = self.compress(error.view(1, -1), self.layout.counts[rank:rank + 1],
                                       self.row_padding[rank])
        self.write(message, packed[0], scales[0])

    def decompress(self, gathered: Tensor, flat: Tensor) -> None:
        values = self.signed(*self.read(gathered))
        values.view(-1).index_fill_(0, self.padding, 0.0)
        torch._foreach_copy_(self.regions(flat), values.split(self.layout.chunks, dim=1))


def compressed_allreduce(flat: Tensor, worker_error: Tensor, server_error: Tensor,
                         layout: ChunkLayout, group=None, native: bool | None = None) -> None:
    """Replace ``flat`` (float32, ``layout.flat_numel``, padding zero) by its compressed average
    over the ranks of ``group``.

    ``worker_error`` ([world, width]) and ``server_error`` ([width]) are this rank's error
    buffers (float32), updated in place. Two collectives: an all-to-all and an all-gather of
    bytes. ``native``: see :meth:`ChunkLayout.codec`.
    """
    expected = ((flat, (layout.flat_numel,)), (worker_error, (layout.world, layout.width)),
                (server_error, (layout.width,)))
    for tensor, shape in expected:  # the C kernels trust these sizes
        if tensor.shape != shape or tensor.dtype != torch.float32 or not tensor.is_contiguous():
            raise ValueError(f"compressed_allreduce: expected a contiguous float32 tensor of "
                             f"shape {shape}, got {tensor.dtype} {tuple(tensor.shape)}")
    codec = layout.codec(native)
    outgoing = torch.empty((layout.world, layout.row_bytes), dtype=torch.uint8, device=flat.device)
    codec.worker(flat, worker_error, outgoing)
    incoming = torch.empty_like(outgoing)
    dist.all_to_all_single(incoming, outgoing, group=group)
    mine = torch.empty(layout.row_bytes, dtype=torch.uint8, device=flat.device)
    codec.server(incoming, server_error, mine, dist.get_rank(group))
    dist.all_gather_single(incoming.view(-1), mine, group=group)
    codec.decompress(incoming, flat)
