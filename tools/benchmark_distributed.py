#!/usr/bin/env python
"""Distributed training steps: DDP+Adam vs OnebitAdam vs ZeroOneAdam vs DDP+LAMB vs OnebitLamb.

For each world size, ``torch.multiprocessing`` starts that many gloo processes on 127.0.0.1 (one
thread each) over the byte-counting process group (``visdet_mmext.algorithms.onebit.traffic``),
so every collective (DDP's all-reduce, the 1-bit all-to-all/all-gather) is counted where it is
issued, and can be slowed to a given link speed (``--gbits``). Two parts:

1. **compression**: the 1-bit all-reduce alone on ResNet-50's parameters (161 tensors, 25.6 M):
   nanoseconds per parameter of its compute stages on each rank (worker compression, server
   average and compression, decompression; C kernels and torch operations), next to DDP's fp32
   all-reduce of the same parameters over loopback, and the link speed below which the 1-bit
   exchange is faster than the fp32 ring all-reduce (bytes saved / compute time).
2. **steps**: each model trained by each optimizer (one copy per optimizer) on synthetic batches:
   ``--warmup`` full-precision steps (``freeze_step``), ``--settle`` untimed compression-stage
   steps (0/1 Adam reaches its longest local-step interval, 16), then for each link (loopback,
   then every ``--gbits``) ``--steps`` timed steps taken round-robin across the optimizers so load
   changes hit all alike. Reported: the mean wall time of a whole training step on rank 0
   (forward, backward with DDP's communication, optimizer step; mean, so 0/1 Adam's one
   synchronisation per 16 steps counts), the bytes sent per step, and the 1-bit compute per step.

Models: ``demo`` (the demo's DemoConvNet, 32x32 images, batch 64 per rank: compute-bound),
``mlp`` (four 1024x1024 layers, 4.2 M parameters, batch 32: communication-bound),
``resnet50_params`` (ResNet-50's 161 parameter tensors, 25.6 M, with a loss that costs one pass
over them: the step is the optimizer and its communication, as when a GPU computes the rest) and
``resnet50`` (Hugging Face transformers' ResNet-50 from its config, batch 2 of 32x32 images per
rank: seconds of CPU compute per step; not in the default set).

    python tools/benchmark_distributed.py                       # loopback, 2 and 4 processes
    python tools/benchmark_distributed.py --models resnet50_params --optimizers DDP+Adam \\
        OnebitAdam ZeroOneAdam --gbits 1 10 25 --out docs/benchmarks/distributed_links.json
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
MODELS = ("demo", "mlp", "resnet50_params", "resnet50")
LOOPBACK = "loopback"
STAGES = ("worker", "server", "decompress")


class Logits(nn.Module):
    """A model's logits as forward (DDP calls forward; mmengine's modes and HF's output objects
    are not needed)."""

    def __init__(self, model, hugging_face: bool = False):
        super().__init__()
        self.model = model
        self.hugging_face = hugging_face

    def forward(self, inputs):
        return self.model(inputs).logits if self.hugging_face else self.model.logits(inputs)


def resnet50() -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification
    return ResNetForImageClassification(ResNetConfig(num_labels=1000))


class ParametersOnly(nn.Module):
    """``model``'s parameters (same shapes and initial values) and almost no compute: the logits
    are the inputs plus the mean square of every parameter, so each gets a dense gradient for
    one pass forward and one backward. Its step time is the optimizer and its communication."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.weights = nn.ParameterList(p.detach().clone() for p in model.parameters())

    def forward(self, inputs):
        return inputs + sum(p.square().mean() for p in self.weights)


def build_model(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model whose forward gives logits, and one synthetic batch, the same on every call."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "demo":
        from visdet_mmext.demo.models import DemoConvNet
        model = Logits(DemoConvNet(num_classes=4, widths=(32, 64, 128)))
        inputs = torch.randn(64, 3, 32, 32, generator=generator)
        return model, inputs, torch.randint(0, 4, (64,), generator=generator)
    if name == "resnet50":
        inputs = torch.randn(2, 3, 32, 32, generator=generator)
        return Logits(resnet50(), True), inputs, torch.randint(0, 1000, (2,), generator=generator)
    if name == "resnet50_params":
        inputs = torch.randn(2, 10, generator=generator)
        return ParametersOnly(resnet50()), inputs, torch.randint(0, 10, (2,), generator=generator)
    layers = []
    for _ in range(4):
        layers += [nn.Linear(1024, 1024), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    return model, torch.randn(32, 1024, generator=generator), torch.randint(0, 1024, (32,),
                                                                           generator=generator)


def build_optimizer(name: str, params, warmup: int, lr: float):
    from visdet_mmext.algorithms.onebit import OnebitAdam, OnebitLamb, ZeroOneAdam
    from visdet_mmext.algorithms.lamb import LAMB
    if name == "DDP+Adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "DDP+LAMB":
        return LAMB(params, lr=lr)
    if name == "OnebitAdam":
        return OnebitAdam(params, lr=lr, freeze_step=warmup)
    if name == "OnebitLamb":
        return OnebitLamb(params, lr=lr, freeze_step=warmup)
    # local steps reach their longest interval (16) 8 steps after the warm-up
    return ZeroOneAdam(params, lr=lr, var_freeze_step=warmup, local_step_scaler=2,
                       local_step_clipper=16)


class StageClock:
    """Seconds spent in the 1-bit all-reduce's compute stages, by wrapping both codecs' stage
    methods in this process (the collectives between them are not counted): wall time, and the
    calling thread's CPU time, which a busy machine does not inflate (one thread per process)."""

    def __init__(self):
        from visdet_mmext.algorithms.onebit.compression import TorchCodec
        from visdet_mmext.algorithms.onebit.native import NativeCodec
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.cpu_seconds = dict.fromkeys(STAGES, 0.0)
        for codec in (NativeCodec, TorchCodec):
            for stage in STAGES:
                setattr(codec, stage, self._timed(stage, getattr(codec, stage)))

    def _timed(self, stage: str, method):
        def timed(*args):
            start, cpu = time.perf_counter(), time.thread_time()
            method(*args)
            self.seconds[stage] += time.perf_counter() - start
            self.cpu_seconds[stage] += time.thread_time() - cpu
        return timed

    def total(self) -> float:
        return sum(self.seconds.values())


def compression_part(rank: int, world: int, clock: StageClock, rounds: int) -> dict:
    """The 1-bit all-reduce alone on ResNet-50's parameters: per codec, each rank's median compute
    seconds per round by stage; DDP's fp32 all-reduce of as many parameters over loopback."""
    from visdet_mmext.algorithms.onebit.compression import ChunkLayout, compressed_allreduce
    numels = [p.numel() for p in resnet50().parameters()]
    layout = ChunkLayout(numels, world)
    generator = torch.Generator().manual_seed(rank)
    out = dict(params=sum(numels), tensors=len(numels), row_bytes=layout.row_bytes, codecs={})
    for native in (True, False):
        flat = torch.zeros(layout.flat_numel)
        for view in layout.views(flat):
            view.copy_(torch.randn(view.shape, generator=generator))
        errors = torch.zeros(world, layout.width), torch.zeros(layout.width)
        per_round = []
        for _ in range(rounds):
            wall, cpu = dict(clock.seconds), dict(clock.cpu_seconds)
            dist.barrier()
            compressed_allreduce(flat, *errors, layout, native=native)
            per_round.append({**{stage: clock.seconds[stage] - wall[stage] for stage in STAGES},
                              **{f"{stage}_cpu": clock.cpu_seconds[stage] - cpu[stage]
                                 for stage in STAGES}})
        out["codecs"]["C kernels" if native else "torch ops"] = {
            key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
    fp32 = torch.randn(sum(numels), generator=generator)
    seconds = []
    for _ in range(rounds):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(fp32)
        seconds.append(time.perf_counter() - start)
    out["fp32_allreduce"] = statistics.median(seconds)
    return out


def steps_part(model_name: str, group, clock: StageClock, args) -> dict:
    from visdet_mmext.algorithms.onebit import OnebitOptimizer, install_ddp_hook
    runs = {}
    for name in args.optimizers:
        model, inputs, labels = build_model(model_name)
        ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        optimizer = build_optimizer(name, ddp.parameters(), args.warmup, args.lr)
        if isinstance(optimizer, OnebitOptimizer):
            install_ddp_hook(ddp, optimizer)
        runs[name] = dict(ddp=ddp, optimizer=optimizer, batch=(inputs, labels))

    def step(run) -> None:
        run["optimizer"].zero_grad(set_to_none=True)
        logits = run["ddp"](run["batch"][0])
        nn.functional.cross_entropy(logits, run["batch"][1]).backward()
        run["optimizer"].step()

    for run in runs.values():
        for _ in range(args.warmup + args.settle):
            step(run)
    params = list(runs[args.optimizers[0]]["ddp"].parameters())
    speeds = [None, *args.gbits]
    samples = {gbits: {name: dict(times=[], cpu=[], sent=[], compute=[]) for name in runs}
               for gbits in speeds}
    # every link twice, in order and then reversed: a load that drifts hits all links alike
    for visit, gbits in enumerate(speeds + speeds[::-1]):
        if dist.get_rank() == 0:
            print(f"  {model_name}, {dist.get_world_size()} processes, "
                  f"{'loopback' if gbits is None else f'{gbits:g} Gbit/s'} "
                  f"({visit + 1}/{2 * len(speeds)}): {args.steps} steps x {len(runs)} "
                  "optimizers", flush=True)
        group.limit_bandwidth(None if gbits is None else gbits * 1e9)
        for _ in range(args.steps):
            for name, run in runs.items():
                sent, compute = group.totals()["sent"], clock.total()
                dist.barrier()  # start together; the barrier itself sends nothing
                start, cpu = time.perf_counter(), time.process_time()
                step(run)
                sample = samples[gbits][name]
                sample["times"].append(time.perf_counter() - start)
                sample["cpu"].append(time.process_time() - cpu)
                sample["sent"].append(group.totals()["sent"] - sent)
                sample["compute"].append(clock.total() - compute)
    group.limit_bandwidth(None)
    links = {LOOPBACK if gbits is None else f"{gbits:g}": {
        name: dict(ms_per_step=1000 * statistics.fmean(s["times"]),
                   median_ms=1000 * statistics.median(s["times"]),
                   cpu_ms_per_step=1000 * statistics.fmean(s["cpu"]),
                   sent_per_step=statistics.fmean(s["sent"]),
                   onebit_compute_ms=1000 * statistics.fmean(s["compute"]))
        for name, s in by_name.items()} for gbits, by_name in samples.items()}
    return dict(params=sum(p.numel() for p in params), tensors=len(params), links=links)


def worker(rank: int, world: int, port: int, args, queue) -> None:
    from visdet_mmext.algorithms.onebit.traffic import counting_group, register_counting_backend

    torch.set_num_threads(1)
    dist.init_process_group(register_counting_backend(), init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    group = counting_group()
    clock = StageClock()
    compression = compression_part(rank, world, clock, args.compression_rounds)
    everyone = [None] * world
    dist.all_gather_object(everyone, compression["codecs"])
    compression["codecs"] = everyone  # per rank
    results = dict(compression=compression, models={})
    for model_name in args.models:
        results["models"][model_name] = steps_part(model_name, group, clock, args)
    if rank == 0:
        queue.put(results)
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def break_even_gbits(world: int, params: int, row_bytes: int, compute_s: float) -> float:
    """Link speed (Gbit/s) at which the bytes the 1-bit exchange saves against DDP's fp32 ring
    all-reduce take as long to send as its compute stages."""
    ring = 2 * (world - 1) / world * 4 * params
    onebit = 2 * (world - 1) * row_bytes  # all-to-all of (p-1) rows + all-gather of (p-1) rows
    return (ring - onebit) * 8 / compute_s / 1e9


def markdown(results: dict) -> str:
    lines = ["**The 1-bit all-reduce's compute** on ResNet-50's parameters, ns per parameter "
             "and step on the slowest rank: CPU time of its one thread (wall time in "
             "brackets), against DDP's fp32 all-reduce of the same parameters over loopback "
             "(wall). *1-bit wins below*: the link speed at which the bytes it saves take as "
             "long as its compute (CPU time; wall time in brackets).", "",
             "| processes | params (tensors) | implementation | worker | server | decompress | "
             "total ns/param | fp32 all-reduce, loopback | 1-bit wins below (Gbit/s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for world, run in sorted(results["runs"].items(), key=lambda kv: int(kv[0])):
        c = run["compression"]
        n = c["params"]
        for codec in c["codecs"][0]:
            def seconds(rank, cpu):
                return sum(rank[codec][f"{s}_cpu" if cpu else s] for s in STAGES)
            slowest = max(c["codecs"], key=lambda rank: seconds(rank, True))[codec]
            wall = max(seconds(rank, False) for rank in c["codecs"])
            cpu = sum(slowest[f"{s}_cpu"] for s in STAGES)
            gbits = [break_even_gbits(int(world), n, c["row_bytes"], t) for t in (cpu, wall)]
            lines.append(f"| {world} | {n / 1e6:.1f} M ({c['tensors']}) | {codec} | "
                         + " | ".join(f"{1e9 * slowest[f'{s}_cpu'] / n:.2f}" for s in STAGES)
                         + f" | **{1e9 * cpu / n:.2f}** ({1e9 * wall / n:.2f}) | "
                         f"{1e9 * c['fp32_allreduce'] / n:.2f} | "
                         f"**{gbits[0]:.1f}** ({gbits[1]:.1f}) |")
    lines.append("")
    for world, run in sorted(results["runs"].items(), key=lambda kv: int(kv[0])):
        for model_name, data in run["models"].items():
            links = list(data["links"])
            lines += [f"**{model_name}**, {world} processes ({data['params'] / 1e6:.2f} M params, "
                      f"{data['tensors']} tensors): ms/step (wall) by link; CPU time of rank 0's "
                      "process per step over loopback", "",
                      "| optimizer | " + " | ".join(
                          LOOPBACK if link == LOOPBACK else f"{link} Gbit/s" for link in links)
                      + " | CPU ms/step | bytes sent/step | vs DDP | 1-bit compute ms/step |",
                      "|---|" + "---|" * (len(links) + 4)]
            first = data["links"][links[0]]
            for name, row in first.items():
                base = first.get(BASELINE.get(name, name), row)["sent_per_step"]
                times = " | ".join(f"{data['links'][link][name]['ms_per_step']:.0f}"
                                   for link in links)
                lines.append(f"| {name} | {times} | {row.get('cpu_ms_per_step', float('nan')):.0f}"
                             f" | {row['sent_per_step']:,.0f} | "
                             f"{row['sent_per_step'] / base:.4f} | "
                             f"{row['onebit_compute_ms']:.1f} |")
            lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> bool:
    """ms/step against the link speed, one panel per model and world size (needs matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    worlds = sorted(results["runs"], key=int)
    models = [m for m in MODELS if any(
        m in run["models"] and len(run["models"][m]["links"]) > 1
        for run in results["runs"].values())]
    if not models:
        return False
    fig, axes = plt.subplots(len(models), len(worlds), figsize=(5.5 * len(worlds),
                                                                 4 * len(models)), squeeze=False)
    for ax, (model_name, world) in zip(axes.flat, [(m, w) for m in models for w in worlds]):
        data = results["runs"][world]["models"].get(model_name)
        if data is None:
            ax.set_visible(False)
            continue
        speeds = sorted(float(link) for link in data["links"] if link != LOOPBACK)
        for name in data["links"][LOOPBACK]:
            line, = ax.plot(speeds, [data["links"][f"{s:g}"][name]["ms_per_step"]
                                     for s in speeds], marker="o", label=name)
            ax.axhline(data["links"][LOOPBACK][name]["ms_per_step"], color=line.get_color(),
                       linestyle=":", linewidth=1)
        ax.set_ylim(bottom=0)
        ax.set_xscale("log")
        ax.set_xticks(speeds, [f"{s:g}" for s in speeds])
        ax.set_xlabel("simulated link (Gbit/s per rank)")
        ax.set_ylabel("ms per training step (rank 0)")
        ax.set_title(f"{model_name}, {world} processes ({data['params'] / 1e6:.1f} M params); "
                     "dotted: loopback", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"{results['date']}, load {results['load_at_start']:.1f} -> "
                 f"{results['load_at_end']:.1f}, "
                 f"{results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--models", nargs="*", default=list(MODELS[:3]), choices=MODELS)
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--gbits", type=float, nargs="*", default=[],
                        help="simulated link speeds (Gbit/s per rank) to time besides loopback")
    parser.add_argument("--warmup", type=int, default=5, help="full-precision steps first")
    parser.add_argument("--settle", type=int, default=8,
                        help="untimed compression-stage steps (0/1 Adam's interval grows to 16)")
    parser.add_argument("--steps", type=int, default=16,
                        help="timed steps per optimizer and link (16: one 0/1 Adam interval)")
    parser.add_argument("--compression-rounds", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "distributed.json"))
    parser.add_argument("--replot", action="store_true",
                        help="only rewrite the table and plot from the JSON file at --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        report(json.loads(out.read_text()), out)
        return
    results = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                   torch=torch.__version__, load_at_start=os.getloadavg()[0],
                   command=" ".join(sys.argv), warmup=args.warmup, settle=args.settle,
                   steps=args.steps, runs={})
    context = mp.get_context("spawn")
    for world in args.nprocs:
        print(f"{world} processes ...", flush=True)
        queue = context.SimpleQueue()
        mp.start_processes(worker, args=(world, free_port(), args, queue), nprocs=world,
                           start_method="spawn")
        results["runs"][str(world)] = queue.get()
    results["load_at_end"] = os.getloadavg()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    report(results, out)


def report(results: dict, out: Path) -> None:
    """The tables (``out`` with .md) and, with simulated links, the plot (.png)."""
    table = markdown(results)
    out.with_suffix(".md").write_text(table)
    drawn = plot(results, out.with_suffix(".png"))
    print(f"{results['date']}, load {results['load_at_start']:.2f} -> "
          f"{results['load_at_end']:.2f}, torch {results['torch']}\n\n{table}")
    if drawn:
        print(f"plot: {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
