"""What the checkpoint integrity check costs next to the load it guards.

    python tools/benchmark_checkpoint_check.py [--params 25.6e6] [--repeats 5] [--json out.json]

Writes an mmengine-style checkpoint of a model with ``--params`` parameters and its AdamW state
(weights + two moments: ~12 bytes per parameter, 307 MB for ResNet-50's 25.6 M), then times, in
one process and interleaved: the CRC-32 check of every record (``visdet_mmext.checkpoint.
integrity``), the weights-only load, and the whole resume load (load + the model's and the
optimizer's ``load_state_dict``). Reports medians and the check's share of the load. The page
cache is warm after the first read (the worst case for the ratio: the check then competes with a
memory copy, not with the disk).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visdet_mmext.checkpoint import integrity  # noqa: E402
from visdet_mmext.checkpoint.safe_load import safe_torch_load  # noqa: E402


def make_model(params: float) -> torch.nn.Module:
    """Linear layers of 1024x1024 (1 M parameters each) up to ``params``."""
    layers = max(1, round(params / (1024 * 1024)))
    return torch.nn.Sequential(*(torch.nn.Linear(1024, 1024, bias=False) for _ in range(layers)))


def write_checkpoint(model, path: str) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1024)).sum().backward()
    optimizer.step()
    torch.save({"meta": {"iter": 1}, "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict()}, path)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=25.6e6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    model = make_model(args.params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "iter_1.pth")
        write_checkpoint(make_model(args.params), path)
        size = os.path.getsize(path)

        def check():
            integrity._verified.clear()  # measure the check itself, not its cache
            assert integrity.problem(path) is None

        def load():
            integrity._verified.add(integrity._identity(path))  # the load alone
            return safe_torch_load(path, map_location="cpu")

        def resume():
            checkpoint = load()
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer"])

        load()  # warm the page cache
        times = {"check": [], "load": [], "resume": []}
        for _ in range(args.repeats):
            for name, fn in (("check", check), ("load", load), ("resume", resume)):
                times[name].append(timed(fn))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = dict(size_mb=size / 1e6, crc=integrity.crc32.__module__, threads=torch.get_num_threads(),
                  load_avg=os.getloadavg()[0], **{f"{k}_s": v for k, v in medians.items()},
                  check_vs_load=medians["check"] / medians["load"],
                  check_vs_resume=medians["check"] / medians["resume"],
                  check_gb_per_s=size / medians["check"] / 1e9)
    print(f"checkpoint {result['size_mb']:.0f} MB; CRC from {result['crc']}; load average "
          f"{result['load_avg']:.1f}")
    for name in times:
        print(f"  {name:7s} {medians[name] * 1e3:8.1f} ms (median of {args.repeats})")
    print(f"  check / load   = {result['check_vs_load']:.3f}")
    print(f"  check / resume = {result['check_vs_resume']:.3f}  ({result['check_gb_per_s']:.1f} GB/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
