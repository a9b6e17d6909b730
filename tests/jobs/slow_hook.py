"""A hook that sleeps after every training iteration (gives a test time to SIGKILL mid-run)."""
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class SlowIterHook(Hook):

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        time.sleep(self.seconds)
