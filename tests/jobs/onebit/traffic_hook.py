"""A Runner hook that records the bytes each training iteration sends (counting process group)."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from visdet_mmext.algorithms.onebit.traffic import counting_group

SENT_PER_ITER: list[int] = []  # filled during training; the job reads it afterwards


@HOOKS.register_module()
class IterTrafficHook(Hook):
    # after the logger, before the checkpoint hook (VERY_LOW): a save is not part of the step
    priority = "LOW"

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._before = counting_group().totals()["sent"]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        SENT_PER_ITER.append(counting_group().totals()["sent"] - self._before)
