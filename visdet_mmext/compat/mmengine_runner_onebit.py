"""mmengine's ``Runner.save_checkpoint`` gathers every rank's 1-bit optimizer state first.

The 1-bit optimizers keep per-rank state (their compression error buffers). ``save_checkpoint``
runs on every rank but writes only rank 0's optimizer state (``@master_only`` inside). Every rank
now hands its state to rank 0 first (``OnebitOptimizer.gather_rank_state``), so a checkpoint
resumes every rank exactly. Nothing changes for other optimizers.
"""
from __future__ import annotations

import inspect

from . import patch, replace_attribute


def _onebit_optimizers(optim_wrapper) -> list:
    from mmengine.optim import OptimWrapper, OptimWrapperDict

    from ..algorithms.onebit import OnebitOptimizer
    wrappers = (optim_wrapper.values() if isinstance(optim_wrapper, OptimWrapperDict)
                else [optim_wrapper] if isinstance(optim_wrapper, OptimWrapper) else [])
    return [w.optimizer for w in wrappers if isinstance(w.optimizer, OnebitOptimizer)]


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""a checkpoint of a multi-process 1-bit optimizer run holds only rank 0's
       compression state, so the other ranks cannot resume exactly""")
def mmengine_runner_onebit_state(module) -> None:
    signature = inspect.signature(module.Runner.save_checkpoint)

    def make(save_checkpoint):
        def gathering_save_checkpoint(self, *args, **kwargs):
            if signature.bind(self, *args, **kwargs).arguments.get("save_optimizer", True):
                for optimizer in _onebit_optimizers(getattr(self, "optim_wrapper", None)):
                    optimizer.gather_rank_state()
            return save_checkpoint(self, *args, **kwargs)
        return gathering_save_checkpoint

    replace_attribute(module.Runner, "save_checkpoint", make)
