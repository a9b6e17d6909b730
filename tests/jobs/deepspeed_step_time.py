"""Step time of the demo model: ZeRO(-Offload) under DeepSpeed vs. the same run without DeepSpeed.

    python tests/jobs/deepspeed_step_time.py [--epochs 1] [--repeats 3] [--skip 5] [--json out.json]

Each setting trains the packaged ``deepspeed/zero2_offload_adamw.py`` (DemoConvNet on DemoShapes,
batch 32, AdamW lr 1e-3) in its own process through the FlexibleRunner and reports the median
wall time and the median CPU time (all threads of the process) of a train iteration (data,
forward, backward, optimizer step; the first ``--skip`` iterations dropped). Settings run
interleaved ``--repeats`` times and the fastest repeat counts, with ``--threads`` OMP/MKL
threads (default 1), which damps other load on a shared machine. A measurement, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, "visdet_mmext", "configs", "deepspeed", "zero2_offload_adamw.py")
SETTINGS = {
    "no DeepSpeed (AdamW, SingleDeviceStrategy)": ["strategy=None", "optim_wrapper.type=OptimWrapper"],
    "ZeRO-2 + offload_optimizer=cpu (DeepSpeedCPUAdam)": [],
    "ZeRO-2, no offload (torch AdamW)": ["strategy.zero_optimization.offload_optimizer=None"],
    "ZeRO-3 + offload_optimizer + offload_param (DeepSpeedCPUAdam)": [
        "strategy.zero_optimization.stage=3",
        "strategy.zero_optimization.offload_param.device=cpu"],
}


def measure(options: list[str], epochs: int, work: str, threads: int) -> dict:
    result = os.path.join(work, "result.json")
    command = [sys.executable, os.path.join(HERE, "train.py"), CONFIG, "--work-dir", work,
               "--result", result, "--cfg-options", f"train_cfg.max_epochs={epochs}",
               "val_dataloader=None", "default_hooks.checkpoint.interval=1000", *options]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    with open(result) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP/MKL threads per run (0: the machine's default). On a shared "
                             "machine more threads than idle cores make every setting slow and "
                             "noisy.")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = {}
    for repeat in range(args.repeats):
        for name, options in SETTINGS.items():
            with tempfile.TemporaryDirectory() as work:
                result = measure(options, args.epochs, work, args.threads)
            wall = 1000 * statistics.median(result["iter_times"][args.skip:])
            cpu = 1000 * statistics.median(result["iter_cpu_times"][args.skip:])
            row = rows.setdefault(name, {"wall_ms": [], "cpu_ms": [],
                                         "optimizer": result["basic_optimizer"],
                                         "iterations": len(result["iter_times"]) - args.skip})
            row["wall_ms"].append(wall)
            row["cpu_ms"].append(cpu)
    base_wall = min(next(iter(rows.values()))["wall_ms"])
    base_cpu = min(next(iter(rows.values()))["cpu_ms"])
    print(f"{'setting':64s} {'wall ms':>8s} {'vs plain':>9s} {'CPU ms':>8s} {'vs plain':>9s}  "
          "optimizer")
    for name, row in rows.items():
        wall, cpu = min(row["wall_ms"]), min(row["cpu_ms"])
        print(f"{name:64s} {wall:8.1f} {wall / base_wall:8.2f}x {cpu:8.1f} {cpu / base_cpu:8.2f}x  "
              f"{row['optimizer']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
