"""Hugging Face Adafactor that mmengine can log and schedule.

With ``lr=None`` (relative step, the default) transformers keeps ``group['lr'] = None``;
mmengine's RuntimeInfoHook then logs None and crashes, and every lr scheduler multiplies None.
This subclass keeps the algorithm untouched and only writes the relative step size it used
into ``group['lr']`` (and ``defaults['lr']``), so logs show the real step size.
"""
from __future__ import annotations

import inspect
import math
import warnings

from transformers.optimization import Adafactor as HFAdafactor

#: Relative step cap of transformers' Adafactor (min(1e-2, 1/sqrt(t))).
RELATIVE_STEP_CAP = 1e-2


def relative_step_size(step: int, warmup_init: bool) -> float:
    if step == 0:
        return 0.0 if warmup_init else RELATIVE_STEP_CAP
    cap = 1e-6 * step if warmup_init else RELATIVE_STEP_CAP
    return min(cap, 1.0 / math.sqrt(step))


class Adafactor(HFAdafactor):
    """``transformers.Adafactor`` whose ``lr`` entries are numbers even in relative-step mode."""

    __signature__ = inspect.signature(HFAdafactor)  # its settings, for config checks

    def __init__(self, params, lr=None, **kwargs):
        super().__init__(params, lr=lr, **kwargs)
        if self.defaults["relative_step"]:
            self.defaults["lr"] = relative_step_size(0, self.defaults["warmup_init"])
        for group in self.param_groups:
            if group["relative_step"]:
                group["lr"] = relative_step_size(0, group["warmup_init"])
        self._warned_schedule = False

    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            if not group["relative_step"]:
                continue
            steps = [self.state[p]["step"] for p in group["params"] if p in self.state]
            if steps:
                self._check_not_scheduled(group)
                group["lr"] = relative_step_size(max(steps), group["warmup_init"])
                group["_reported_lr"] = group["lr"]
        return loss

    def _check_not_scheduled(self, group) -> None:
        # Something other than us changed lr: a scheduler. It has no effect in this mode.
        reported = group.get("_reported_lr")
        if reported is not None and group["lr"] != reported and not self._warned_schedule:
            self._warned_schedule = True
            warnings.warn("Adafactor with relative_step=True computes its own step size and "
                          "ignores lr schedules; use relative_step=False, scale_parameter=False "
                          "and a numeric lr to schedule it.", stacklevel=3)
