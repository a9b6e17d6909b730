"""A hook that records, per rank, what a distributed SophiaG run did at its Hessian refreshes.

Saves ``<out>/rank<r>.pt``: this rank's own sampled gradients at the first refresh (before the
ranks' average), the sample count and gradients ``update_hessian`` received, the Hessian
estimate after the first step, and the parameters after every step.
"""
import os

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from visdet_mmext.optim.wrappers import sophia


@HOOKS.register_module(force=True)
class SophiaRankRecorder(Hook):

    def __init__(self, out: str):
        self.out = out
        self.record = dict(local=[], received=[], params=[])

    def before_train(self, runner):
        optimizer = runner.optim_wrapper.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        average, update_hessian = sophia._average_over_ranks, optimizer.update_hessian

        def recorded_average(grads, trained):
            self.record["local"].append([None if g is None else g.detach().clone() for g in grads])
            return average(grads, trained)

        def recorded_update(grads, samples):
            self.record["received"].append(
                (samples, [None if g is None else g.detach().clone() for g in grads]))
            update_hessian(grads, samples)

        sophia._average_over_ranks = recorded_average  # looked up at each call
        optimizer.update_hessian = recorded_update

        def after_step(opt, args, kwargs):
            self.record["params"].append([p.detach().clone() for p in params])
            if len(self.record["params"]) == 1:
                self.record["hessian"] = [opt.state[p]["hessian"].clone() for p in params]

        optimizer.register_step_post_hook(after_step)

    def after_train(self, runner):
        os.makedirs(self.out, exist_ok=True)
        torch.save(self.record, os.path.join(self.out, f"rank{get_rank()}.pt"))
