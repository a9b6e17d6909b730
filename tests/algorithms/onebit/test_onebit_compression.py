"""The 1-bit all-reduce against the papers' procedure written here in float64.

Worker stage (Tang et al. 2021, Sec. 4): ``y = x + e_worker``; per chunk ``scale = ||y|| /
sqrt(n)``, signs ``y >= 0``, ``e_worker = y - scale * sign``. Chunk ``j`` of each tensor goes to
rank ``j``. Server stage: ``z = mean of the received chunks + e_server``, compressed the same way;
every rank receives every server's chunk. Checked on the wire (what the process group carried):
signs bit-exact (8 per byte, first element in the high bit, as numpy.packbits), scales to 1e-6.
"""
import math

import numpy as np
import pytest
import torch

from onebit_launch import torchrun
from visdet_mmext.algorithms.onebit.compression import ChunkLayout, TorchCodec, pack_signs

SHAPES = [(1,), (7,), (33, 5), (64, 64), (3, 3, 3, 3), (1000,), (9, 16)]  # as in the job
TOL = 1e-6


def test_signs_are_packed_like_numpy_packbits():
    bits = torch.rand(3, 64, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = pack_signs(bits)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 8)
    assert np.array_equal(packed.numpy(), np.packbits(bits.numpy(), axis=-1))
    # and read back by the torch implementation's table (one row of +-1 per byte value)
    table = TorchCodec(ChunkLayout([64], 1)).signs_of_byte
    assert torch.equal(table[packed.long()].view(3, 64), bits.float() * 2 - 1)


def chunk_sizes(world):
    return [-(-math.prod(shape) // (8 * world)) * 8 for shape in SHAPES]


def chunks_of(x, chunk, world):
    """float64 copy of ``x`` padded with zeros and cut into ``world`` chunks."""
    flat = np.zeros(chunk * world)
    flat[:x.numel()] = x.double().flatten().numpy()
    return flat.reshape(world, chunk)


def compress64(y, valid):
    """The 1-bit compressor on one chunk (``valid`` leading elements are data)."""
    scale = math.sqrt(np.sum(y[:valid] ** 2) / valid) if valid else 0.0
    signs = y >= 0
    quantized = np.where(signs, scale, -scale)
    quantized[valid:] = 0.0
    return signs, scale, quantized


def valid_count(shape, chunk, j):
    return min(max(math.prod(shape) - j * chunk, 0), chunk)


def read_message(row, chunks):
    """Packed signs (numpy's unpackbits) and float32 scales out of one message row."""
    width = sum(chunks)
    signs = np.unpackbits(row[:width // 8].numpy())
    scales = np.frombuffer(row[width // 8:].numpy().tobytes(), dtype=np.float32)
    offsets = np.cumsum([0] + chunks[:-1])
    return ([signs[o:o + c].astype(bool) for o, c in zip(offsets, chunks)],
            scales.astype(np.float64))


def assert_scale(actual, expected, where):
    assert abs(actual - expected) <= TOL * max(expected, 1e-30), (where, actual, expected)


def check_round(rounds, world, r):
    """Round ``r`` of every rank's record against the float64 procedure."""
    chunks = chunk_sizes(world)
    offsets = np.cumsum([0] + chunks[:-1])
    received = [[] for _ in range(world)]  # received[j][i]: worker i's message to server j
    for i, record in enumerate(rounds):
        kinds = [kind for kind, _ in record[r]["wire"]]
        assert kinds == ["all_to_all", "all_gather"], kinds  # two collectives, nothing else
        to_servers = record[r]["wire"][0][1].view(world, -1)
        assert to_servers.shape[1] == sum(chunks) // 8 + 4 * len(SHAPES)  # signs + fp32 scales
        for j in range(world):
            signs, scales = read_message(to_servers[j], chunks)
            received[j].append((signs, scales))
            for t, (shape, chunk) in enumerate(zip(SHAPES, chunks)):
                y = chunks_of(record[r]["x"][t], chunk, world)[j] + \
                    record[r]["worker_error"][j, offsets[t]:offsets[t] + chunk].double().numpy()
                ref_signs, ref_scale, ref_q = compress64(y, valid_count(shape, chunk, j))
                where = f"worker {i} -> server {j}, tensor {t}, round {r}"
                assert np.array_equal(signs[t], ref_signs), where
                assert_scale(scales[t], ref_scale, where)
                error = record[r]["worker_error_after"][j, offsets[t]:offsets[t] + chunk].numpy()
                np.testing.assert_allclose(error, y - ref_q, rtol=0,
                                           atol=TOL * max(np.abs(y).max(), 1e-30), err_msg=where)
    expected_out = []
    for j, record in enumerate(rounds):  # rank j is the server of chunk j
        message = record[r]["wire"][1][1]
        signs, scales = read_message(message, chunks)
        for t, (shape, chunk) in enumerate(zip(SHAPES, chunks)):
            valid = valid_count(shape, chunk, j)
            mean = np.zeros(chunk)
            for worker_signs, worker_scales in received[j]:
                mean += np.where(worker_signs[t], worker_scales[t], -worker_scales[t])
            mean[valid:] = 0.0
            error = record[r]["server_error"][offsets[t]:offsets[t] + chunk].double().numpy()
            z = mean / world + error
            ref_signs, ref_scale, ref_r = compress64(z, valid)
            where = f"server {j}, tensor {t}, round {r}"
            assert np.array_equal(signs[t], ref_signs), where
            assert_scale(scales[t], ref_scale, where)
            error = record[r]["server_error_after"][offsets[t]:offsets[t] + chunk].numpy()
            np.testing.assert_allclose(error, z - ref_r, rtol=0,
                                       atol=TOL * max(np.abs(z).max(), 1e-30), err_msg=where)
            expected_out.append((t, j, ref_r, ref_scale))
    for t, shape in enumerate(SHAPES):
        full = np.concatenate([ref_r for tt, _, ref_r, _ in sorted(expected_out, key=lambda e: e[1])
                               if tt == t])[:math.prod(shape)]
        scale = max(s for tt, _, _, s in expected_out if tt == t)
        for record in rounds:
            out = record[r]["out"][t].double().flatten().numpy()
            np.testing.assert_allclose(out, full, rtol=0, atol=TOL * scale, err_msg=f"tensor {t}")
            assert torch.equal(record[r]["out"][t], rounds[0][r]["out"][t])  # same on every rank


@pytest.mark.slow
def test_compressed_allreduce_matches_the_float64_procedure(tmp_path):
    """Both implementations: the C kernels (CPU) and the torch operations (any device)."""
    torchrun("compression_job.py", 4, tmp_path)
    for tag, world in [(f"{group}_{codec}", world) for group, world in (("world4", 4), ("pair", 2))
                       for codec in ("native", "torch")]:
        rounds = [torch.load(tmp_path / f"{tag}_rank{rank}.pt", weights_only=True)
                  for rank in range(world)]
        for r in range(len(rounds[0])):
            check_round(rounds, world, r)
        assert rounds[0][-1]["worker_error_after"].abs().sum() > 0  # error feedback carried
