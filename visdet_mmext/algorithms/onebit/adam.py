"""1-bit Adam (Tang et al. 2021, arXiv 2102.02888).

Steps ``1..freeze_step`` (warm-up) are Adam with decoupled weight decay (AdamW) on gradients
averaged over the ranks. Afterwards the variance ``v`` is frozen and each rank updates the
momentum from its own gradient; the momenta are averaged by the error-compensated 1-bit
all-reduce, and the step is Adam's with the frozen ``v``::

    m <- compressed_average(beta1 * m + (1 - beta1) * g_local)
    p <- p * (1 - lr * wd) - lr * (m / bc1) / (sqrt(v / bc2_frozen) + eps)

``bc1 = 1 - beta1^t`` and ``bc2_frozen = 1 - beta2^freeze_step`` (ones with
``bias_correction=False``, which reproduces DeepSpeed's implementation). Where the frozen ``v``
is exactly 0 the momentum stays 0 (:func:`mask_unseen`).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .base import OnebitOptimizer, check_adam_settings, check_step_count


class OnebitAdam(OnebitOptimizer):
    """1-bit Adam: Adam for ``freeze_step`` steps, then frozen variance and 1-bit momentum.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate.
        freeze_step: number of warm-up steps (full-precision Adam, variance updated).
        betas: Adam's moment decays.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: decoupled, as in DeepSpeed's ``OnebitAdam`` (``update += wd * p``).
        bias_correction: divide the moments by ``1 - beta^t`` (``v``'s factor frozen with it).
        process_group: see :class:`~.base.OnebitOptimizer`.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, freeze_step: int = 100000,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, bias_correction: bool = True, process_group=None):
        check_adam_settings("OnebitAdam", lr, betas, eps, weight_decay)
        check_step_count("OnebitAdam", "freeze_step", freeze_step, 1,
                         "the warm-up estimates the variance that is then frozen; 0 steps would "
                         "freeze v = 0 and divide the momentum by eps")
        self.freeze_step = freeze_step
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction)
        super().__init__(params, defaults, process_group)

    @property
    def averages_next_gradients(self) -> bool:
        return self.global_step + 1 <= self.freeze_step

    def update(self, t: int) -> None:
        warmup = t <= self.freeze_step
        params = []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if not p.requires_grad or (warmup and p.grad is None):
                    continue
                grad = self.grad_or_zero(p)
                state = adam_state(self.state[p], p)
                state["exp_avg"].lerp_(grad, 1 - beta1)
                if warmup:
                    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                params.append(p)
        if not warmup:
            self.compressed_average("exp_avg")
            mask_unseen(params, self.state, self.unseen)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            bc1, bc2 = bias_corrections(group, t, min(t, self.freeze_step))
            for p in group["params"]:
                if p in self.state and (not warmup or p.grad is not None):
                    adam_step(p, self.state[p], group, bc1, bc2)


def mask_unseen(params: list[torch.Tensor], state: dict, frozen: dict | None = None,
                key: str = "exp_avg") -> None:
    """Zero the momentum (``key``) where the variance is exactly 0 (no gradient in the warm-up,
    e.g. unused embedding rows): one bit cannot send a zero, and the step there would be m / eps.
    DeepSpeed asked for an ``exp_avg_mask`` param-group key for this.

    ``frozen`` caches the masks (None where there is no zero) while the variance cannot change.
    """
    for p in params:
        if frozen is None or p not in frozen:
            mask = state[p]["exp_avg_sq"] == 0
            mask = mask if mask.any() else None
            if frozen is not None:
                frozen[p] = mask
        else:
            mask = frozen[p]
        if mask is not None:
            state[p][key].masked_fill_(mask, 0.0)


def update_moments(state: dict, grad: torch.Tensor, beta1: float, beta2: float) -> None:
    """Adam's moments, torch's formula (the warm-up equals torch's Adam to the bit)."""
    state["exp_avg"].lerp_(grad, 1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)


def adam_state(state: dict, p: torch.Tensor) -> dict:
    if not state:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state


def bias_corrections(group: dict, momentum_steps: int, variance_steps: int) -> tuple[float, float]:
    """``(1 - beta1^t1, sqrt(1 - beta2^t2))``, or ones when the group disables the correction."""
    if not group["bias_correction"]:
        return 1.0, 1.0
    beta1, beta2 = group["betas"]
    return 1.0 - beta1 ** momentum_steps, (1.0 - beta2 ** variance_steps) ** 0.5


def adam_step(p: torch.Tensor, state: dict, group: dict, bc1: float, bc2_sqrt: float) -> None:
    """AdamW's update with the stored moments (torch's operation order)."""
    lr = group["lr"]
    if group["weight_decay"] != 0:
        p.mul_(1 - lr * group["weight_decay"])
    denom = (state["exp_avg_sq"].sqrt() / bc2_sqrt).add_(group["eps"])
    p.addcdiv_(state["exp_avg"], denom, value=-lr / bc1)
