"""An OptimWrapper for Prodigy: per-group step multipliers, and the step size it really takes.

Prodigy (Mishchenko & Defazio 2023) steps every group by ``d * lr`` and refuses groups with
different ``lr``. The constructor's adapter turns lr multipliers into ``layer_scale`` with one
``lr`` everywhere; here each group's move in a step (update and weight decay, as ``lr_mult``
scales both for AdamW) is scaled by its ``layer_scale``. Prodigy's next estimate of ``d`` reads
the distance the weights really travelled. ``effective_lr`` logs ``d * lr * layer_scale``.
"""
import torch
from mmengine.registry import OPTIM_WRAPPERS

from .effective_lr import DAdaptOptimWrapper


@OPTIM_WRAPPERS.register_module()
class ProdigyOptimWrapper(DAdaptOptimWrapper):

    def step(self, **kwargs) -> None:
        scaled = [(p, p.detach().clone(), group["layer_scale"])
                  for group in self.optimizer.param_groups if group.get("layer_scale", 1.0) != 1.0
                  for p in group["params"] if p.grad is not None]
        super().step(**kwargs)
        with torch.no_grad():
            for p, before, scale in scaled:
                p.sub_(before).mul_(scale).add_(before)
