"""The 1-bit all-reduce's implementations against each other, in one process: the exchange
between ranks is replayed by hand (all-to-all, all-gather), each rank's stages run on its own
buffers. test_onebit_compression.py checks them against the papers' procedure in float64 over
real process groups."""
import math

import pytest
import torch

from visdet_mmext.algorithms.onebit.compression import ChunkLayout, TorchCodec, compressed_allreduce
from visdet_mmext.algorithms.onebit.native import NativeCodec

# odd and tiny sizes (padding, all-padding chunks), one tensor spanning several C blocks
SHAPES = [(1,), (7,), (33, 5), (3, 3, 3, 3), (300, 300), (9, 16)]
WORLD = 3


def exchange(codecs, layout, rounds=3):
    """Every rank's flat buffer, errors and messages after ``rounds`` all-reduces."""
    flats, workers, servers = [], [], []
    for rank in range(WORLD):
        generator = torch.Generator().manual_seed(rank)
        flat = torch.zeros(layout.flat_numel)
        for view in layout.views(flat):
            view.copy_(torch.randn(view.shape, generator=generator))
        flat[layout.starts[3]:layout.starts[3] + 8] = 0.0  # exact zeros: sign +1
        flats.append(flat)
        workers.append(torch.zeros(WORLD, layout.width))
        servers.append(torch.zeros(layout.width))
    wire = []
    for _ in range(rounds):
        outgoing = [torch.empty(WORLD, layout.row_bytes, dtype=torch.uint8) for _ in range(WORLD)]
        for rank, codec in enumerate(codecs):
            codec.worker(flats[rank], workers[rank], outgoing[rank])
        mine = [torch.empty(layout.row_bytes, dtype=torch.uint8) for _ in range(WORLD)]
        for rank, codec in enumerate(codecs):
            incoming = torch.stack([outgoing[sender][rank] for sender in range(WORLD)])
            codec.server(incoming, servers[rank], mine[rank], rank)
        gathered = torch.stack(mine)
        for rank, codec in enumerate(codecs):
            codec.decompress(gathered, flats[rank])
        wire += [*outgoing, gathered]
    return flats, workers, servers, wire


@pytest.fixture(scope="module")
def layout():
    return ChunkLayout([math.prod(shape) for shape in SHAPES], WORLD)


def test_plain_c_build_equals_the_avx2_build_bit_for_bit(layout):
    """CPUs without AVX2 run the plain C loops; both builds must agree exactly."""
    fast = exchange([NativeCodec(layout)] * WORLD, layout)
    portable = exchange([NativeCodec(layout, portable=True)] * WORLD, layout)
    for name, ours, theirs in zip(("flat", "worker error", "server error", "wire"), fast,
                                  portable):
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), name


def test_torch_operations_equal_the_c_kernels_in_one_round(layout):
    """Same signs on the wire; scales, errors and the average equal to float32 rounding (the
    sums of squares accumulate in another order)."""
    c_flats, c_workers, c_servers, c_wire = exchange([NativeCodec(layout)] * WORLD, layout, 1)
    t_flats, t_workers, t_servers, t_wire = exchange([TorchCodec(layout)] * WORLD, layout, 1)
    signs = layout.width // 8
    for ours, theirs in zip(c_wire, t_wire):
        assert torch.equal(ours[..., :signs], theirs[..., :signs])
        torch.testing.assert_close(ours[..., signs:].contiguous().view(torch.float32),
                                   theirs[..., signs:].contiguous().view(torch.float32),
                                   rtol=1e-6, atol=0)
    for ours, theirs in [*zip(c_flats, t_flats), *zip(c_workers, t_workers),
                         *zip(c_servers, t_servers)]:
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    padding = torch.ones(layout.flat_numel, dtype=torch.bool)
    for view in layout.views(padding):
        view.zero_()
    assert not c_flats[0][padding].any()  # the flat buffer's padding stays zero


def test_buffers_that_do_not_fit_the_layout_are_refused_before_any_kernel_runs(layout):
    """The C kernels trust the sizes (a checkpoint's error buffers, a caller's flat buffer)."""
    flat, worker = torch.zeros(layout.flat_numel), torch.zeros(WORLD, layout.width)
    for bad in ((flat[:-8], worker, torch.zeros(layout.width)),
                (flat, worker, torch.zeros(layout.width + 8)),
                (flat, worker.t().contiguous().t(), torch.zeros(layout.width)),
                (flat.double(), worker, torch.zeros(layout.width))):
        with pytest.raises(ValueError, match="expected a contiguous float32 tensor"):
            compressed_allreduce(*bad, layout)
