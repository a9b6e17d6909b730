"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

Per step, with momentum ``m`` (state ``exp_avg``)::

    p <- p * (1 - lr * wd)                       # decoupled decay, scaled by lr only
    p <- p - lr * sign(beta1 * m + (1 - beta1) * g)
    m <- beta2 * m + (1 - beta2) * g

One state tensor (4 B/param in fp32). Reads p, g, m and writes p, m: 20 B/param, which the
fast paths move in a single pass: on CPU a C kernel (``native_cpu``) that takes every fp32 tensor
of the step in one call, on CUDA the compiled kernel.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import dispatch, native_cpu


def _lion_hp(lr: float, weight_decay: float, beta1: float, beta2: float) -> tuple:
    # Scalars combined once in double precision, so the kernel only multiplies and adds
    # (lerp's two-branch formula made the compiled CPU loop compute-bound).
    return (lr, 1 - lr * weight_decay, beta1, 1 - beta1, beta2, 1 - beta2)


def _lion_tensor(p: Tensor, g: Tensor, exp_avg: Tensor, hp) -> None:
    lr, decay, beta1, one_minus_beta1, beta2, one_minus_beta2 = (
        hp[0], hp[1], hp[2], hp[3], hp[4], hp[5])
    update = (exp_avg * beta1 + g * one_minus_beta1).sign_()
    p.mul_(decay).sub_(update * lr)
    exp_avg.mul_(beta2).add_(g * one_minus_beta2)


def _lion_foreach(lists: list[list[Tensor]], hp: tuple) -> None:
    params, grads, exp_avgs = lists
    lr, decay, beta1, one_minus_beta1, beta2, one_minus_beta2 = hp
    updates = torch._foreach_mul(exp_avgs, beta1)
    torch._foreach_add_(updates, grads, alpha=one_minus_beta1)
    torch._foreach_sign_(updates)
    if decay != 1:
        torch._foreach_mul_(params, decay)
    torch._foreach_add_(params, updates, alpha=-lr)
    torch._foreach_mul_(exp_avgs, beta2)
    torch._foreach_add_(exp_avgs, grads, alpha=one_minus_beta2)


# The eager formula, element by element (float arithmetic in the order of _lion_tensor; sign is
# (x > 0) - (x < 0), torch's, so NaN gives 0), over blocks of all tensors on OpenMP threads.
_LION_C = r"""
static void lion_block(int64_t count, float *const *lists, const double *hp, int64_t t,
                       int64_t start, int64_t end)
{
    const double *h = hp + 6 * t;
    const float lr = (float)h[0], decay = (float)h[1];
    const float beta1 = (float)h[2], one_minus_beta1 = (float)h[3];
    const float beta2 = (float)h[4], one_minus_beta2 = (float)h[5];
    float *restrict p = lists[t], *restrict m = lists[2 * count + t];
    const float *restrict g = lists[count + t];
    #pragma omp simd
    for (int64_t i = start; i < end; ++i) {
        const float x = m[i] * beta1 + g[i] * one_minus_beta1;
        const float sign = (float)(x > 0.0f) - (float)(x < 0.0f);
        p[i] = p[i] * decay - sign * lr;
        m[i] = m[i] * beta2 + g[i] * one_minus_beta2;
    }
}
"""


_KERNEL = dispatch.Kernel(_lion_tensor, "Lion", compile_s=12.0, cached_s=3.0, saved_ns=1.7,
                          elementwise=True,
                          native=native_cpu.elementwise("lion", _LION_C, 6))


class Lion(Optimizer):
    """Lion with decoupled weight decay.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate; Lion wants ~3-10x less than AdamW.
        betas: (beta1, beta2): interpolation for the sign, then the momentum decay.
        weight_decay: decoupled decay; the effective decay per step is ``lr * weight_decay``,
            so use ~3-10x AdamW's.
        maximize: ascend the objective instead (torch's meaning).
        foreach: torch's meaning (None: automatic).
        fast: None picks the fastest path for the device (compiled fused kernel where available),
            False forces the foreach/single-tensor paths, True asks for the compiled one.
    """

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, *, maximize: bool = False,
                 foreach: bool | None = None, fast: bool | None = None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not (0.0 <= betas[0] <= 1.0 and 0.0 <= betas[1] <= 1.0):
            raise ValueError(f"Invalid betas: {betas}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, fast=fast))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = dispatch.closure_loss(closure)
        works = []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            hp = _lion_hp(float(group["lr"]), float(group["weight_decay"]), float(beta1),
                          float(beta2))
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = dispatch.check_grad("Lion", p, group["maximize"])
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                works.append(((p, grad, state["exp_avg"]), hp))
        dispatch.run(_KERNEL, _lion_foreach, works, self.defaults["fast"], self.defaults["foreach"])
        return loss
