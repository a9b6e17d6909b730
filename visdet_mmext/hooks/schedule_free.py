"""The Runner side of schedule-free training: the averaged weights wherever weights are read.

A schedule-free optimizer takes gradients at ``y`` and averages the iterates into ``x``, the
weights to evaluate and keep; ``optimizer.eval()`` puts ``x`` in the model, ``optimizer.train()``
puts ``y`` back. This hook switches to ``x`` before validation, before testing, before every
checkpoint is written (the checkpoint's model and optimizer state are taken again in eval mode,
so it holds ``x``, and a resumed run continues exactly) and when training ends; the next training
iteration switches back to ``y``. BatchNorm statistics gathered at ``y`` do not fit ``x``: after
a switch they are recomputed at ``x`` from ``bn_batches`` training batches (the schedulefree
package's README uses 50), once per set of weights. An lr or momentum scheduler other than a
warm-up gets a warning: the averaging takes the place of a decaying schedule.
"""
from __future__ import annotations

import logging

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.optim.scheduler import ConstantParamScheduler, LinearParamScheduler
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import weights_to_cpu
from mmengine.utils import apply_to
from torch.utils.data import DataLoader

from ..errors import RunnerConfigError
from .batch_norm import recompute_batch_norm


def schedule_free_optimizers(optim_wrapper) -> list:
    """The optimizers of ``optim_wrapper`` that switch weights with ``train()``/``eval()``."""
    if not isinstance(optim_wrapper, OptimWrapper):
        return []  # not built yet
    wrappers = (optim_wrapper.optim_wrappers.values()
                if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper])
    return [w.optimizer for w in wrappers if "train_mode" in w.optimizer.param_groups[0]
            and callable(getattr(w.optimizer, "eval", None))]


def _is_warmup(scheduler) -> bool:
    if getattr(scheduler, "param_name", None) != "lr":
        return False
    if isinstance(scheduler, LinearParamScheduler):
        return scheduler.start_factor < scheduler.end_factor
    return isinstance(scheduler, ConstantParamScheduler) and scheduler.factor < 1


def _schedulers(param_schedulers) -> list:
    if isinstance(param_schedulers, dict):
        return [s for group in param_schedulers.values() for s in group]
    return list(param_schedulers or [])


@HOOKS.register_module()
class ScheduleFreeHook(Hook):
    """Args:
        bn_batches: training batches that recompute BatchNorm statistics at the averaged
            weights (0: keep the statistics gathered during training).
    """

    priority = "ABOVE_NORMAL"  # before EMAHook and CheckpointHook read the weights

    def __init__(self, bn_batches: int = 50):
        if isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 0:
            raise RunnerConfigError(f"ScheduleFreeHook: bn_batches={bn_batches!r} must be an integer >= 0")
        self.bn_batches = bn_batches
        self._norms_fit_average = False

    def before_train(self, runner) -> None:
        optimizers = schedule_free_optimizers(runner.optim_wrapper)
        if not optimizers:
            optimizer = getattr(runner.optim_wrapper, "optimizer", None)
            built = type(optimizer).__name__ if optimizer is not None else "of each optim wrapper"
            print_log(f"ScheduleFreeHook does nothing here: the optimizer ({built}) is not "
                      "schedule-free. Remove the hook, or train with a schedule-free optimizer "
                      "(AdamWScheduleFree, SGDScheduleFree, RAdamScheduleFree).",
                      logger="current", level=logging.WARNING)
        others = [s for s in _schedulers(runner.param_schedulers) if not _is_warmup(s)]
        if optimizers and others:
            names = ", ".join(type(s).__name__ for s in others)
            print_log(f"{type(optimizers[0]).__name__} is schedule-free: its average of the iterates "
                      f"takes the place of a decaying schedule, and {names} changes "
                      "lr/momentum after warm-up. Keep only a warm-up (LinearLR) or use the "
                      "optimizer's warmup_steps; see docs/schedule_free.md.",
                      logger="current", level=logging.WARNING)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        for optimizer in schedule_free_optimizers(runner.optim_wrapper):
            optimizer.train()
        self._norms_fit_average = False

    def before_val_epoch(self, runner) -> None:
        self._use_average(runner)

    def before_test_epoch(self, runner) -> None:
        self._use_average(runner)

    def after_train(self, runner) -> None:
        self._use_average(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self._use_average(runner):
            return
        # Runner.save_checkpoint took these before this hook ran; take them again at x.
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        checkpoint["state_dict"] = weights_to_cpu(model.state_dict())
        if "optimizer" in checkpoint:
            checkpoint["optimizer"] = apply_to(runner.optim_wrapper.state_dict(),
                                               lambda x: hasattr(x, "cpu"), lambda x: x.cpu())

    def _use_average(self, runner) -> bool:
        optimizers = schedule_free_optimizers(getattr(runner, "optim_wrapper", None))
        for optimizer in optimizers:
            optimizer.eval()
        if optimizers and not self._norms_fit_average:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            recompute_batch_norm(model, self._batches(runner), self.bn_batches)
            self._norms_fit_average = True
        return bool(optimizers)

    def _batches(self, runner) -> DataLoader:
        """The training set, shuffled by the run's seed: the same batches at every recompute,
        drawn without touching the training loader's iterator or the global RNG."""
        loader = runner.train_dataloader
        batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", 1)
        return DataLoader(loader.dataset, batch_size=batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(runner.seed or 0),
                          collate_fn=loader.collate_fn, num_workers=loader.num_workers)
