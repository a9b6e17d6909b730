"""Choose torch's CPU thread count so a run does not fight other processes for the cores.

torch starts one OpenMP thread per core. When other processes keep some cores busy, every
parallel op waits at its barrier for the thread that got no core: on a 2-core machine with one
core taken, the demo trained 6x slower with 2 threads than with 1 (docs/benchmarks.md).
``threads='auto'`` counts the cores this process may use (``sched_getaffinity``), subtracts what
other processes are using right now (``/proc/stat`` minus this process, over 0.2 s), divides by
the processes of this job on the node, and sets that many threads (at least 1).

An explicit choice wins: ``OMP_NUM_THREADS`` in the environment (torchrun sets it to 1 per
process) or ``CpuThreadsHook(threads=N)``. The thread count can change the last bits of
reductions, so set one of them for bit-reproducible runs on a shared machine.
"""
from __future__ import annotations

import math
import os
import time

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..errors import RunnerConfigError

#: How long the other processes' CPU use is sampled.
SAMPLE_SECONDS = 0.2


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _busy_jiffies() -> tuple[int, int]:
    """(all cores' busy time, this process's CPU time), in clock ticks."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime


def other_processes_load(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores' worth of CPU that other processes use now; None where /proc is missing."""
    if not os.path.exists("/proc/stat"):
        return None
    busy0, own0 = _busy_jiffies()
    time.sleep(seconds)
    busy1, own1 = _busy_jiffies()
    ticks = seconds * os.sysconf("SC_CLK_TCK")
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / ticks)


#: A core counts as free when at least this much of it is idle: a thread that has to share a
#: core slows every parallel op far more (~6x, docs/benchmarks.md) than a missing thread does.
FREE_CORE = 0.75


def threads_for(cores: int, others: float, local_processes: int = 1) -> int:
    """Each process's share of the cores other processes leave free (at least 1)."""
    free = max(0.0, cores - others)
    return max(1, min(cores // local_processes,
                      math.floor(free / local_processes + 1 - FREE_CORE)))


def auto_threads(local_processes: int = 1) -> tuple[int, str]:
    """Threads for one of ``local_processes`` processes of a job now, and why."""
    cores = usable_cores()
    others = other_processes_load()
    seen = "" if others is None else f", other processes busy on {others:.1f}"
    return (threads_for(cores, others or 0.0, local_processes),
            f"{cores} usable cores{seen}, {local_processes} process(es) of this job")


@HOOKS.register_module()
class CpuThreadsHook(Hook):
    """Set ``torch.set_num_threads`` before training: ``threads`` = an int, or ``'auto'``."""

    priority = "VERY_HIGH"

    def __init__(self, threads: int | str = "auto"):
        if threads != "auto" and not (isinstance(threads, int) and not isinstance(threads, bool)
                                      and threads >= 1):
            raise RunnerConfigError(f"CpuThreadsHook(threads={threads!r}): use a positive int or 'auto'")
        self.threads = threads
        self._before: int | None = None

    def before_run(self, runner) -> None:
        self._before = torch.get_num_threads()
        if self.threads != "auto":
            torch.set_num_threads(self.threads)
            print_log(f"CPU threads: {self.threads} (CpuThreadsHook)", logger="current")
            return
        if "OMP_NUM_THREADS" in os.environ:
            print_log(f"CPU threads: {torch.get_num_threads()} (OMP_NUM_THREADS="
                      f"{os.environ['OMP_NUM_THREADS']})", logger="current")
            return
        threads, why = auto_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        torch.set_num_threads(threads)
        print_log(f"CPU threads: {threads} ({why}; OMP_NUM_THREADS=N or "
                  "CpuThreadsHook(threads=N) fixes it)", logger="current")

    def after_run(self, runner) -> None:
        # a process that trains several runs (tests, tools/compare_optimizers.py) gets its own
        # setting back
        if self._before is not None:
            torch.set_num_threads(self._before)
