"""An OptimWrapper that refreshes Sophia's Hessian estimate every ``update_period`` steps.

Sophia (Liu et al. 2023) divides its momentum by a diagonal Hessian estimate that must be
refreshed from the model every k steps; mmengine's loop only calls backward and step, so without
this wrapper SophiaH fails (its estimate needs gradients that carry a graph) and SophiaG refuses
to step. On the steps whose update refreshes the estimate:

- SophiaG (Gauss-Newton-Bartlett): the output of the model's logits module is captured during the
  forward; before the loss's backward, labels are drawn from its softmax and the gradient of the
  mean cross-entropy against them is taken through the same graph (one extra backward, no extra
  forward) and handed to ``SophiaG.update_hessian``.
- SophiaH (Hutchinson): the backward keeps its graph (``create_graph=True``) and the optimizer's
  step takes one Hessian-vector product per sample through it (one extra backward).

Random draws are seeded by ``seed`` and the step number, so a resumed run draws what the
uninterrupted one drew.

In a distributed run, SophiaG's sampled gradients are averaged over the ranks (the estimate of the
global batch, the same on every rank, as DDP's gradients are). SophiaH's product goes through the
backward's graph, which DDP's gradient all-reduce does not keep: it is refused there.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from ...errors import OptimizerConfigError

#: torch warns that create_graph=True makes a parameter -> grad -> parameter cycle; zero_grad
#: (set_to_none) right after the step breaks it.
_CREATE_GRAPH_WARNING = r"Using backward\(\) with create_graph=True"


def _average_over_ranks(grads, params) -> list[torch.Tensor | None]:
    """The ranks' mean of each gradient (one all-reduce; None where no rank has one).

    ``torch.autograd.grad`` does not pass through DDP's reducer, so this is the only reduction.
    """
    present = torch.tensor([g is not None for g in grads], dtype=torch.float32,
                           device=params[0].device)
    flat = torch.cat([present] + [(g if g is not None else torch.zeros_like(p)).float().reshape(-1)
                                  for g, p in zip(grads, params)])
    all_reduce(flat, op="mean")
    present = flat[:len(params)].tolist()  # one device-to-host copy, not one per parameter
    values = flat[len(params):].split([p.numel() for p in params])
    return [v.view_as(p).to(p.dtype) if anyone else None
            for anyone, v, p in zip(present, values, params)]


def _draw_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % 2**32  # torch's CPU generator keeps 32 bits of a seed


@OPTIM_WRAPPERS.register_module()
class SophiaOptimWrapper(OptimWrapper):
    """Args (besides OptimWrapper's):
        logits_module: name of the module whose output is the logits (SophiaG), instead of the
            model's ``logits_module`` attribute.
        seed: seeds the random draws of every refresh (with the step number).
    """

    def __init__(self, optimizer, accumulative_counts: int = 1, clip_grad=None,
                 logits_module: str | None = None, seed: int = 0):
        super().__init__(optimizer, accumulative_counts=accumulative_counts, clip_grad=clip_grad)
        self.gauss_newton = hasattr(optimizer, "update_hessian")  # SophiaG; else Hutchinson
        if not self.gauss_newton and get_world_size() > 1:
            raise OptimizerConfigError(
                f"{type(optimizer).__name__}'s Hessian-vector products need the backward's graph, "
                "which DDP's gradient all-reduce does not keep: train it without a distributed "
                "launcher, or use SophiaG (its estimate is averaged over the ranks).")
        self.logits_module = logits_module
        self.seed = seed
        self._logits: list[torch.Tensor] = []

    @property
    def steps_taken(self) -> int:
        return self.optimizer.param_groups[0].get("step", 0)

    def refresh_due(self) -> bool:
        """Whether the next optimizer step refreshes the Hessian estimate."""
        return self.steps_taken % self.optimizer.update_period == 0

    def _find_logits_module(self, model) -> torch.nn.Module:
        model = model.module if is_model_wrapper(model) else model
        if self.logits_module is not None:
            return dict(model.named_modules())[self.logits_module]
        return model.logits_module

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model):
            if not (self.gauss_newton and self.refresh_due() and self.should_sync()):
                yield
                return
            self._logits.clear()
            handle = self._find_logits_module(model).register_forward_hook(
                lambda module, args, output: self._logits.append(output))
            try:
                yield
            finally:
                handle.remove()

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.refresh_due():
            if not self.gauss_newton:
                kwargs.setdefault("create_graph", True)
            elif self.should_sync():  # the last micro-batch before the refreshing step
                self._gauss_newton_bartlett()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CREATE_GRAPH_WARNING)
            super().backward(loss, **kwargs)

    def _gauss_newton_bartlett(self) -> None:
        if not self._logits:
            raise RuntimeError(
                "SophiaG's Hessian refresh needs the logits of this step's forward, and none were "
                "captured: run the model's loss forward inside optim_wrapper.optim_context(model) "
                "(mmengine's train_step does), and check that the logits module is called.")
        logits = torch.cat([out.reshape(-1, out.shape[-1]) for out in self._logits])
        self._logits.clear()
        generator = torch.Generator(device=logits.device)
        generator.manual_seed(_draw_seed(self.seed, self.steps_taken))
        with torch.no_grad():
            probabilities = logits.detach().float().softmax(dim=-1)
            labels = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
        sampled_loss = F.cross_entropy(logits, labels)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        trained = [p for p in params if p.requires_grad]
        grads = torch.autograd.grad(sampled_loss, trained, retain_graph=True, allow_unused=True)
        samples = labels.numel()
        if get_world_size() > 1:
            grads, samples = _average_over_ranks(grads, trained), samples * get_world_size()
        by_param = dict(zip(map(id, trained), grads))
        self.optimizer.update_hessian([by_param.get(id(p)) for p in params], samples)

    def step(self, **kwargs) -> None:
        if self.gauss_newton or not self.refresh_due():
            super().step(**kwargs)
            return
        devices = sorted({p.device.index or 0 for group in self.optimizer.param_groups
                          for p in group["params"] if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices):  # Hutchinson's probes, without touching
            torch.manual_seed(_draw_seed(self.seed, self.steps_taken))  # the run's own RNG
            super().step(**kwargs)
