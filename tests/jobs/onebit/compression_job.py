"""Every rank runs the 1-bit all-reduce for a few rounds and saves what went in, what came out
and what it put on the wire (tests/algorithms/onebit/test_onebit_compression.py checks it in float64).

Over all ranks and over the subgroup of ranks 0 and 1, each with the C kernels and with the torch
operations.
"""
import math
import sys

import torch
import torch.distributed as dist

from visdet_mmext.algorithms.onebit.compression import ChunkLayout, compressed_allreduce
from visdet_mmext.algorithms.onebit.traffic import register_counting_backend

SHAPES = [(1,), (7,), (33, 5), (64, 64), (3, 3, 3, 3), (1000,), (9, 16)]
ROUNDS = 3


def inputs(round_: int, rank: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * round_ + rank)
    tensors = [torch.randn(shape, generator=generator) * 10.0 ** (i % 3 - 1)
               for i, shape in enumerate(SHAPES)]
    tensors[3][0, :8] = 0.0  # exact zeros: sign(0) is +1
    return tensors


def run(group, tag: str, out_dir: str, native: bool) -> None:
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    layout = ChunkLayout([math.prod(shape) for shape in SHAPES], world)
    worker_error, server_error = torch.zeros(world, layout.width), torch.zeros(layout.width)
    flat = torch.zeros(layout.flat_numel)
    views = [view.view(shape) for view, shape in zip(layout.views(flat), SHAPES)]
    rounds = []
    for round_ in range(ROUNDS):
        for view, tensor in zip(views, inputs(round_, rank)):
            view.copy_(tensor)
        record = dict(x=[t.clone() for t in views], worker_error=worker_error.clone(),
                      server_error=server_error.clone())
        wire = group.record()
        compressed_allreduce(flat, worker_error, server_error, layout, group, native=native)
        group.recorded = None
        record.update(out=[t.clone() for t in views], worker_error_after=worker_error.clone(),
                      server_error_after=server_error.clone(),
                      wire=[(kind, payload[0]) for kind, payload in wire])
        rounds.append(record)
    torch.save(rounds, f"{out_dir}/{tag}_{'native' if native else 'torch'}_rank{rank}.pt")


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(register_counting_backend())
    pair = dist.new_group([0, 1])
    for native in (True, False):
        run(dist.group.WORLD, f"world{dist.get_world_size()}", out_dir, native)
        if dist.get_rank() < 2:
            run(pair, "pair", out_dir, native)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
