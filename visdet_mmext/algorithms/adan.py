"""Adan (Xie et al. 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
Models"), Algorithm 1 with its authors' defaults and proximal weight decay.

Per tensor, at its ``t``-th step, with ``g`` the gradient (times the global clip factor when
``max_grad_norm > 0``) and ``g_prev`` the previous one (``g`` itself at ``t = 1``)::

    d <- g - g_prev
    m <- beta1 * m + (1 - beta1) * g                    (state exp_avg)
    s <- beta2 * s + (1 - beta2) * d                    (state exp_avg_diff)
    n <- beta3 * n + (1 - beta3) * (g + beta2 * d)^2    (state exp_avg_sq)
    r <- sqrt(n) / sqrt(1 - beta3^t) + eps
    p <- (p - lr * (m / (1 - beta1^t) + beta2 * s / (1 - beta2^t)) / r) / (1 + lr * wd)

``no_prox=True`` decays as AdamW instead (``p * (1 - lr * wd)`` before the update). The betas are
the authors' code's (``1 - beta`` of the paper's). ``-g`` is kept as state ``neg_pre_grad``;
``p.grad`` is only read. Reads p, g and four states, writes p and the four (44 B/param in fp32)
in a single pass: on CPU a C kernel (``native_cpu``), on CUDA the compiled kernel.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import dispatch, native_cpu
from ._adam import adam_works, check_settings

#: hyperparameters per tensor: clip, beta1, 1 - beta1, beta2, 1 - beta2, beta3, 1 - beta3,
#: 1 / sqrt(bc3), eps, lr / bc1, lr * beta2 / bc2, decay, 1 / prox, seen (0 at t = 1: d = 0);
#: reciprocals, so that an element costs one division and one root
_WIDTH = 14


def _adan_hp(group: dict, clip: float, step: int) -> tuple:
    lr, weight_decay = float(group["lr"]), float(group["weight_decay"])
    beta1, beta2, beta3 = (float(b) for b in group["betas"])
    no_prox = group["no_prox"]
    decay = 1 - lr * weight_decay if no_prox else 1.0
    prox = 1.0 if no_prox else 1 + lr * weight_decay
    return (clip, beta1, 1 - beta1, beta2, 1 - beta2, beta3, 1 - beta3,
            1 / math.sqrt(1 - beta3 ** step), float(group["eps"]), lr / (1 - beta1 ** step),
            lr * beta2 / (1 - beta2 ** step), decay, 1 / prox, 0.0 if step == 1 else 1.0)


def _adan_tensor(p: Tensor, g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, exp_avg_diff: Tensor,
                 neg_pre_grad: Tensor, hp) -> None:
    clip, beta1, one_minus_beta1, beta2, one_minus_beta2 = hp[0], hp[1], hp[2], hp[3], hp[4]
    beta3, one_minus_beta3, inv_bc3_sqrt, eps = hp[5], hp[6], hp[7], hp[8]
    step_size, diff_step_size, decay, inv_prox, seen = hp[9], hp[10], hp[11], hp[12], hp[13]
    g = g * clip
    diff = g * seen + neg_pre_grad  # neg_pre_grad is 0 before the first step
    exp_avg.mul_(beta1).add_(g * one_minus_beta1)
    exp_avg_diff.mul_(beta2).add_(diff * one_minus_beta2)
    nesterov = diff * beta2 + g
    exp_avg_sq.mul_(beta3).add_(nesterov * nesterov * one_minus_beta3)
    denom = exp_avg_sq.sqrt() * inv_bc3_sqrt + eps
    p.mul_(decay).sub_((exp_avg * step_size + exp_avg_diff * diff_step_size) / denom)
    p.mul_(inv_prox)
    neg_pre_grad.copy_(g.neg_())


def _adan_foreach(lists: list[list[Tensor]], hp: tuple) -> None:
    params, grads, exp_avgs, exp_avg_sqs, exp_avg_diffs, neg_pre_grads = lists
    (clip, beta1, one_minus_beta1, beta2, one_minus_beta2, beta3, one_minus_beta3, inv_bc3_sqrt,
     eps, step_size, diff_step_size, decay, inv_prox, seen) = hp
    grads = torch._foreach_mul(grads, clip)
    diffs = torch._foreach_mul(grads, seen)
    torch._foreach_add_(diffs, neg_pre_grads)
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, torch._foreach_mul(grads, one_minus_beta1))
    torch._foreach_mul_(exp_avg_diffs, beta2)
    torch._foreach_add_(exp_avg_diffs, torch._foreach_mul(diffs, one_minus_beta2))
    torch._foreach_mul_(diffs, beta2)
    torch._foreach_add_(diffs, grads)  # the Nesterov term g + beta2 * d
    torch._foreach_mul_(diffs, diffs)
    torch._foreach_mul_(diffs, one_minus_beta3)
    torch._foreach_mul_(exp_avg_sqs, beta3)
    torch._foreach_add_(exp_avg_sqs, diffs)
    del diffs
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_mul_(denom, inv_bc3_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_mul_(params, decay)
    update = torch._foreach_mul(exp_avgs, step_size)
    torch._foreach_add_(update, torch._foreach_mul(exp_avg_diffs, diff_step_size))
    torch._foreach_div_(update, denom)
    torch._foreach_sub_(params, update)
    torch._foreach_mul_(params, inv_prox)
    torch._foreach_neg_(grads)
    torch._foreach_copy_(neg_pre_grads, grads)


# _adan_tensor element by element (sqrtf is correctly rounded, torch's CPU sqrt within an ulp).
_ADAN_C = r"""
static void adan_block(int64_t count, float *const *lists, const double *hp, int64_t t,
                       int64_t start, int64_t end)
{
    const double *h = hp + 14 * t;
    const float clip = (float)h[0], beta1 = (float)h[1], one_minus_beta1 = (float)h[2];
    const float beta2 = (float)h[3], one_minus_beta2 = (float)h[4];
    const float beta3 = (float)h[5], one_minus_beta3 = (float)h[6];
    const float inv_bc3_sqrt = (float)h[7], eps = (float)h[8], step_size = (float)h[9];
    const float diff_step_size = (float)h[10], decay = (float)h[11];
    const float inv_prox = (float)h[12];
    const float seen = (float)h[13];
    float *restrict p = lists[t], *restrict m = lists[2 * count + t];
    float *restrict n = lists[3 * count + t], *restrict s = lists[4 * count + t];
    float *restrict neg_prev = lists[5 * count + t];
    const float *restrict grad = lists[count + t];
    #pragma omp simd
    for (int64_t i = start; i < end; ++i) {
        const float g = grad[i] * clip;
        const float d = g * seen + neg_prev[i];
        m[i] = m[i] * beta1 + g * one_minus_beta1;
        s[i] = s[i] * beta2 + d * one_minus_beta2;
        const float nesterov = d * beta2 + g;
        n[i] = n[i] * beta3 + nesterov * nesterov * one_minus_beta3;
        const float denom = sqrtf(n[i]) * inv_bc3_sqrt + eps;
        p[i] = (p[i] * decay - (m[i] * step_size + s[i] * diff_step_size) / denom) * inv_prox;
        neg_prev[i] = -g;
    }
}
"""


_KERNEL = dispatch.Kernel(_adan_tensor, "Adan", compile_s=14.0, cached_s=3.0, saved_ns=3.0,
                          elementwise=True,
                          native=native_cpu.elementwise("adan", _ADAN_C, _WIDTH))


def _full(norm: Tensor) -> Tensor:
    # a DTensor's norm (FSDP2) is reduced over the shards and replicated: take it whole
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


class Adan(Optimizer):
    """Adan as its authors' code computes it, without touching ``p.grad``.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate.
        betas: (beta1, beta2, beta3) of the authors' code: decays of the gradient, the gradient
            difference and the squared Nesterov gradient.
        eps: added to the root of the second moment.
        weight_decay: proximal decay ``p / (1 + lr * wd)`` after the update, or with
            ``no_prox=True`` AdamW's ``p * (1 - lr * wd)`` before it.
        max_grad_norm: > 0 scales every gradient by ``min(1, max_grad_norm / (norm + eps))``,
            ``norm`` over all groups (the authors' global clip); 0 disables it.
        no_prox: decoupled (AdamW) decay instead of the proximal one.
        maximize, foreach, fast: see :class:`visdet_mmext.algorithms.lion.Lion`.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8,
                 weight_decay: float = 0.0, max_grad_norm: float = 0.0, no_prox: bool = False,
                 *, maximize: bool = False, foreach: bool | None = None,
                 fast: bool | None = None):
        if len(betas) != 3:
            raise ValueError(f"Invalid betas: {betas} (three: gradient, difference, second moment)")
        check_settings(lr, betas, eps, weight_decay)
        if not 0.0 <= max_grad_norm:
            raise ValueError(f"Invalid max_grad_norm: {max_grad_norm}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                                      no_prox=no_prox, maximize=maximize, foreach=foreach,
                                      fast=fast))

    def _clip_factor(self, grads: list[Tensor]) -> float:
        limit = self.defaults["max_grad_norm"]
        if limit <= 0 or not grads:
            return 1.0
        norm = math.sqrt(sum(float(_full(torch.linalg.vector_norm(g)).double()) ** 2
                             for g in grads))
        return min(1.0, limit / (norm + self.defaults["eps"]))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = dispatch.closure_loss(closure)
        clip = self._clip_factor([p.grad for group in self.param_groups for p in group["params"]
                                  if p.grad is not None])
        works = adam_works(self, "Adan", lambda group, step: _adan_hp(group, clip, step),
                           ("exp_avg_diff", "neg_pre_grad"))
        dispatch.run(_KERNEL, _adan_foreach, works, self.defaults["fast"],
                     self.defaults["foreach"])
        return loss
