"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"), the paper's formula.

Per parameter tensor, with Adam moments ``m``, ``v`` (states ``exp_avg``, ``exp_avg_sq``)::

    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    u <- (m / bc1) / (sqrt(v / bc2) + eps) + wd * p      # bc = 1 - beta^t, or 1 without correction
    r <- ||p|| / ||u||  (1 when either norm is 0, or when the group has adapt=False)
    p <- p - lr * r * u

Weight decay sits inside ``u`` (so it is part of the trust ratio), as in the paper.

How bitsandbytes', DeepSpeed's and timm's LAMB differ: docs/benchmarks.md. The fast paths make
two passes over each tensor: a reduction pass (moments, both norms), then an update pass that
recomputes ``u`` instead of storing it (40 B/param in fp32). On CPU a C kernel (``native_cpu``)
takes every fp32 tensor of the step in one call; the norms are summed in double precision, block
by block in a fixed order (the same result with any number of threads).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import dispatch, native_cpu
from ._adam import (adam_moments, adam_moments_foreach, adam_works, bias_corrections,
                    check_settings)


def _lamb_hp(group: dict, step: int) -> tuple:
    beta1, beta2 = (float(b) for b in group["betas"])
    return ((float(group["lr"]), float(group["weight_decay"]), beta1, beta2, float(group["eps"]))
            + bias_corrections(step, beta1, beta2, group["bias_correction"])
            + (1.0 if group["adapt"] else 0.0,))


def lamb_direction(p: Tensor, g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, hp) -> Tensor:
    """Update one tensor's moments in place and return ``u`` (the per-tensor path's rounding;
    1-bit LAMB's warm-up calls it too). ``hp`` starts as ``_lamb_hp``'s: lr, weight_decay,
    beta1, beta2, eps, bc1, bc2_sqrt."""
    weight_decay, beta1, beta2, eps, bc1, bc2_sqrt = hp[1:7]
    denom = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2, eps, bc2_sqrt)
    return (exp_avg / bc1) / denom + p * weight_decay


def _lamb_tensor(p: Tensor, g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, hp) -> None:
    lr, adapt = hp[0], hp[7]
    update = lamb_direction(p, g, exp_avg, exp_avg_sq, hp)
    w_norm = torch.linalg.vector_norm(p)
    u_norm = torch.linalg.vector_norm(update)
    ratio = torch.where((w_norm > 0) & (u_norm > 0) & (adapt > 0), w_norm / u_norm, 1.0)
    p.sub_(update * (ratio * lr))


def _lamb_foreach(lists: list[list[Tensor]], hp: tuple) -> None:
    params, grads, exp_avgs, exp_avg_sqs = lists
    lr, weight_decay, beta1, beta2, eps, bc1, bc2_sqrt, adapt = hp
    denom = adam_moments_foreach(grads, exp_avgs, exp_avg_sqs, beta1, beta2, eps, bc2_sqrt)
    updates = torch._foreach_div(exp_avgs, denom)
    del denom
    torch._foreach_div_(updates, bc1)
    if weight_decay != 0:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    if adapt:
        w_norms = torch.stack(torch._foreach_norm(params))
        u_norms = torch.stack(torch._foreach_norm(updates))
        ratios = torch.where((w_norms > 0) & (u_norms > 0), w_norms / u_norms, 1.0)
        torch._foreach_mul_(updates, list((ratios * -lr).unbind()))
        torch._foreach_add_(params, updates)
    else:
        torch._foreach_add_(params, updates, alpha=-lr)


# Tensors are taken in groups of about GROUP elements. Per group, every thread takes one
# contiguous share of the group's blocks: pass 1 over it (moments, and each block's sums of p^2
# and u^2), a barrier, then pass 2 over the same share backwards (u again, and the update scaled
# by the trust ratio, summed from the tensor's block sums in block order: the same result with
# any number of threads), so that it starts with what pass 1 left in the cache. u's scalars are
# reciprocals: one division and one root per element and pass.
_LAMB_C = r"""
#include <omp.h>
#define GROUP (1 << 18)

static inline float lamb_update(float p, float m, float v, const float *c)
{
    return (m * c[1]) / (sqrtf(v) * c[2] + c[3]) + p * c[0];
}

static inline void lamb_constants(const double *h, float *c)
{
    c[0] = (float)h[1];             /* weight decay */
    c[1] = (float)(1.0 / h[5]);     /* 1 / bc1 */
    c[2] = (float)(1.0 / h[6]);     /* 1 / sqrt(bc2) */
    c[3] = (float)h[4];             /* eps */
}

static void lamb_moments(int64_t b, int64_t count, float *const *lists, const int64_t *numel,
                         const double *hp, int64_t block, const int64_t *owner, double *sums)
{
    const int64_t t = owner[2 * b], start = owner[2 * b + 1];
    const int64_t end = start + block < numel[t] ? start + block : numel[t];
    const double *h = hp + 8 * t;
    float c[4];
    lamb_constants(h, c);
    const float beta2 = (float)h[3], w1 = (float)(1.0 - h[2]), w2 = (float)(1.0 - h[3]);
    const float *restrict p = lists[t], *restrict g = lists[count + t];
    float *restrict m = lists[2 * count + t], *restrict v = lists[3 * count + t];
    double p2 = 0.0, u2 = 0.0;
    #pragma omp simd reduction(+:p2, u2)
    for (int64_t i = start; i < end; ++i) {
        m[i] = m[i] + w1 * (g[i] - m[i]);
        v[i] = v[i] * beta2 + g[i] * (g[i] * w2);
        const float u = lamb_update(p[i], m[i], v[i], c);
        p2 += (double)p[i] * p[i];
        u2 += (double)u * u;
    }
    sums[2 * b] = p2;
    sums[2 * b + 1] = u2;
}

static void lamb_apply(int64_t b, int64_t count, float *const *lists, const int64_t *numel,
                       const double *hp, int64_t block, const int64_t *owner,
                       const int64_t *first, const double *sums)
{
    const int64_t t = owner[2 * b], start = owner[2 * b + 1];
    const int64_t end = start + block < numel[t] ? start + block : numel[t];
    const double *h = hp + 8 * t;
    double p2 = 0.0, u2 = 0.0;
    for (int64_t k = first[t]; k < first[t + 1]; ++k) {
        p2 += sums[2 * k];
        u2 += sums[2 * k + 1];
    }
    const double ratio = p2 > 0.0 && u2 > 0.0 && h[7] > 0.0 ? sqrt(p2) / sqrt(u2) : 1.0;
    const float step = (float)(ratio * h[0]);
    float c[4];
    lamb_constants(h, c);
    float *restrict p = lists[t];
    const float *restrict m = lists[2 * count + t], *restrict v = lists[3 * count + t];
    #pragma omp simd
    for (int64_t i = start; i < end; ++i)
        p[i] = p[i] - lamb_update(p[i], m[i], v[i], c) * step;
}

int lamb_step(KERNEL_ARGS)
{
    int64_t blocks;
    int64_t *owner = make_blocks(count, numel, block, &blocks);
    double *sums = malloc(sizeof(double) * 2 * (blocks ? blocks : 1));
    int64_t *first = malloc(sizeof(int64_t) * (count + 1));
    if (!owner || !sums || !first) {
        free(owner); free(sums); free(first);
        return 1;
    }
    first[0] = 0;
    for (int64_t t = 0; t < count; ++t) first[t + 1] = first[t] + (numel[t] + block - 1) / block;
    #pragma omp parallel num_threads(threads)
    {
        const int64_t me = omp_get_thread_num(), team = omp_get_num_threads();
        for (int64_t t0 = 0, t1 = 0; t0 < count; t0 = t1) {
            int64_t elements = numel[t1++];
            while (t1 < count && elements + numel[t1] <= GROUP) elements += numel[t1++];
            const int64_t n = first[t1] - first[t0];
            const int64_t lo = first[t0] + n * me / team, hi = first[t0] + n * (me + 1) / team;
            for (int64_t b = lo; b < hi; ++b)
                lamb_moments(b, count, lists, numel, hp, block, owner, sums);
            #pragma omp barrier
            for (int64_t b = hi - 1; b >= lo; --b)
                lamb_apply(b, count, lists, numel, hp, block, owner, first, sums);
        }
    }
    free(owner); free(sums); free(first);
    return 0;
}
"""


# Two passes per tensor make LAMB's call overhead small: short chunks, quick compilation.
_KERNEL = dispatch.Kernel(_lamb_tensor, "LAMB", compile_s=11.0, cached_s=2.5, saved_ns=1.5,
                          chunk=2, native=functools.partial(native_cpu.step, "lamb", _LAMB_C, 8))


class LAMB(Optimizer):
    """Layer-wise adaptive moments (the paper's LAMB, trust ratio ``||w|| / ||u||``).

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate.
        betas: Adam moment decays.
        eps: added to ``sqrt(v_hat)``.
        weight_decay: L2 term added to the update before the trust ratio (paper form).
        adapt: False uses trust ratio 1 for the group (an AdamW-like update with decay inside),
            e.g. for biases and norms: ``dict(params=..., adapt=False, weight_decay=0)``.
        bias_correction: divide the moments by ``1 - beta^t``.
        maximize, foreach, fast: see :class:`visdet_mmext.algorithms.lion.Lion`.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, *, adapt: bool = True, bias_correction: bool = True,
                 maximize: bool = False, foreach: bool | None = None, fast: bool | None = None):
        check_settings(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        adapt=adapt, bias_correction=bias_correction, maximize=maximize,
                        foreach=foreach, fast=fast)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = dispatch.closure_loss(closure)
        works = adam_works(self, "LAMB", _lamb_hp)
        dispatch.run(_KERNEL, _lamb_foreach, works, self.defaults["fast"],
                     self.defaults["foreach"])
        return loss

