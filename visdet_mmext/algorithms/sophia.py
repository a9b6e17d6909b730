"""SophiaG (Liu et al. 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for Language
Model Pre-training", arXiv 2305.14342: Algorithm 3 with the Gauss-Newton-Bartlett estimator).

Per step, with momentum ``m`` (state ``exp_avg``) and diagonal Hessian estimate ``h`` (state
``hessian``)::

    m <- beta1 * m + (1 - beta1) * g
    every update_period steps, before the update:
        h <- beta2 * h + (1 - beta2) * h_hat                    # update_hessian()
    p <- p * (1 - lr * weight_decay)
    p <- p - lr * clip(m / max(rho * h, eps), 1)               # clip(z, 1) = max(min(z, 1), -1)

The Gauss-Newton-Bartlett estimate: labels drawn from the model's own softmax over its logits,
``g_hat`` the gradient of the mean cross-entropy of those logits against the drawn labels over
the ``B`` drawn labels, ``h_hat = B * g_hat * g_hat``. Drawing and differentiating need the
model, so the optimizer only takes ``g_hat`` (``update_hessian``); ``SophiaOptimWrapper`` does
the rest inside mmengine's training step.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from .dispatch import closure_loss


class SophiaG(Optimizer):
    """SophiaG with decoupled weight decay.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: learning rate; no coordinate moves more than ``lr`` per step (plus weight decay).
        betas: (beta1, beta2): momentum decay, Hessian-estimate decay (per refresh).
        rho: the Hessian's scale in the denominator (the paper's gamma); smaller clips more
            coordinates, making the step sign-like.
        weight_decay: decoupled decay, applied as ``p * (1 - lr * weight_decay)``.
        eps: floor of the denominator.
        update_period: steps between Hessian refreshes (the paper's k); the first step refreshes.
    """

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.965, 0.99),
                 rho: float = 0.04, weight_decay: float = 0.1, eps: float = 1e-15,
                 update_period: int = 10):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid betas: {betas}")
        if not 0.0 < rho:
            raise ValueError(f"Invalid rho: {rho}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        if not isinstance(update_period, int) or update_period < 1:
            raise ValueError(f"Invalid update_period: {update_period} (an integer >= 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), rho=rho,
                                      weight_decay=weight_decay, eps=eps))
        self.update_period = update_period

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @property
    def steps_taken(self) -> int:
        return self.param_groups[0].get("step", 0)

    def hessian_due(self) -> bool:
        """Whether the next step must be preceded by ``update_hessian``."""
        return self.steps_taken % self.update_period == 0

    @torch.no_grad()
    def update_hessian(self, sampled_grads: Sequence[Tensor | None], samples: int) -> None:
        """Fold in one Gauss-Newton-Bartlett estimate.

        ``sampled_grads``: the gradient of the mean loss against sampled labels, one entry per
        parameter in param-group order (None: no estimate for it); ``samples``: how many labels
        were drawn (the B of ``h_hat = B * g_hat**2``).
        """
        params = [p for group in self.param_groups for p in group["params"]]
        if len(sampled_grads) != len(params):
            raise ValueError(f"update_hessian got {len(sampled_grads)} gradients for "
                             f"{len(params)} parameters")
        index = 0
        for group in self.param_groups:
            beta2 = group["betas"][1]
            for p in group["params"]:
                grad = sampled_grads[index]
                index += 1
                if grad is not None:
                    self._state(p)["hessian"].mul_(beta2).addcmul_(grad, grad,
                                                                   value=(1 - beta2) * samples)
            group["hessian_step"] = group.get("step", 0)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            step = group.setdefault("step", 0)
            if step % self.update_period == 0 and group.get("hessian_step") != step:
                raise RuntimeError(
                    f"SophiaG's Hessian estimate must be refreshed before step {step + 1} (every "
                    f"update_period={self.update_period} steps), and update_hessian() was not "
                    "called. Train through optim_wrapper type 'SophiaOptimWrapper' (chosen "
                    "automatically for optim_wrapper type 'OptimWrapper'), or call "
                    "update_hessian() yourself; see docs/sophia.md.")
            beta1 = group["betas"][0]
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SophiaG does not support sparse gradients")
                state = self._state(p)
                exp_avg = state["exp_avg"]
                exp_avg.lerp_(p.grad, 1 - beta1)
                p.mul_(1 - lr * group["weight_decay"])
                ratio = exp_avg / (rho * state["hessian"]).clamp_(min=eps)
                p.add_(ratio.clamp_(-1.0, 1.0), alpha=-lr)
            group["step"] = step + 1
        return loss
