"""DeepSpeed's JIT builds: into the package's extensions folder, announced with an estimate,
compiled without debug information.

The first ``DeepSpeedCPUAdam``/``DeepSpeedCPULion``/ZeRO-Offload run on a machine compiles the
op's C++ sources (``OpBuilder.jit_load`` -> ``torch.utils.cpp_extension.load``), one to several
minutes during which the run would print nothing, into torch's own folder unless
``TORCH_EXTENSIONS_DIR`` names one. Here the folder defaults to the package's
(``visdet_mmext.deepspeed.ops``) as soon as DeepSpeed's builder module loads, before any build,
and every build that has to compile is logged with its estimate, progress and duration. Later
runs load the cached build in about a second and are not announced.
"""
from __future__ import annotations

import logging

from ..deepspeed import ops
from . import patch, replace_attribute

logger = logging.getLogger("visdet_mmext")


def _say(message: str) -> None:
    from mmengine.logging import print_log
    print_log(f"visdet_mmext: {message}", logger="current")


@patch(package="deepspeed", versions=">=0.16,<0.20", module="deepspeed.ops.op_builder.builder",
       fixes="""a DeepSpeed op's first JIT build keeps a run silent for one to several minutes,
       which looks like a hang, and lands in torch's default folder, which the docs do not name""")
def deepspeed_build_announcement(module) -> None:
    """Default ``TORCH_EXTENSIONS_DIR``; log around every ``OpBuilder.jit_load`` that compiles."""
    if ops.use_default_root():
        logger.debug("visdet_mmext: TORCH_EXTENSIONS_DIR is unset; DeepSpeed's ops build into %s",
                     ops.extensions_root())

    def make(jit_load):
        def jit_load_announced(self, *args, **kwargs):
            if ops.is_built(self.name, ops.sources(self)):
                return jit_load(self, *args, **kwargs)
            with ops.timed_build(self.name, len(self.sources()), _say):
                return jit_load(self, *args, **kwargs)
        return jit_load_announced

    replace_attribute(module.OpBuilder, "jit_load", make)


@patch(package="deepspeed", versions=">=0.16,<0.20", module="deepspeed.ops.op_builder.builder",
       fixes="""DeepSpeed compiles its ops with -g: a first use waits a third longer (45 s
       instead of 30 s for cpu_lion on 2 cores) for a 16 MB library instead of 0.3 MB, whose
       debug information nothing loads""")
def deepspeed_build_without_debug_info(module) -> None:
    """Leave ``ops.DROPPED_FLAGS`` out of every op's C++ flags in ``OpBuilder.jit_load``."""
    def make(jit_load):
        def jit_load_without_debug_info(self, *args, **kwargs):
            cxx_args = self.cxx_args
            self.cxx_args = lambda: [a for a in cxx_args() if a not in ops.DROPPED_FLAGS]
            try:
                return jit_load(self, *args, **kwargs)
            finally:
                del self.cxx_args
        return jit_load_without_debug_info

    replace_attribute(module.OpBuilder, "jit_load", make)
