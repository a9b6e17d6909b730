"""What the checkpoint integrity check costs next to the load it guards.

    python tools/benchmark_checkpoint_check.py [--params 25.6e6] [--repeats 5] [--cold]
                                               [--json out.json]

Writes an mmengine-style checkpoint of a model with ``--params`` parameters and its AdamW state
(weights + two moments: ~12 bytes per parameter, 302 MB for ResNet-50's 25.6 M), then times, in
one process and interleaved: the CRC-32 check alone (``visdet_mmext.checkpoint.integrity``), the
weights-only load without the check, the checked load users get (``safe_torch_load``: the check
beside the load), and the whole resume (checked load + the model's and the optimizer's
``load_state_dict``). Reports medians and what the check adds. By default the page cache is warm
(the worst case for the ratio: the check then competes with memory copies, not with the disk);
``--cold`` evicts the file from the page cache before each step (``posix_fadvise``), as after a
restart.
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
from visdet_mmext.checkpoint.safe_load import allowlist, safe_torch_load  # noqa: E402


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


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (no root needed for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=25.6e6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="evict the file before each step")
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
            with allowlist():
                return torch.load(path, map_location="cpu", weights_only=True)

        def checked_load():
            integrity._verified.clear()
            return safe_torch_load(path, map_location="cpu")

        def resume():
            checkpoint = checked_load()
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer"])

        load()  # warm the page cache
        steps = (("check", check), ("load", load), ("checked_load", checked_load),
                 ("resume", resume))
        times = {name: [] for name, _ in steps}
        for _ in range(args.repeats):
            for name, fn in steps:
                if args.cold:
                    evict(path)
                times[name].append(timed(fn))
    medians = {name: statistics.median(values) for name, values in times.items()}
    added = medians["checked_load"] - medians["load"]
    result = dict(size_mb=size / 1e6, crc=integrity.crc32.__module__, cold=args.cold,
                  threads=torch.get_num_threads(),
                  load_avg=os.getloadavg()[0], **{f"{k}_s": v for k, v in medians.items()},
                  added_vs_load=added / medians["load"], added_vs_resume=added / medians["resume"],
                  check_gb_per_s=size / medians["check"] / 1e9)
    print(f"checkpoint {result['size_mb']:.0f} MB, {'cold' if args.cold else 'warm'} page cache; "
          f"CRC from {result['crc']}; load average {result['load_avg']:.1f}")
    for name in times:
        print(f"  {name:12s} {medians[name] * 1e3:8.1f} ms (median of {args.repeats})")
    print(f"  the check alone: {result['check_gb_per_s']:.1f} GB/s")
    print(f"  what it adds to the load:   {result['added_vs_load']:+.1%}")
    print(f"  what it adds to the resume: {result['added_vs_resume']:+.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
