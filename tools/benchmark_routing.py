#!/usr/bin/env python
"""What reading the loss graph costs, next to the training step it precedes.

For each small Hugging Face model of the routing tests (tests/helpers/hf_models.py) it times,
round-robin over ``--repeats`` rounds after one warm-up: the forward with the model's own loss,
the graph read (``graph_reading.read_graph``: the walk traced routing does once, at the first
backward), and the backward. Reported per model: the medians in ms and the read as a share of
forward + backward.

    python tools/benchmark_routing.py                 # ~1 min on 2 CPU cores; docs/benchmarks/routing.json
    python tools/benchmark_routing.py --models detr swin --repeats 3
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))


def measure(name: str, repeats: int) -> dict:
    import hf_models
    from visdet_mmext.optim.graph_reading import read_graph

    model = hf_models.build(name)
    matrices = {id(p): p for p in model.parameters() if p.requires_grad and p.ndim >= 2}
    names = {id(p): n for n, p in model.named_parameters()}
    times: dict[str, list[float]] = {"forward": [], "read": [], "backward": []}
    for round_ in range(repeats + 1):  # round 0 warms up
        batch = hf_models.HF_MODELS[name][1](round_)
        started = time.perf_counter()
        loss = hf_models.loss(model, batch)
        forward = time.perf_counter()
        read_graph([loss], matrices, names, [batch["pixel_values"]])
        read = time.perf_counter()
        loss.backward()
        done = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if round_:
            for key, seconds in (("forward", forward - started), ("read", read - forward),
                                 ("backward", done - read)):
                times[key].append(seconds * 1000)
    medians = {f"{key}_ms": statistics.median(values) for key, values in times.items()}
    medians["read_share"] = medians["read_ms"] / (medians["forward_ms"] + medians["backward_ms"])
    medians["matrices"] = len(matrices)
    return medians


def main(argv=None) -> int:
    import hf_models
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(hf_models.HF_MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "routing.json"))
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = {}
    print(f"{'model':<18} {'matrices':>8} {'forward ms':>11} {'backward ms':>12} {'read ms':>8} "
          f"{'read share':>10}")
    for name in args.models:
        row = results[name] = measure(name, args.repeats)
        print(f"{name:<18} {row['matrices']:>8} {row['forward_ms']:>11.1f} {row['backward_ms']:>12.1f} "
              f"{row['read_ms']:>8.1f} {row['read_share']:>10.1%}", flush=True)
    record = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  torch=torch.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count(),
                  load_at_start=load, load_at_end=os.getloadavg()[0], repeats=args.repeats,
                  models=results)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"load average {load:.1f} -> {record['load_at_end']:.1f}; written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
