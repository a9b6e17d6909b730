"""An OptimWrapper for optimizers whose ``step`` needs a closure (LBFGS).

mmengine's ``OptimWrapper.step`` never passes one. This wrapper records the inputs of the
model's loss forward inside ``optim_context`` and builds a closure that re-runs forward and
backward on the same batch. The first closure call reuses the loss and gradients the training
step has already computed, so ``max_iter=1`` costs no extra forward pass.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class ClosureOptimWrapper(OptimWrapper):

    def __init__(self, optimizer, accumulative_counts: int = 1, clip_grad=None):
        if accumulative_counts != 1:
            raise ValueError(f"{type(optimizer).__name__} re-evaluates the loss inside its step, "
                             "which cannot be combined with gradient accumulation: set "
                             "accumulative_counts=1.")
        super().__init__(optimizer, accumulative_counts=accumulative_counts, clip_grad=clip_grad)
        self._model = None
        self._forward_call = None

    @contextmanager
    def optim_context(self, model):
        calls = []
        handle = model.register_forward_pre_hook(
            lambda module, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
        try:
            with super().optim_context(model):
                yield
        finally:
            handle.remove()
        self._model = model
        self._forward_call = calls[0] if calls else None

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None) -> None:
        self.backward(loss)
        if self.should_update():
            self.step(closure=self._closure(loss), **(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def _closure(self, loss):
        evaluations = 0
        model, forward_call = self._model, self._forward_call
        max_iter = self.optimizer.defaults.get("max_iter", 1)
        if forward_call is None and max_iter > 1:
            raise RuntimeError(
                f"{type(self.optimizer).__name__}(max_iter={max_iter}) must re-evaluate the loss, "
                "but the loss forward did not run inside optim_wrapper.optim_context(model). "
                "Call the model inside that context, or set max_iter=1.")

        def closure():
            nonlocal evaluations
            evaluations += 1
            if evaluations == 1:  # gradients of this loss are already in .grad
                return loss.detach()
            self.optimizer.zero_grad()
            with torch.enable_grad():
                args, kwargs = forward_call
                parse_losses = getattr(model, "module", model).parse_losses  # unwrap DDP
                new_loss, _ = parse_losses(model(*args, **kwargs))
                new_loss.backward()
            return new_loss.detach()

        return closure
