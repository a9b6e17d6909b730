"""A hook that saves, per rank, the model's state at the last training iteration (before
CheckpointHook writes, which may switch weights) and after training (after ScheduleFreeHook's
``after_train``): ``<out>/rank<r>.pt``."""
import os

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _state(runner) -> dict:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@HOOKS.register_module(force=True)
class RankStateRecorder(Hook):

    priority = "NORMAL"  # after ScheduleFreeHook (ABOVE_NORMAL), before CheckpointHook (VERY_LOW)

    def __init__(self, out: str):
        self.out = out
        self.last_iteration = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.last_iteration = _state(runner)

    def after_train(self, runner):
        os.makedirs(self.out, exist_ok=True)
        torch.save(dict(last_iteration=self.last_iteration, after_train=_state(runner)),
                   os.path.join(self.out, f"rank{get_rank()}.pt"))
