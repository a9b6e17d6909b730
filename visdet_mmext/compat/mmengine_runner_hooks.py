"""The Runner hooks a catalog row names join the Runner when its optimizer is built.

A schedule-free optimizer needs ``ScheduleFreeHook`` (averaged weights for validation, testing
and checkpoints). mmengine's Runner registers its hooks in ``__init__`` and builds the optim
wrapper later (``train()``, ``resume()``), so right after ``Runner.build_optim_wrapper`` each hook
named by the rows of the built optimizers is registered, unless the config has one of that type
already (``custom_hooks=[dict(type='ScheduleFreeHook', bn_batches=100)]`` keeps its settings).
The hooks are registered in mmengine's HOOKS here too, when the Runner is first imported (their
module imports mmengine's runner, which ``import visdet_mmext`` must not).
"""
from __future__ import annotations

import logging

from . import patch, replace_attribute


def _optimizers(optim_wrapper) -> list:
    from mmengine.optim import OptimWrapper, OptimWrapperDict
    if isinstance(optim_wrapper, OptimWrapperDict):
        return [w.optimizer for w in optim_wrapper.optim_wrappers.values()]
    return [optim_wrapper.optimizer] if isinstance(optim_wrapper, OptimWrapper) else []


def add_catalog_hooks(runner, optim_wrapper) -> list[str]:
    """Register the hooks the catalog rows of ``optim_wrapper``'s optimizers name; returns them."""
    from mmengine.logging import print_log

    from ..catalog import CATALOG
    added = []
    for optimizer in _optimizers(optim_wrapper):
        spec = CATALOG.spec_of(optimizer)
        for name in spec.hooks if spec is not None else ():
            if any(type(hook).__name__ == name for hook in runner.hooks):
                continue
            runner.register_hook(dict(type=name))
            added.append(name)
            print_log(f"{spec.name} needs {name}: added to the Runner's hooks", logger="current",
                      level=logging.INFO)
    return added


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""a schedule-free optimizer would validate, test and save its training iterate
       instead of its averaged weights, since the Runner's hooks are fixed before the optimizer
       is built""")
def mmengine_runner_catalog_hooks(module) -> None:
    from .. import hooks  # noqa: F401  (registers them in mmengine's HOOKS)

    def make_replacement(original):
        def build_optim_wrapper(self, optim_wrapper):
            built = original(self, optim_wrapper)
            add_catalog_hooks(self, built)
            return built
        return build_optim_wrapper

    replace_attribute(module.Runner, "build_optim_wrapper", make_replacement)
