"""Announce DeepSpeed's JIT builds in mmengine's log, with an estimate, then their duration.

The first ``DeepSpeedCPUAdam``/``DeepSpeedCPULion``/ZeRO-Offload run on a machine compiles the
op's C++ sources (``OpBuilder.jit_load`` -> ``torch.utils.cpp_extension.load``) into
``TORCH_EXTENSIONS_DIR``: 25-60 s per op on 2 CPU cores here (two sources compiled in parallel),
minutes on a busy machine, during which the run prints nothing. Later runs load the cached build
in about a second and are not announced.
"""
from __future__ import annotations

import math
import os
import time

from . import patch, replace_attribute
from .deepspeed_build_lock import extensions_root

#: Seconds to compile one C++ source of a DeepSpeed CPU op on one core (measured: 39-53 s).
SECONDS_PER_SOURCE = 50


def build_estimate(sources: int) -> float:
    """Seconds a JIT build of ``sources`` C++ files takes (ninja compiles one per core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return SECONDS_PER_SOURCE * math.ceil(sources / max(1, cores or 1))


def is_built(op_name: str) -> bool:
    return (extensions_root() / op_name / f"{op_name}.so").is_file()


@patch(package="deepspeed", versions=">=0.16,<0.20", module="deepspeed.ops.op_builder.builder",
       fixes="""a DeepSpeed op's first JIT build keeps a run silent for one to several minutes,
       which looks like a hang""")
def deepspeed_build_announcement(module) -> None:
    """Log before and after every ``OpBuilder.jit_load`` that has to compile."""
    def make(jit_load):
        def jit_load_announced(self, *args, **kwargs):
            if is_built(self.name):
                return jit_load(self, *args, **kwargs)
            from mmengine.logging import print_log
            print_log(f"visdet_mmext: building DeepSpeed's {self.name} op (a one-time JIT build "
                      f"into {extensions_root()}): about {build_estimate(len(self.sources())):.0f}"
                      " s, longer on a busy machine", logger="current")
            started = time.perf_counter()
            op = jit_load(self, *args, **kwargs)
            print_log(f"visdet_mmext: built DeepSpeed's {self.name} op in "
                      f"{time.perf_counter() - started:.0f} s (cached for later runs)",
                      logger="current")
            return op
        return jit_load_announced

    replace_attribute(module.OpBuilder, "jit_load", make)
