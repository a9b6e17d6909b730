"""1-bit LAMB (Li et al. 2021, arXiv 2104.06069).

Warm-up (steps ``1..freeze_step``): LAMB on gradients averaged over the ranks, per tensor::

    u = (m / bc1) / (sqrt(v / bc2) + eps) + wd * p
    r = clamp(||p|| / ||u||, min_coeff, max_coeff)        (1 when a norm is 0)
    p <- p - lr * r * u

and an exponential average of ``r`` (``coeff_beta``, bias-corrected) is kept per tensor.

Compression: ``v`` is frozen; the momentum is updated from the local gradient and averaged by
the 1-bit all-reduce. The trust ratio is the frozen average times a factor that tracks how the
variance would have moved: a fresh ``v`` is kept from the gradient reconstructed out of two
successive (averaged) momenta, ``g = (m_t - beta1 * m_{t-1}) / (1 - beta1)``, and::

    factor = max over the tensor of (sqrt(v_frozen_hat) + eps) / (sqrt(v_fresh_hat) + eps)
    (with weight decay: factor * q + 1 - q, q = min(1, ||u without decay|| / ||u||))
    factor clipped to [factor_min, factor_max] and to within factor_threshold of the last one
    p <- p - lr * r_frozen * factor * u

DeepSpeed also rescaled each momentum before compressing it into one flat buffer; the
compression here keeps one scale per tensor chunk, which makes that rescaling a no-op.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..lamb import lamb_direction
from .adam import adam_state, bias_corrections, mask_unseen
from .base import OnebitOptimizer, check_adam_settings, check_step_count, require


class OnebitLamb(OnebitOptimizer):
    """1-bit LAMB: LAMB for ``freeze_step`` steps, then frozen variance, trust ratio and
    1-bit momentum.

    Args:
        params, lr, freeze_step, betas, eps, weight_decay, bias_correction, process_group: as
            :class:`~.adam.OnebitAdam` (``weight_decay`` enters the update before the trust ratio).
        max_coeff, min_coeff: bounds of the trust ratio in the warm-up.
        coeff_beta: decay of the trust ratio's running average (the frozen ratio).
        factor_max, factor_min: bounds of the compression-stage factor.
        factor_threshold: the factor moves at most this fraction per step.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, freeze_step: int = 100000,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, bias_correction: bool = True, max_coeff: float = 10.0,
                 min_coeff: float = 0.01, coeff_beta: float = 0.9, factor_max: float = 4.0,
                 factor_min: float = 0.5, factor_threshold: float = 0.1, process_group=None):
        check_adam_settings("OnebitLamb", lr, betas, eps, weight_decay)
        check_step_count("OnebitLamb", "freeze_step", freeze_step, 1,
                         "the warm-up estimates the variance and the trust ratio that are then "
                         "frozen")
        require(0 <= min_coeff <= max_coeff,
                f"OnebitLamb: need 0 <= min_coeff <= max_coeff, got {min_coeff}, {max_coeff}")
        require(0 <= coeff_beta < 1, f"OnebitLamb: coeff_beta={coeff_beta} must be in [0, 1)")
        require(0 < factor_min <= 1 <= factor_max,
                f"OnebitLamb: need 0 < factor_min <= 1 <= factor_max, got {factor_min}, "
                f"{factor_max}")
        require(0 <= factor_threshold < 1,
                f"OnebitLamb: factor_threshold={factor_threshold} must be in [0, 1)")
        self.freeze_step = freeze_step
        self.coeff_beta = coeff_beta
        self.factor_max, self.factor_min = factor_max, factor_min
        self.factor_threshold = factor_threshold
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, max_coeff=max_coeff, min_coeff=min_coeff)
        super().__init__(params, defaults, process_group)

    @property
    def averages_next_gradients(self) -> bool:
        return self.global_step + 1 <= self.freeze_step

    def update(self, t: int) -> None:
        if t <= self.freeze_step:
            self._warmup_step(t)
        else:
            self._compression_step(t)

    def _warmup_step(self, t: int) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            bc1, bc2 = bias_corrections(group, t, t)
            hp = (group["lr"], group["weight_decay"], beta1, beta2, group["eps"], bc1, bc2)
            for p, grad in self.local_gradients(group):
                state = lamb_state(self.state[p], p)
                update = lamb_direction(p, grad, state["exp_avg"], state["exp_avg_sq"], hp)
                ratio, defined = trust_ratio(p, update)
                ratio = ratio.clamp(group["min_coeff"], group["max_coeff"]).where(defined, 1.0)
                blend = torch.where(defined, 1 - self.coeff_beta, 0.0)
                state["trust_average"].lerp_(ratio, blend)
                state["trust_weight"].lerp_(torch.ones_like(blend), blend)
                p.sub_(update * (ratio * group["lr"]))
                if t == self.freeze_step:
                    state["exp_avg_sq_fresh"] = state["exp_avg_sq"].clone()

    def _compression_step(self, t: int) -> None:
        params, previous = [], []
        for group in self.param_groups:
            beta1 = group["betas"][0]
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                state = lamb_state(self.state[p], p)
                state.setdefault("exp_avg_sq_fresh", state["exp_avg_sq"].clone())
                previous.append(state["exp_avg"].clone())
                state["exp_avg"].lerp_(self.grad_or_zero(p), 1 - beta1)
                params.append(p)
        self.compressed_average("exp_avg")
        mask_unseen(params, self.state, self.unseen)
        last = dict(zip(map(id, params), previous))
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            bc1, bc2_frozen = bias_corrections(group, t, self.freeze_step)
            bc2_fresh = bias_corrections(group, t, t)[1]
            for p in group["params"]:
                if id(p) not in last:
                    continue
                state = self.state[p]
                grad = (state["exp_avg"] - beta1 * last[id(p)]) / (1 - beta1)
                fresh = state["exp_avg_sq_fresh"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (state["exp_avg_sq"].sqrt() / bc2_frozen).add_(group["eps"])
                fresh_denom = (fresh.sqrt() / bc2_fresh).add_(group["eps"])
                plain = state["exp_avg"] / bc1 / denom
                update = plain + p * group["weight_decay"] if group["weight_decay"] else plain
                factor = (denom / fresh_denom).max()
                if group["weight_decay"]:
                    share = (plain.norm() / update.norm()).nan_to_num(1.0).clamp(max=1.0)
                    factor = factor * share + (1 - share)
                factor = factor.clamp(self.factor_min, self.factor_max)
                last_factor = state["last_factor"]
                factor = factor.clamp(last_factor * (1 - self.factor_threshold),
                                      last_factor * (1 + self.factor_threshold))
                state["last_factor"] = factor
                frozen = state["trust_average"] / state["trust_weight"].clamp(min=1e-12)
                frozen = frozen.where(state["trust_weight"] > 0, 1.0)
                p.sub_(update * (frozen * factor * group["lr"]))


def lamb_state(state: dict, p: Tensor) -> dict:
    if not state:
        adam_state(state, p)
        # running average of the trust ratio, and the weight of its bias correction
        state["trust_average"] = torch.zeros((), device=p.device)
        state["trust_weight"] = torch.zeros((), device=p.device)
        state["last_factor"] = torch.ones((), device=p.device)
    return state


def trust_ratio(p: Tensor, update: Tensor) -> tuple[Tensor, Tensor]:
    """``||p|| / ||update||`` and whether both norms are positive."""
    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
    defined = (w_norm > 0) & (u_norm > 0)
    return w_norm / u_norm.where(defined, 1.0), defined
