"""ADOPT (Taniguchi et al. 2024, "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
Rate"), with the clipping of the paper's revised version and of its authors' code.

Per tensor, at its ``t``-th step (``g``: the gradient, plus ``wd * p`` without ``decouple``)::

    t = 1:  v <- g^2                                   (nothing else: no update, no decay)
    t > 1:  p <- p * (1 - lr * wd)                      (decouple=True only)
            m <- beta1 * m + (1 - beta1) * clip(g / max(sqrt(v), eps), (t - 1)^c)
            p <- p - lr * m
            v <- beta2 * v + (1 - beta2) * g^2

``clip(x, a)`` limits each element to ``[-a, a]``; ``c = clip_exponent`` (0.25; None: no clip).
The normaliser is the *previous* second moment. Reads p, g, m, v and writes p, m, v (28 B/param
in fp32, AdamW's traffic) in a single pass: on CPU a C kernel (``native_cpu``), on CUDA the
compiled kernel. How this differs from pytorch-optimizer's ADOPT: docs/adopt_adan_soap.md.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import dispatch, native_cpu
from ._adam import adam_works, check_settings

#: hyperparameters per tensor: lr, decay, wd_grad, beta1, 1 - beta1, beta2, 1 - beta2, eps, clip
_WIDTH = 9


def _adopt_hp(group: dict, step: int) -> tuple:
    """One step's scalars. The first step is the general formula with coefficients that leave
    ``p`` and ``m`` as they are and set ``v = g^2``, so every path runs one formula."""
    lr, weight_decay, eps = float(group["lr"]), float(group["weight_decay"]), float(group["eps"])
    beta1, beta2 = (float(b) for b in group["betas"])
    wd_grad = 0.0 if group["decouple"] else weight_decay
    if step == 1:
        return (0.0, 1.0, wd_grad, 1.0, 0.0, 0.0, 1.0, eps, 0.0)
    decay = 1 - lr * weight_decay if group["decouple"] else 1.0
    exponent = group["clip_exponent"]
    clip = float("inf") if exponent is None else (step - 1) ** exponent
    return (lr, decay, wd_grad, beta1, 1 - beta1, beta2, 1 - beta2, eps, clip)


def _adopt_tensor(p: Tensor, g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, hp) -> None:
    lr, decay, wd_grad, beta1, one_minus_beta1 = hp[0], hp[1], hp[2], hp[3], hp[4]
    beta2, one_minus_beta2, eps, clip = hp[5], hp[6], hp[7], hp[8]
    g = g + p * wd_grad
    normed = (g / exp_avg_sq.sqrt().clamp(min=eps)).clamp(-clip, clip)
    exp_avg.mul_(beta1).add_(normed * one_minus_beta1)
    p.mul_(decay).sub_(exp_avg * lr)
    exp_avg_sq.mul_(beta2).add_(g * g * one_minus_beta2)


def _adopt_foreach(lists: list[list[Tensor]], hp: tuple) -> None:
    params, grads, exp_avgs, exp_avg_sqs = lists
    lr, decay, wd_grad, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, clip = hp
    grads = torch._foreach_add(grads, torch._foreach_mul(params, wd_grad))
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_clamp_min_(denom, eps)
    normed = torch._foreach_div(grads, denom)
    del denom
    torch._foreach_clamp_min_(normed, -clip)
    torch._foreach_clamp_max_(normed, clip)
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_mul_(normed, one_minus_beta1)
    torch._foreach_add_(exp_avgs, normed)
    del normed
    torch._foreach_mul_(params, decay)
    torch._foreach_sub_(params, torch._foreach_mul(exp_avgs, lr))
    torch._foreach_mul_(exp_avg_sqs, beta2)
    squares = torch._foreach_mul(grads, grads)
    torch._foreach_mul_(squares, one_minus_beta2)
    torch._foreach_add_(exp_avg_sqs, squares)


# _adopt_tensor element by element (NaN passes the clamps, as in torch; sqrtf is correctly
# rounded, torch's CPU sqrt is within an ulp).
_ADOPT_C = r"""
static void adopt_block(int64_t count, float *const *lists, const double *hp, int64_t t,
                        int64_t start, int64_t end)
{
    const double *h = hp + 9 * t;
    const float lr = (float)h[0], decay = (float)h[1], wd_grad = (float)h[2];
    const float beta1 = (float)h[3], one_minus_beta1 = (float)h[4];
    const float beta2 = (float)h[5], one_minus_beta2 = (float)h[6];
    const float eps = (float)h[7], clip = (float)h[8];
    float *restrict p = lists[t], *restrict m = lists[2 * count + t];
    float *restrict v = lists[3 * count + t];
    const float *restrict grad = lists[count + t];
    #pragma omp simd
    for (int64_t i = start; i < end; ++i) {
        const float g = grad[i] + p[i] * wd_grad;
        float root = sqrtf(v[i]);
        root = root < eps ? eps : root;
        float normed = g / root;
        normed = normed < -clip ? -clip : normed;
        normed = normed > clip ? clip : normed;
        m[i] = m[i] * beta1 + normed * one_minus_beta1;
        p[i] = p[i] * decay - m[i] * lr;
        v[i] = v[i] * beta2 + g * g * one_minus_beta2;
    }
}
"""


_KERNEL = dispatch.Kernel(_adopt_tensor, "ADOPT", compile_s=12.0, cached_s=3.0, saved_ns=2.0,
                          elementwise=True,
                          native=native_cpu.elementwise("adopt", _ADOPT_C, _WIDTH))


class ADOPT(Optimizer):
    """ADOPT as in its paper and its authors' code: clip at ``(t-1)^0.25``, nothing but the second
    moment on the first step.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate.
        betas: (beta1, beta2); any beta2 converges (the paper's point), 0.9999 by default.
        eps: lower bound of ``sqrt(v)``.
        weight_decay: added to the gradient (L2), or with ``decouple=True`` AdamW's decay
            ``p *= 1 - lr * weight_decay`` (skipped on the first step, like the update).
        decouple: decoupled weight decay.
        clip_exponent: clip the normalised gradient to ``(t-1)^clip_exponent``; None: no clip
            (the paper's first version).
        maximize, foreach, fast: see :class:`visdet_mmext.algorithms.lion.Lion`.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.9999), eps: float = 1e-6,
                 weight_decay: float = 0.0, decouple: bool = False,
                 clip_exponent: float | None = 0.25, *, maximize: bool = False,
                 foreach: bool | None = None, fast: bool | None = None):
        check_settings(lr, betas, eps, weight_decay)
        if clip_exponent is not None and not clip_exponent >= 0.0:
            raise ValueError(f"Invalid clip_exponent: {clip_exponent} (>= 0, or None)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, decouple=decouple,
                                      clip_exponent=clip_exponent, maximize=maximize,
                                      foreach=foreach, fast=fast))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = dispatch.closure_loss(closure)
        works = adam_works(self, "ADOPT", _adopt_hp)
        dispatch.run(_KERNEL, _adopt_foreach, works, self.defaults["fast"],
                     self.defaults["foreach"])
        return loss
