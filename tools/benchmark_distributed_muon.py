#!/usr/bin/env python
"""Per-rank Muon step time when the ranks share the Newton-Schulz work.

For each world size (default 1, 2, 4) it starts that many gloo processes on this machine
(torch.multiprocessing, 127.0.0.1), splits a fixed total of CPU threads between them, and steps
the native Muon on ResNet-50's parameter shapes with ``distributed=True`` (shared work) and
``distributed=False`` (every rank orthogonalises everything), round-robin. Parameters and
gradients are the same on every rank, as after DDP's averaging; with ``--sharded`` they are
FSDP2's instead: DTensors split by rows like ``fully_shard``'s (each rank holds its slice), where
shared work means each matrix is gathered to one rank and the update's slices sent back.
Reported per world size and mode: the median step time over ranks' medians, the slowest rank,
and each rank's Newton-Schulz GFLOP share.

    python tools/benchmark_distributed_muon.py                     # ~3 min on 2 CPU cores
    python tools/benchmark_distributed_muon.py --sharded --worlds 1 2 4
    python tools/benchmark_distributed_muon.py --worlds 1 2 --steps 3 --total-threads 2
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sharded(params: list, world: int) -> list:
    """The parameters as FSDP2 holds them: DTensors split along dim 0, gradients alike."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    mesh = init_device_mesh("cpu", (world,))
    out = []
    for p in params:
        q = torch.nn.Parameter(distribute_tensor(p.detach(), mesh, [Shard(0)]))
        q.grad = distribute_tensor(p.grad, mesh, [Shard(0)])
        out.append(q)
    return out


def _worker(rank: int, world: int, port: int, threads: int, steps: int, out: str,
            sharded: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from benchmark_optimizers import make_params, resnet50_shapes
    from visdet_mmext.algorithms.muon import Muon

    optimizers = {}
    for mode in ("shared", "every rank"):
        params = make_params(resnet50_shapes(), torch.device("cpu"))  # same seed: same on all
        if sharded:
            params = _sharded(params, world)
        optimizers[mode] = Muon(params, lr=0.02, distributed=mode == "shared")
    times = {mode: [] for mode in optimizers}
    flops = {}
    for step in range(steps + 1):  # the first step allocates the state: not timed
        for mode, optimizer in optimizers.items():
            dist.barrier()
            started = time.perf_counter()
            optimizer.step()
            elapsed = time.perf_counter() - started
            if step:
                times[mode].append(elapsed * 1e3)
            flops[mode] = optimizer.last_step_ns_flops
    gathered = [None] * world
    dist.all_gather_object(gathered, dict(times=times, flops=flops))
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def measure(world: int, threads: int, steps: int, out: Path, sharded: bool) -> list[dict]:
    mp.spawn(_worker, args=(world, _free_port(), threads, steps, str(out), sharded), nprocs=world)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per mode")
    parser.add_argument("--total-threads", type=int, default=os.cpu_count(),
                        help="CPU threads of all ranks together (each rank: total / world, >= 1)")
    parser.add_argument("--sharded", action="store_true",
                        help="FSDP2-sharded parameters (DTensor) instead of data-parallel replicas")
    parser.add_argument("--out", default=str(ROOT / "benchmark_out"))
    args = parser.parse_args(argv)

    name = "fsdp_muon" if args.sharded else "distributed_muon"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for world in args.worlds:
        threads = max(1, args.total_threads // world)
        print(f"world {world}: {threads} thread(s) per rank ...", file=sys.stderr, flush=True)
        ranks = measure(world, threads, args.steps, out / f"{name}_{world}.json", args.sharded)
        for mode in ("shared", "every rank"):
            medians = [statistics.median(r["times"][mode]) for r in ranks]
            rows.append(dict(world=world, threads_per_rank=threads, mode=mode,
                             ms_median=statistics.median(medians), ms_slowest_rank=max(medians),
                             gflop_per_rank=[r["flops"][mode] / 1e9 for r in ranks]))
    report = dict(date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  torch=torch.__version__, cpu_count=os.cpu_count(),
                  total_threads=args.total_threads, steps=args.steps, sharded=args.sharded,
                  load_average_before=load_before, load_average_after=os.getloadavg(), rows=rows)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["| processes | threads each | Newton-Schulz | ms/step (median rank) | slowest rank "
             "| GFLOP per rank |", "|---|---|---|---|---|---|"]
    for r in rows:
        shares = ", ".join(f"{g:.0f}" for g in r["gflop_per_rank"])
        lines.append(f"| {r['world']} | {r['threads_per_rank']} | {r['mode']} | "
                     f"{r['ms_median']:.0f} | {r['ms_slowest_rank']:.0f} | {shares} |")
    lines.append(f"\nLoad average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after.")
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
