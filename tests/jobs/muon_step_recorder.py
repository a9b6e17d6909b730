"""A hook that records every optimizer step of a (distributed) run for replay in one process.

Per rank it saves ``<out>/rank<r>.pt``: the parameters before the first step (optimizer order),
and per step the param-group settings (lr schedules change them), the averaged gradients the
step used, the parameters after it, and ``last_step_ns_flops`` (this rank's Newton-Schulz work).
"""
import os

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class MuonStepRecorder(Hook):

    def __init__(self, out: str):
        self.out = out

    def before_train(self, runner):
        optimizer = runner.optim_wrapper.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.record = dict(initial=[p.detach().clone() for p in params], steps=[])

        def before_step(opt, args, kwargs):
            groups = [{k: v for k, v in g.items() if k != "params"} | {"size": len(g["params"])}
                      for g in opt.param_groups]
            grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
            self.record["steps"].append(dict(groups=groups, grads=grads))

        def after_step(opt, args, kwargs):
            step = self.record["steps"][-1]
            step["params"] = [p.detach().clone() for p in params]
            step["ns_flops"] = opt.last_step_ns_flops

        optimizer.register_step_pre_hook(before_step)
        optimizer.register_step_post_hook(after_step)

    def after_train(self, runner):
        os.makedirs(self.out, exist_ok=True)
        torch.save(self.record, os.path.join(self.out, f"rank{get_rank()}.pt"))
