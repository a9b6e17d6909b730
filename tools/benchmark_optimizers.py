#!/usr/bin/env python
"""Optimizer step cost: the native Lion, LAMB, ADOPT, Adan and Muon side by side with the installed
peers.

Parameter sets (fp32 params and grads):

* ``transformer``: embedding 50256 x h, per block qkv 3h x h, proj h x h, mlp 4h x h and h x 4h with
  biases and two LayerNorms, head 10 x h (h=512, 12 blocks: 63.5 M params on CPU; 2048/24 on CUDA).
  Muon rows use its 2-D subset, the only thing torch.optim.Muon accepts.
* ``transformer10m``: the same blocks at h=256, 13 of them, embedding 1024 x h (10.5 M params in
  159 tensors): the element-wise optimizers and the wrapped ones (ADOPT, Adan, SOAP, Prodigy,
  schedule-free AdamW) beside their peers.
* ``resnet50``: ResNet-50's parameter shapes (25.6 M); Muon batched vs its per-matrix loop.

Per optimizer: warm-up steps (compilation happens here, reported as "first step"), then timed steps
(CUDA events on GPU). Reported: ms/step (median), optimizer-state bytes/param, the fraction of the
device's copy bandwidth (ideal bytes moved / time; the copy is measured in the same run), and for
Muon the Newton-Schulz GFLOP/s. Writes ``<out>/<tag>.json``, ``.png`` and ``.md`` (a markdown
table).

    python tools/benchmark_optimizers.py                 # full run, ~5 min on 2 CPU cores
    python tools/benchmark_optimizers.py --quick         # small sets, a smoke run
    python tools/benchmark_optimizers.py --only 'Lion|AdamW fused'
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visdet_mmext.algorithms.adan import Adan  # noqa: E402
from visdet_mmext.algorithms.adopt import ADOPT  # noqa: E402
from visdet_mmext.algorithms.lamb import LAMB  # noqa: E402
from visdet_mmext.algorithms.lion import Lion  # noqa: E402
from visdet_mmext.algorithms.muon import Muon, matrix_shape  # noqa: E402

# Bytes per parameter an ideal single-pass kernel moves (fp32): reads p, g and the states, writes
# p and the states.
IDEAL_BYTES = {"adamw": 28, "lion": 20, "lamb": 28, "adopt": 28, "adan": 44}


# --------------------------------------------------------------------------- parameter sets
def transformer_shapes(h: int, blocks: int, vocab: int = 50256, classes: int = 10) -> list:
    shapes = [(vocab, h)]
    for _ in range(blocks):
        shapes += [(3 * h, h), (3 * h,), (h, h), (h,), (4 * h, h), (4 * h,), (h, 4 * h), (h,),
                   (h,), (h,), (h,), (h,)]
    return shapes + [(classes, h), (classes,)]


def resnet50_shapes(width: int = 64, classes: int = 1000) -> list:
    shapes = [(width, 3, 7, 7), (width,), (width,)]
    inplanes = width
    for i, blocks in enumerate((3, 4, 6, 3)):
        planes = width * 2 ** i
        for b in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,),
                       (planes, planes, 3, 3), (planes,), (planes,),
                       (planes * 4, planes, 1, 1), (planes * 4,), (planes * 4,)]
            if b == 0:
                shapes += [(planes * 4, inplanes, 1, 1), (planes * 4,), (planes * 4,)]
            inplanes = planes * 4
    return shapes + [(classes, inplanes), (classes,)]


def make_params(shapes: list, device: torch.device, seed: int = 0) -> list[nn.Parameter]:
    # drawn where they live: 2.6 G random numbers drawn on the CPU would take tens of seconds
    gen = torch.Generator(device=device).manual_seed(seed)
    params = []
    for s in shapes:
        p = nn.Parameter(torch.randn(s, generator=gen, device=device) * 0.02)
        p.grad = torch.randn(s, generator=gen, device=device) * 0.01
        params.append(p)
    return params


def ns_flops(params: list, steps: int = 5) -> float:
    """Newton-Schulz FLOPs of one Muon step over the >= 2-D tensors."""
    total = 0.0
    for p in params:
        if p.ndim >= 2:
            m, n = sorted(matrix_shape(p))
            total += steps * (4 * m * m * n + 2 * m ** 3)
    return total


# --------------------------------------------------------------------------- measurement
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, mbytes: int = 256, repeats: int = 8) -> float:
    """Best-of-N device copy bandwidth in GB/s (read + write bytes; CUDA events on GPU)."""
    n = mbytes * 2 ** 20 // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    best = math.inf
    for _ in range(repeats + 2):
        if device.type == "cuda":
            best = min(best, timed_step(_Copy(dst, src), device) / 1e3)
            continue
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


class _Copy:
    """A copy with a ``step()``, so :func:`timed_step` times it like an optimizer."""

    def __init__(self, dst: torch.Tensor, src: torch.Tensor):
        self.dst, self.src = dst, src

    def step(self) -> None:
        self.dst.copy_(self.src)


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-N fp32 GEMM rate in GFLOP/s (n x n times n x n), the ceiling for Newton-Schulz."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    out = torch.empty_like(a)
    best = math.inf
    for _ in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def state_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.device.type != "meta" and v.dim() > 0:
                total += v.numel() * v.element_size()
    return total


def timed_step(opt, device: torch.device) -> float:
    """One ``opt.step()`` in ms (CUDA events on GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        opt.step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    opt.step()
    return (time.perf_counter() - t0) * 1e3


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    set: str
    name: str
    factory: Callable[[list], torch.optim.Optimizer]
    native: bool = False
    subset: str = "all"  # "all" or "2d"
    kind: str | None = None  # key of IDEAL_BYTES
    muon: bool = False  # report Newton-Schulz GFLOP/s
    cuda_only: bool = False
    heavy: bool = False  # matmul-bound: fewer steps
    result: dict = field(default_factory=dict)


def bnb_optim():
    import bitsandbytes as bnb
    return bnb.optim


def collection(name: str):
    return getattr(__import__("pytorch_optimizer"), name)


def schedule_free(params: list) -> torch.optim.Optimizer:
    optimizer = __import__("schedulefree").AdamWScheduleFree(params, lr=1e-3)
    optimizer.train()  # it steps only in train mode
    return optimizer


def small_set_cases() -> list[Case]:
    """The 10 M set: the element-wise native optimizers and the wrapped rows beside their peers."""
    s = "transformer10m"
    return [
        Case(s, "torch AdamW fused", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
             kind="adamw"),
        Case(s, "native Lion", lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1), native=True,
             kind="lion"),
        Case(s, "native LAMB", lambda ps: LAMB(ps, lr=1e-3, weight_decay=0.01), native=True,
             kind="lamb"),
        Case(s, "pytorch-optimizer Lamb", lambda ps: collection("Lamb")(
            ps, lr=1e-3, weight_decay=0.01), kind="lamb"),
        Case(s, "native ADOPT", lambda ps: ADOPT(ps, lr=1e-3, weight_decay=0.01, decouple=True),
             native=True, kind="adopt"),
        Case(s, "pytorch-optimizer ADOPT", lambda ps: collection("ADOPT")(
            ps, lr=1e-3, weight_decay=0.01, weight_decouple=True), kind="adopt"),
        Case(s, "native Adan", lambda ps: Adan(ps, lr=1e-3, weight_decay=0.02), native=True,
             kind="adan"),
        Case(s, "pytorch-optimizer Adan", lambda ps: collection("Adan")(
            ps, lr=1e-3, weight_decay=0.02), kind="adan"),
        Case(s, "pytorch-optimizer Adan per-parameter", lambda ps: collection("Adan")(
            ps, lr=1e-3, weight_decay=0.02, foreach=False), kind="adan"),
        Case(s, "SOAP (pytorch-optimizer)", lambda ps: collection("SOAP")(ps, lr=3e-3),
             heavy=True),
        Case(s, "Prodigy", lambda ps: __import__("prodigyopt").Prodigy(ps, lr=1.0)),
        Case(s, "AdamWScheduleFree", schedule_free),
    ]


def cases(device: torch.device) -> list[Case]:
    t, r = "transformer", "resnet50"
    return small_set_cases() + [
        Case(t, "torch AdamW fused", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
             kind="adamw"),
        Case(t, "torch AdamW foreach", lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
             kind="adamw"),
        Case(t, "native Lion", lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1), native=True,
             kind="lion"),
        Case(t, "native Lion foreach", lambda ps: Lion(ps, lr=1e-4, weight_decay=0.1, fast=False,
                                                       foreach=True), native=True, kind="lion"),
        Case(t, "lion-pytorch Lion", lambda ps: __import__("lion_pytorch").Lion(
            ps, lr=1e-4, weight_decay=0.1), kind="lion"),
        Case(t, "bitsandbytes Lion (32-bit)", lambda ps: bnb_optim().Lion(
            ps, lr=1e-4, weight_decay=0.1, optim_bits=32), kind="lion"),
        Case(t, "native LAMB", lambda ps: LAMB(ps, lr=1e-3, weight_decay=0.01), native=True,
             kind="lamb"),
        Case(t, "native LAMB foreach", lambda ps: LAMB(ps, lr=1e-3, weight_decay=0.01, fast=False,
                                                       foreach=True), native=True, kind="lamb"),
        Case(t, "bitsandbytes LAMB (32-bit)", lambda ps: bnb_optim().LAMB(
            ps, lr=1e-3, weight_decay=0.01, optim_bits=32), kind="lamb"),
        Case(t, "DeepSpeed FusedLamb", lambda ps: __import__(
            "deepspeed.ops.lamb", fromlist=["FusedLamb"]).FusedLamb(ps, lr=1e-3, weight_decay=0.01),
            kind="lamb", cuda_only=True),
        Case(t, "torch.optim.Muon (2-D)",
             lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.0),
             subset="2d", muon=True, heavy=True),
        Case(t, "native Muon (2-D)", lambda ps: Muon(ps, lr=0.02), native=True, subset="2d",
             muon=True, heavy=True),
        Case(r, "native Muon (all params)", lambda ps: Muon(ps, lr=0.02), native=True, muon=True,
             heavy=True),
        Case(r, "native Muon per-matrix loop", lambda ps: Muon(ps, lr=0.02, fast=False,
                                                               foreach=False),
             native=True, muon=True, heavy=True),
    ] + (cuda_peers() if device.type == "cuda" else [])


def cuda_peers() -> list[Case]:
    """Peers measured on GPUs only (DeepSpeed's fused ops exist only there; 8-bit AdamW is the
    bitsandbytes optimizer people run on GPUs)."""
    t = "transformer"
    ops = lambda module, name: getattr(__import__(module, fromlist=[name]), name)  # noqa: E731
    return [
        Case(t, "DeepSpeed FusedAdam", lambda ps: ops("deepspeed.ops.adam", "FusedAdam")(
            ps, lr=1e-3, adam_w_mode=True), kind="adamw", cuda_only=True),
        Case(t, "DeepSpeed FusedLion", lambda ps: ops("deepspeed.ops.lion", "FusedLion")(
            ps, lr=1e-4, weight_decay=0.1), kind="lion", cuda_only=True),
        Case(t, "bitsandbytes AdamW8bit", lambda ps: bnb_optim().AdamW8bit(ps, lr=1e-3),
             cuda_only=True),
    ]


# --------------------------------------------------------------------------- reporting
def machine_info(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "device": str(device),
            "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for dist in ("bitsandbytes", "lion-pytorch", "deepspeed", "mmengine"):
        info[dist] = _dist_version(dist)
    return info


def _dist_version(name: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def ratio(results: dict, a: tuple, b: tuple, key: str = "ms_per_step") -> float | None:
    """``a``'s time over ``b``'s: ``key='round'`` is the median of the per-round ratios (the two
    were stepped back to back in every round, so load changes cancel), else the ratio of that
    statistic."""
    ra, rb = results.get(a, {}), results.get(b, {})
    if key == "round" and ra.get("ms_all") and rb.get("ms_all"):
        return statistics.median(x / y for x, y in zip(ra["ms_all"], rb["ms_all"]))
    if ra.get(key) and rb.get(key):
        return ra[key] / rb[key]
    return None


def targets(results: dict, device: torch.device, key: str = "round") -> list[dict]:
    """The goals; ``key``: ``round`` (median of per-round ratios), ``ms_per_step`` (ratio of the
    medians) or ``ms_min`` (of the best rounds)."""
    t, r, s = "transformer", "resnet50", "transformer10m"
    rows = []

    def add(name, a=None, b=None, goal=None, op=None, value=None):
        if a is not None:
            value = ratio(results, (a[0], a[1]), (b[0], b[1]), key)
        met = None if value is None or goal is None else (
            value <= goal if op == "<=" else value >= goal)
        rows.append(dict(target=name, value=value, goal=f"{op} {goal}" if goal else "info",
                         met=met))

    muon_2d, torch_muon = (t, "native Muon (2-D)"), (t, "torch.optim.Muon (2-D)")
    batched, loop = (r, "native Muon (all params)"), (r, "native Muon per-matrix loop")
    if device.type == "cpu":
        add("native Lion / torch AdamW fused (ms)", (t, "native Lion"), (t, "torch AdamW fused"),
            0.8, "<=")
        add("native LAMB / torch AdamW fused (ms)", (t, "native LAMB"), (t, "torch AdamW fused"),
            1.5, "<=")
        for name in ("LAMB", "ADOPT", "Adan"):
            add(f"10 M: native {name} / torch AdamW fused (ms)", (s, f"native {name}"),
                (s, "torch AdamW fused"), 1.5, "<=")
        add("native LAMB / bitsandbytes LAMB (ms)", (t, "native LAMB"),
            (t, "bitsandbytes LAMB (32-bit)"), 0.5, "<=")
        add("native Muon / torch.optim.Muon, 2-D subset (ms)", muon_2d, torch_muon, 0.8, "<=")
        add("ResNet-50: per-matrix loop / fast path (speed-up; the >= 3 goal is for H200)",
            loop, batched, 3.0, ">=")
        add("ResNet-50: fast path / per-matrix loop (ms)", batched, loop, 1.0, "<=")
    else:
        add("native Lion copy-bandwidth fraction", goal=0.75, op=">=",
            value=results.get((t, "native Lion"), {}).get("bw_fraction"))
        add("native LAMB / DeepSpeed FusedLamb (ms)", (t, "native LAMB"),
            (t, "DeepSpeed FusedLamb"), 1.0, "<=")
        add("native Muon / torch.optim.Muon, 2-D subset (ms)", muon_2d, torch_muon, 0.5, "<=")
        add("ResNet-50: per-matrix loop / batched (speed-up)", loop, batched, 3.0, ">=")
    add("lion-pytorch / torch AdamW fused (ms)", (t, "lion-pytorch Lion"), (t, "torch AdamW fused"))
    return rows


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    lines = []
    for set_name, meta in report["sets"].items():
        lines += [f"**{set_name}** ({meta['description']}; {meta['params'] / 1e6:.1f} M params, "
                  f"{meta['tensors']} tensors; 2-D subset {meta['params_2d'] / 1e6:.1f} M)", "",
                  "| optimizer | ms/step | bw fraction | state B/param | NS GFLOP/s "
                  "| NS / matmul peak | first step s |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["results"]:
            if row["set"] != set_name:
                continue
            name = f"**{row['name']}**" if row["native"] else row["name"]
            if row.get("skipped"):
                lines.append(f"| {name} | skipped: {row['skipped']} | | | | | |")
                continue
            if "ms_per_step" not in row:  # a report written before the run reached it
                lines.append(f"| {name} | not measured yet | | | | | |")
                continue
            peak = report["matmul_peak_GFLOPs"]
            lines.append(f"| {name} | {row['ms_per_step']:.1f} | {fmt(row['bw_fraction'], '.2f')} "
                         f"| {fmt(row['state_bytes_per_param'], '.2f')} | "
                         f"{fmt(row['gflops'], '.0f')} | "
                         f"{fmt(row['gflops'] and row['gflops'] / peak, '.2f')} | "
                         f"{row['first_step_s']:.2f} |")
        lines.append("")
    lines += [f"Copy bandwidth {report['copy_bandwidth_GBps']:.1f} GB/s, fp32 matmul peak "
              f"{report['matmul_peak_GFLOPs']:.0f} GFLOP/s (2048^3, best of the run); load "
              f"average {report['load_average_before'][0]:.2f} before, "
              f"{report['load_average_after'][0]:.2f} after.", "",
              "| target | per-round ratio (median) | ratio of medians | best-round ratio | goal "
              "| met (per-round) |",
              "|---|---|---|---|---|---|"]
    for row in report["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['target']} | {fmt(row['value'], '.2f')} | "
                     f"{fmt(row.get('value_medians'), '.2f')} | "
                     f"{fmt(row.get('value_best_round'), '.2f')} | {row['goal']} | {met} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = list(report["sets"])
    rows = {s: [r for r in report["results"] if r["set"] == s and "ms_per_step" in r]
            for s in sets}
    heights = [max(1, len(rows[s])) for s in sets]
    fig, axes = plt.subplots(len(sets), 1, figsize=(9, 0.45 * sum(heights) + 1.6 * len(sets)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, s in zip(axes[:, 0], sets):
        data = rows[s][::-1]
        names = [r["name"] for r in data]
        values = [r["ms_per_step"] for r in data]
        colors = ["tab:orange" if r["native"] else "tab:gray" for r in data]
        ax.barh(names, values, color=colors)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 3)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.0f}" if v >= 10 else f" {v:.1f}", va="center", fontsize=8)
        ax.set_title(f"{s}: ms/step (log scale; orange = native)", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    m = report["machine"]
    fig.suptitle(f"{m.get('gpu') or m.get('cpu')} ({m['cpu_threads']} threads), torch {m['torch']}"
                 f", {report['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def write_report(args, device, rows, results_by_key, report_sets, bandwidth, peak,
                 load_before) -> dict:
    """``<out>/<tag>.json`` and ``.md`` from the rows measured so far."""
    for row in results_by_key.values():
        ideal = IDEAL_BYTES[row["kind"]] * row["params"] / 1e9 if row.get("kind") else None
        row["bw_fraction"] = ideal / (row["ms_per_step"] / 1e3) / bandwidth if ideal else None
    report = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(device),
        copy_bandwidth_GBps=bandwidth, matmul_peak_GFLOPs=peak,
        load_average_before=load_before, load_average_after=os.getloadavg(),
        settings=dict(warmup=args.warmup, steps=args.steps, heavy_warmup=args.heavy_warmup,
                      heavy_steps=args.heavy_steps, quick=args.quick),
        sets=report_sets, results=rows, targets=targets(results_by_key, device))
    for row, medians, best in zip(report["targets"],
                                  targets(results_by_key, device, key="ms_per_step"),
                                  targets(results_by_key, device, key="ms_min")):
        if "(ms)" in row["target"] or "speed-up" in row["target"]:
            row["value_medians"], row["value_best_round"] = medians["value"], best["value"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or device.type
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sets and few steps (smoke)")
    parser.add_argument("--hidden", type=int, help="transformer width (CPU 512, CUDA 2048)")
    parser.add_argument("--blocks", type=int, help="transformer blocks (CPU 12, CUDA 24)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--heavy-warmup", type=int,
                        help="warm-up steps for Muon rows (CPU 0: nothing to compile; CUDA 3)")
    parser.add_argument("--heavy-steps", type=int,
                        help="timed steps for Muon rows (CPU 2, CUDA 10)")
    parser.add_argument("--only", help="regex on optimizer names")
    parser.add_argument("--sets", help="regex on parameter-set names (transformer10m, "
                        "transformer, resnet50)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads (torch.set_num_threads); 1 keeps a busy machine's "
                        "spinning OpenMP threads out of the ratios")
    parser.add_argument("--out", default=str(ROOT / "benchmark_out"))
    parser.add_argument("--tag", help="file name stem (default: the device type)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    hidden = args.hidden or (128 if args.quick else 2048 if gpu else 512)
    blocks = args.blocks or (2 if args.quick else 24 if gpu else 12)
    if args.heavy_warmup is None:
        args.heavy_warmup = 3 if gpu else 0
    if args.heavy_steps is None:
        args.heavy_steps = 10 if gpu else 2
    if args.quick:
        args.warmup, args.steps, args.heavy_warmup, args.heavy_steps = 1, 3, 1, 1
    resnet_width = 16 if args.quick else 64
    small = dict(h=64, blocks=2, vocab=256) if args.quick else dict(h=256, blocks=13, vocab=1024)
    set_shapes = {
        "transformer10m": (transformer_shapes(small["h"], small["blocks"], small["vocab"]),
                           f"transformer h={small['h']}, {small['blocks']} blocks, "
                           f"vocabulary {small['vocab']}"),
        "transformer": (transformer_shapes(hidden, blocks),
                        f"transformer h={hidden}, {blocks} blocks"),
        "resnet50": (resnet50_shapes(resnet_width),
                     "ResNet-50 shapes" + (f", width {resnet_width}" if args.quick else "")),
    }
    load_before = os.getloadavg()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    say(f"device {device}; load average {load_before[0]:.2f}; measuring copy bandwidth ...")
    copy_mb = 64 if args.quick else 256
    bandwidth = copy_bandwidth(device, copy_mb)
    peak = matmul_peak(device, 512 if args.quick else 2048)
    say(f"copy bandwidth {bandwidth:.1f} GB/s, fp32 matmul {peak:.0f} GFLOP/s (both re-measured "
        "every round, best kept)")

    todo = [c for c in cases(device) if (not args.only or re.search(args.only, c.name))
            and (not args.sets or re.fullmatch(args.sets, c.set))]
    report_sets, results_by_key = {}, {}
    for set_name, (shapes, description) in set_shapes.items():
        if not any(c.set == set_name for c in todo):
            continue
        numel = [math.prod(s) for s in shapes]
        report_sets[set_name] = dict(description=description, params=sum(numel),
                                     tensors=len(shapes),
                                     params_2d=sum(n for n, s in zip(numel, shapes)
                                                   if len(s) == 2))
    rows = [dict(set=c.set, name=c.name, native=c.native, subset=c.subset) for c in todo]
    # Optimizers of one set and weight class are stepped round-robin (one timed step each per
    # round), so a change in machine load hits all of them alike and the ratios stay fair.
    phases: dict[tuple, list[int]] = {}
    report = None
    for i, c in enumerate(todo):
        phases.setdefault((c.set, c.heavy), []).append(i)
    for (set_name, heavy), members in phases.items():
        params_all = make_params(set_shapes[set_name][0], device)
        warmup, steps = ((args.heavy_warmup, args.heavy_steps) if heavy
                         else (args.warmup, args.steps))
        live = []
        for i in members:
            case, row = todo[i], rows[i]
            label = f"{set_name}: {case.name}"
            if case.cuda_only and not gpu:
                row["skipped"] = "CUDA only"
                say(f"{label}: skipped (CUDA only)")
                continue
            params = [p for p in params_all if p.ndim == 2] if case.subset == "2d" else params_all
            try:
                opt = case.factory(params)
                sync(device)
                t0 = time.perf_counter()
                for _ in range(warmup):
                    opt.step()
                    sync(device)
                    if "first_step_s" not in row:
                        row["first_step_s"] = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported
                row["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                say(f"{label}: skipped ({row['skipped']})")
                if os.environ.get("BENCH_DEBUG"):
                    traceback.print_exc()
                continue
            say(f"{label}: ready" + (f" (first step {row['first_step_s']:.2f} s)"
                                     if "first_step_s" in row else ""))
            live.append((case, row, opt, params))
        loads = []
        for r in range(steps):
            loads.append(os.getloadavg()[0])
            # the best copy seen during the run is the machine's bandwidth
            bandwidth = max(bandwidth, copy_bandwidth(device, copy_mb, repeats=2))
            if heavy:
                peak = max(peak, matmul_peak(device, 512 if args.quick else 2048, repeats=1))
            for case, row, opt, _ in live:
                row.setdefault("ms_all", []).append(timed_step(opt, device))
            say(f"{set_name}{' (Muon)' if heavy else ''}: round {r + 1}/{steps} "
                + ", ".join(f"{c.name} {rw['ms_all'][-1]:.0f}" for c, rw, _, _ in live))
        for case, row, opt, params in live:
            n = sum(p.numel() for p in params)
            ms = statistics.median(row["ms_all"])
            row.setdefault("first_step_s", row["ms_all"][0] / 1e3)
            row.update(ms_per_step=ms, ms_min=min(row["ms_all"]), params=n,
                       load_1min=statistics.mean(loads),
                       state_bytes_per_param=state_bytes(opt) / n,
                       kind=case.kind,
                       gflops=ns_flops(params) / (ms / 1e3) / 1e9 if case.muon else None)
            results_by_key[(case.set, case.name)] = row
        del live, params_all
        opt = None
        # what is measured so far: a run stopped at a deadline still leaves its targets
        report = write_report(args, device, rows, results_by_key, report_sets, bandwidth, peak,
                              load_before)

    if report is None:
        say("nothing to measure")
        return 1
    out, stem = Path(args.out), args.tag or device.type
    try:
        plot(report, out / f"{stem}.png")
    except ImportError as exc:
        say(f"no plot ({exc})")
    print(markdown(report))
    say(f"wrote {out / stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
