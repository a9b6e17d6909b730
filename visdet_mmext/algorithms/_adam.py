"""Adam's state and moments, shared by LAMB, ADOPT, Adan and Muon's AdamW side (torch's state
layout and formulas)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from .dispatch import check_grad


def check_settings(lr: float, betas: tuple, eps: float, weight_decay: float) -> None:
    """torch's checks of an Adam-family constructor: a ValueError naming the bad setting."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"Invalid betas: {betas} (each in [0, 1))")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid eps: {eps}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay: {weight_decay}")


def adam_state(state: dict, p: Tensor, extra: tuple[str, ...] = ()) -> dict:
    """``state`` with Adam's step and moments (and zero tensors named ``extra``), created on first
    use (torch's layout).

    A ``step`` loaded as a plain number (torch's older checkpoints) becomes a tensor again.
    """
    if not state:
        state["step"] = torch.tensor(0.0, dtype=torch.float32)
        for key in ("exp_avg", "exp_avg_sq", *extra):
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
    elif not torch.is_tensor(state["step"]):
        state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)
    return state


_ONE = torch.tensor(1.0)


def advance(steps: list[Tensor]) -> list[int]:
    """Add 1 to every step tensor (torch's layout: float32 CPU scalars) and return the new
    counts. One foreach call with a tensor operand: a Python 1.0 would be wrapped per tensor."""
    if not steps:
        return []
    torch._foreach_add_(steps, _ONE, alpha=1.0)
    return [int(step) for step in steps]


def adam_works(optimizer: Optimizer, name: str, hp_for: Callable[[dict, int], tuple],
               extra: tuple[str, ...] = ()) -> list:
    """The dispatch work items of one step: ``((p, grad, exp_avg, exp_avg_sq, *extra states),
    hp_for(group, step))`` for every parameter with a gradient, its step advanced first;
    ``hp_for`` is called once per group and distinct step count."""
    works = []
    for group in optimizer.param_groups:
        tensors, steps = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = check_grad(name, p, group["maximize"])
            state = adam_state(optimizer.state[p], p, extra)
            steps.append(state["step"])
            tensors.append((p, grad, state["exp_avg"], state["exp_avg_sq"],
                            *(state[key] for key in extra)))
        hps: dict[int, tuple] = {}
        for ts, step in zip(tensors, advance(steps)):
            if step not in hps:
                hps[step] = hp_for(group, step)
            works.append((ts, hps[step]))
    return works


def bias_corrections(step: Tensor | int, beta1: float, beta2: float, enabled: bool = True) -> tuple:
    """``(1 - beta1^t, sqrt(1 - beta2^t))`` in double precision, or ones when disabled."""
    if not enabled:
        return (1.0, 1.0)
    t = float(step)
    return (1.0 - beta1 ** t, (1.0 - beta2 ** t) ** 0.5)


def adam_moments(g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, beta1, beta2, eps,
                 bc2_sqrt) -> Tensor:
    """Update one tensor's moments in place; return the denominator ``sqrt(v)/bc2_sqrt + eps``."""
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g * (1 - beta2))
    return exp_avg_sq.sqrt() / bc2_sqrt + eps


def adam_moments_foreach(grads, exp_avgs, exp_avg_sqs, beta1: float, beta2: float, eps: float,
                         bc2_sqrt: float) -> list[Tensor]:
    """:func:`adam_moments` for lists of tensors (foreach kernels)."""
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bc2_sqrt)
    torch._foreach_add_(denom, eps)
    return denom


def adamw_tensor(p: Tensor, g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, hp) -> None:
    """torch's AdamW on one tensor; ``hp`` = (lr, weight_decay, beta1, beta2, eps, bc1, bc2_sqrt)."""
    lr, weight_decay, beta1, beta2 = hp[0], hp[1], hp[2], hp[3]
    eps, bc1, bc2_sqrt = hp[4], hp[5], hp[6]
    p.mul_(1 - lr * weight_decay)
    denom = adam_moments(g, exp_avg, exp_avg_sq, beta1, beta2, eps, bc2_sqrt)
    p.sub_(exp_avg / denom * (lr / bc1))


def adamw_foreach(lists: list[list[Tensor]], hp: tuple) -> None:
    params, grads, exp_avgs, exp_avg_sqs = lists
    lr, weight_decay, beta1, beta2, eps, bc1, bc2_sqrt = hp
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    denom = adam_moments_foreach(grads, exp_avgs, exp_avg_sqs, beta1, beta2, eps, bc2_sqrt)
    torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr / bc1)
