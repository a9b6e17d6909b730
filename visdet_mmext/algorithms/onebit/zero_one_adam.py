"""0/1 Adam (Lu et al. 2022, arXiv 2202.06009).

Two schedules, shared by every rank (step ``t`` is 1-based):

* variance steps ``T_v``: while ``t <= var_freeze_step``, every ``var_interval``-th step; the
  interval starts at 1 and doubles after every ``var_update_scaler`` variance updates. On these
  steps the gradients arrive averaged (full precision) and ``m`` and ``v`` are Adam's.
* synchronisation steps ``T_u``: every step up to ``var_freeze_step``; afterwards every
  ``local_interval``-th step, the interval doubling every ``local_step_scaler`` steps up to
  ``local_step_clipper``. Between them each rank takes local steps with its own gradients.

Every other step is a 1-bit step: each rank updates its momentum from its own gradient, takes
the Adam step with the stale ``v`` (``d = v_hat``-preconditioned), and accumulates
``u += lr * m_hat``. At a synchronisation step ``u / sum(lr)`` (the interval's lr-weighted mean
momentum) is averaged by the 1-bit all-reduce into ``m_bar``, and every rank moves from the
interval's starting point ``p0`` (``anchor``)::

    m <- m_bar * bc1;   p <- p0 * prod(1 - lr * wd) - sum(lr) * m_bar / (sqrt(v_hat) + eps)

Parameters are always computed from ``p0`` this way (with the rank's own ``u`` between
synchronisations), so every rank holds the same parameters after each synchronisation, and a
checkpoint that saves every rank's ``m`` and ``u`` resumes exactly mid-interval. Compressing the
mean momentum instead of ``u`` itself keeps the error buffers in one unit when the interval or
the lr changes, so they are never reset. With one interval step this is 1-bit Adam's step with
a stale variance. Where ``v`` is exactly 0 the momentum stays 0 (``adam.mask_unseen``).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .adam import adam_state, adam_step, mask_unseen, update_moments
from .base import OnebitOptimizer, check_adam_settings, check_step_count


class ZeroOneAdam(OnebitOptimizer):
    """0/1 Adam: adaptive variance freezing, 1-bit momentum and local steps.

    Args:
        params, lr, betas, eps, weight_decay, bias_correction, process_group: as
            :class:`~.adam.OnebitAdam`.
        var_freeze_step: last step that may update the variance (the end of the lr warm-up in
            the paper); local steps start after it.
        var_update_scaler: variance updates between two doublings of their interval (kappa).
        local_step_scaler: steps between two doublings of the local-step interval.
        local_step_clipper: largest local-step interval (H).
    """

    rank_local_keys = ("exp_avg", "momentum_sum")

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, bias_correction: bool = True,
                 var_freeze_step: int = 100000, var_update_scaler: int = 16,
                 local_step_scaler: int = 32678, local_step_clipper: int = 16, process_group=None):
        check_adam_settings("ZeroOneAdam", lr, betas, eps, weight_decay)
        check_step_count("ZeroOneAdam", "var_freeze_step", var_freeze_step, 1,
                         "step 1 is the first variance update; without one v stays 0")
        for key, value in (("var_update_scaler", var_update_scaler),
                           ("local_step_scaler", local_step_scaler),
                           ("local_step_clipper", local_step_clipper)):
            check_step_count("ZeroOneAdam", key, value, 1, "it counts steps")
        self.var_freeze_step = var_freeze_step
        self.var_update_scaler = var_update_scaler
        self.local_step_scaler = local_step_scaler
        self.local_step_clipper = local_step_clipper
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction)
        super().__init__(params, defaults, process_group)
        self.onebit.update(var_interval=1, var_counter=0, var_updates=0, local_interval=1,
                           local_counter=0)

    def is_variance_step(self, t: int) -> bool:
        return t <= self.var_freeze_step and t % self.onebit["var_interval"] == 0

    def is_sync_step(self, t: int) -> bool:
        return t <= self.var_freeze_step or t % self.onebit["local_interval"] == 0

    @property
    def averages_next_gradients(self) -> bool:
        return self.is_variance_step(self.global_step + 1)

    def update(self, t: int) -> None:
        if self.is_variance_step(t):
            self._adam_step(t)
        else:
            self._onebit_step(t)
        self._advance_schedules(t)

    def _adam_step(self, t: int) -> None:
        self.onebit["var_updates"] += 1
        self.unseen.clear()  # the variance changes: masks of its zeros are found again
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            bc1, bc2 = self._bias_corrections(group, t)
            for p, grad in self.local_gradients(group):
                state = adam_state(self.state[p], p)
                update_moments(state, grad, beta1, beta2)
                adam_step(p, state, group, bc1, bc2)

    def _onebit_step(self, t: int) -> None:
        sync = self.is_sync_step(t)
        # the momentum sums live in the exchange buffer: averaged where they are
        slots = iter(self.exchange_views()) if self.world_size > 1 else None
        params = []
        for group in self.param_groups:
            beta1 = group["betas"][0]
            bc1, bc2 = self._bias_corrections(group, t)
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                slot = next(slots) if slots is not None else None
                state = adam_state(self.state[p], p)
                if "momentum_sum" not in state:  # first step of an interval
                    state["momentum_sum"] = torch.zeros_like(p) if slot is None else slot.zero_()
                    state["lr_sum"] = 0.0
                    state["decay"] = 1.0
                    if not sync:  # a local step moves p: remember where the interval starts
                        state["anchor"] = p.detach().clone()
                state["exp_avg"].lerp_(self.grad_or_zero(p), 1 - beta1)
                mask_unseen([p], self.state, self.unseen)
                state["momentum_sum"].add_(state["exp_avg"], alpha=group["lr"] / bc1)
                state["lr_sum"] += group["lr"]
                state["decay"] *= 1 - group["lr"] * group["weight_decay"]
                if sync:
                    params.append(p)
                    state["momentum_sum"].div_(state["lr_sum"] or 1.0)  # the interval's mean
                else:
                    self._move(p, state, group, bc2, state["momentum_sum"], 1.0)
        if not sync:
            return
        self.compressed_average("momentum_sum")
        mask_unseen(params, self.state, self.unseen, "momentum_sum")
        for group in self.param_groups:
            bc1, bc2 = self._bias_corrections(group, t)
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                state = self.state[p]
                self._move(p, state, group, bc2, state["momentum_sum"], state["lr_sum"])
                state["exp_avg"].copy_(state["momentum_sum"]).mul_(bc1)
                for key in ("anchor", "momentum_sum", "lr_sum", "decay"):
                    state.pop(key, None)

    @staticmethod
    def _move(p, state: dict, group: dict, bc2_sqrt: float, momentum, scale: float) -> None:
        """``p = anchor * decay - scale * momentum / (sqrt(v_hat) + eps)``; without an anchor
        ``p`` itself is the interval's starting point."""
        denom = (state["exp_avg_sq"].sqrt() / bc2_sqrt).add_(group["eps"])
        if "anchor" in state:
            p.copy_(state["anchor"])
        p.mul_(state["decay"]).addcdiv_(momentum, denom, value=-scale)

    def load_state_dict(self, state_dict: dict) -> None:
        """Mid-interval, also put back this rank's own parameters (the checkpoint's model
        weights are rank 0's)."""
        super().load_state_dict(state_dict)
        with torch.no_grad():
            for group in self.param_groups:
                bc2 = self._bias_corrections(group, self.global_step)[1]
                for p in group["params"]:
                    state = self.state.get(p, {})
                    if "anchor" in state:
                        self._move(p, state, group, bc2, state["momentum_sum"], 1.0)

    def _bias_corrections(self, group: dict, t: int) -> tuple[float, float]:
        if not group["bias_correction"]:
            return 1.0, 1.0
        beta1, beta2 = group["betas"]
        return 1.0 - beta1 ** t, (1.0 - beta2 ** self.onebit["var_updates"]) ** 0.5

    def _advance_schedules(self, t: int) -> None:
        schedule = self.onebit
        if t <= self.var_freeze_step:
            if t % schedule["var_interval"] == 0:
                schedule["var_counter"] += 1
                if schedule["var_counter"] == self.var_update_scaler:
                    schedule["var_counter"] = 0
                    schedule["var_interval"] *= 2
        else:
            schedule["local_counter"] += 1
            if schedule["local_counter"] == self.local_step_scaler:
                schedule["local_counter"] = 0
                schedule["local_interval"] = min(self.local_step_clipper,
                                                 2 * schedule["local_interval"])
