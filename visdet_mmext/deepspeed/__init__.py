"""DeepSpeed support: a working ``DeepSpeedStrategy`` for mmengine 0.10.x and ZeRO-Offload mapping.

``install()`` runs at ``import visdet_mmext`` and imports neither DeepSpeed nor mmengine's
strategy module: it arranges for ``patches.fix_mmengine_deepspeed`` to run right after
mmengine's ``mmengine._strategy.deepspeed`` executes (at once if it already has), and
``patches.fix_flexible_runner`` after ``mmengine.runner._flexible_runner``, and
``build_lock.guard_jit_builds`` after DeepSpeed's op builder module (a killed JIT build must
not make later ones hang). See
``docs/deepspeed.md`` for the user guide.
"""
from __future__ import annotations

import importlib.util

from ..post_import import pending, when_imported

STRATEGY_MODULE = "mmengine._strategy.deepspeed"
FLEXIBLE_RUNNER_MODULE = "mmengine.runner._flexible_runner"
OP_BUILDER_MODULE = "deepspeed.ops.op_builder.builder"


def _fix_strategy(module) -> None:
    from .patches import fix_mmengine_deepspeed
    fix_mmengine_deepspeed(module)


def _fix_runner(module) -> None:
    from .patches import fix_flexible_runner
    fix_flexible_runner(module)


def _guard_builds(module) -> None:
    from .build_lock import guard_jit_builds
    guard_jit_builds(module)


def install() -> None:
    """Install the DeepSpeed fixes without importing deepspeed (called by ``import visdet_mmext``)."""
    when_imported(FLEXIBLE_RUNNER_MODULE, _fix_runner)
    if importlib.util.find_spec("deepspeed") is None:
        return  # mmengine's strategy then explains that DeepSpeed is missing
    when_imported(STRATEGY_MODULE, _fix_strategy)
    when_imported(OP_BUILDER_MODULE, _guard_builds)


__all__ = ["install", "pending"]
