#!/usr/bin/env python
"""Distributed training steps: DDP+Adam vs OnebitAdam vs ZeroOneAdam vs DDP+LAMB vs OnebitLamb.

For each world size, ``torch.multiprocessing`` starts that many gloo processes on 127.0.0.1 over
the byte-counting process group (``visdet_mmext.algorithms.onebit.traffic``), so every collective
(DDP's all-reduce, the 1-bit all-to-all/all-gather) is counted where it is issued. Each optimizer
trains its own copy of the model on synthetic batches: ``--warmup`` steps (the 1-bit optimizers'
full-precision stage, ``freeze_step``), then ``--steps`` timed steps taken round-robin across the
optimizers so load changes hit all alike. Reported per optimizer, after the warm-up: the median
wall time of a whole training step on rank 0 (forward, backward with DDP's communication,
optimizer step), and the bytes per step one rank hands to collectives (payload) and sends to
the others under ring/direct algorithms (``sent``), against DDP's fp32 gradient all-reduce.

Models: ``demo`` (the demo's DemoConvNet, 32x32 images, batch 64 per rank: compute-bound) and
``mlp`` (four 1024x1024 layers, 4.2 M parameters, batch 32: communication-bound).

    python tools/benchmark_distributed.py                       # 2 and 4 processes, both models
    python tools/benchmark_distributed.py --nprocs 2 --models mlp --steps 10
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPTIMIZERS = ("DDP+Adam", "OnebitAdam", "ZeroOneAdam", "DDP+LAMB", "OnebitLamb")
BASELINE = {"OnebitAdam": "DDP+Adam", "ZeroOneAdam": "DDP+Adam", "OnebitLamb": "DDP+LAMB"}


class Logits(nn.Module):
    """The demo model's logits as forward (DDP calls forward; mmengine's modes are not needed)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model.logits(inputs)


def build_model(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model whose forward gives logits, and one synthetic batch, the same on every call."""
    generator = torch.Generator().manual_seed(0)
    if name == "demo":
        from visdet_mmext.demo.models import DemoConvNet
        torch.manual_seed(0)
        model = Logits(DemoConvNet(num_classes=4, widths=(32, 64, 128)))
        inputs = torch.randn(64, 3, 32, 32, generator=generator)
        return model, inputs, torch.randint(0, 4, (64,), generator=generator)
    torch.manual_seed(0)
    layers = []
    for _ in range(4):
        layers += [nn.Linear(1024, 1024), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    return model, torch.randn(32, 1024, generator=generator), torch.randint(0, 1024, (32,),
                                                                           generator=generator)


def build_optimizer(name: str, params, warmup: int, lr: float):
    from visdet_mmext.algorithms.onebit import OnebitAdam, OnebitLamb, ZeroOneAdam
    from visdet_mmext.optim.lamb import LAMB
    if name == "DDP+Adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "DDP+LAMB":
        return LAMB(params, lr=lr)
    if name == "OnebitAdam":
        return OnebitAdam(params, lr=lr, freeze_step=warmup)
    if name == "OnebitLamb":
        return OnebitLamb(params, lr=lr, freeze_step=warmup)
    # local steps reach their longest interval (16) within a few timed steps
    return ZeroOneAdam(params, lr=lr, var_freeze_step=warmup, local_step_scaler=2,
                       local_step_clipper=16)


def worker(rank: int, world: int, port: int, args, queue) -> None:
    from visdet_mmext.algorithms.onebit import OnebitOptimizer, install_ddp_hook
    from visdet_mmext.algorithms.onebit.traffic import counting_group, register_counting_backend

    torch.set_num_threads(1)
    dist.init_process_group(register_counting_backend(), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    group = counting_group()
    results = {}
    for model_name in args.models:
        runs = {}
        for name in OPTIMIZERS:
            model, inputs, labels = build_model(model_name)
            ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
            optimizer = build_optimizer(name, ddp.parameters(), args.warmup, args.lr)
            if isinstance(optimizer, OnebitOptimizer):
                install_ddp_hook(ddp, optimizer)
            runs[name] = dict(ddp=ddp, optimizer=optimizer, batch=(inputs, labels), times=[],
                              sent=[], payload=[])

        def step(run) -> None:
            run["optimizer"].zero_grad(set_to_none=True)
            logits = run["ddp"](run["batch"][0])
            nn.functional.cross_entropy(logits, run["batch"][1]).backward()
            run["optimizer"].step()

        for run in runs.values():
            for _ in range(args.warmup):
                step(run)
        for _ in range(args.steps):
            for run in runs.values():
                before = group.totals()
                dist.barrier()  # start together; the barrier itself sends nothing
                start = time.perf_counter()
                step(run)
                run["times"].append(time.perf_counter() - start)
                after = group.totals()
                run["sent"].append(after["sent"] - before["sent"])
                run["payload"].append(after["payload"] - before["payload"])
        numel = sum(p.numel() for p in runs["DDP+Adam"]["ddp"].parameters())
        results[model_name] = dict(params=numel, rows={
            name: dict(ms_per_step=1000 * statistics.median(run["times"]),
                       sent_per_step=statistics.fmean(run["sent"]),
                       payload_per_step=statistics.fmean(run["payload"]),
                       max_sent_per_step=max(run["sent"]))
            for name, run in runs.items()})
    if rank == 0:
        queue.put(results)
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def markdown(results: dict) -> str:
    lines = []
    for world, per_model in sorted(results["runs"].items(), key=lambda kv: int(kv[0])):
        for model_name, data in per_model.items():
            title = f"**{model_name}**, {world} processes ({data['params'] / 1e6:.2f} M params)"
            lines += [title, "",
                      "| optimizer | ms/step | bytes sent/step | payload bytes/step | "
                      "sent vs DDP all-reduce |", "|---|---|---|---|---|"]
            for name, row in data["rows"].items():
                base = data["rows"][BASELINE.get(name, name)]["sent_per_step"]
                lines.append(f"| {name} | {row['ms_per_step']:.1f} | {row['sent_per_step']:,.0f} | "
                             f"{row['payload_per_step']:,.0f} | "
                             f"{row['sent_per_step'] / base:.4f} |")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--models", nargs="+", default=["demo", "mlp"], choices=["demo", "mlp"])
    parser.add_argument("--warmup", type=int, default=5, help="full-precision steps first")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per optimizer")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "distributed.json"))
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                   torch=torch.__version__, load_at_start=load, warmup=args.warmup,
                   steps=args.steps, runs={})
    context = mp.get_context("spawn")
    for world in args.nprocs:
        queue = context.SimpleQueue()
        mp.start_processes(worker, args=(world, free_port(), args, queue), nprocs=world,
                           start_method="spawn")
        results["runs"][str(world)] = queue.get()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    table = markdown(results)
    Path(args.out).with_suffix(".md").write_text(table)
    print(f"{results['date']}, load {load:.2f}, torch {results['torch']}\n\n{table}")


if __name__ == "__main__":
    main()
