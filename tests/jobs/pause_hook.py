"""A hook that stops a run after a given iteration until the process is killed.

It writes ``marker`` once iteration ``at`` has finished, then waits on an event nothing sets, so
a test that sees the marker kills the run at exactly that point, however fast or slow it runs.
"""
import threading
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class PauseAtIterHook(Hook):

    def __init__(self, at: int, marker: str):
        self.at, self.marker = at, Path(marker)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:  # runner.iter counts from 0 and advances after this hook
            self.marker.write_text(str(self.at))
            threading.Event().wait()
