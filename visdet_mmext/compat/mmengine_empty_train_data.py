"""A train dataloader with no batch stops the run before training, instead of a silent hang.

``Runner.train`` and ``FlexibleRunner.train`` build the train loop, whose iteration-based kind
then waits forever for the first batch of an empty loader (``runtime.train_data``). Right after
either runner builds its train loop, a loader of length 0 raises :class:`RunnerConfigError`
naming why and the fix; ``visdet-mmext train`` exits with code 2.
"""
from __future__ import annotations

from . import patch, replace_attribute


def _checked(build_train_loop):
    def build_checked_train_loop(self, *args, **kwargs):
        from ..errors import RunnerConfigError
        from ..runtime.train_data import no_batch_reason
        loop = build_train_loop(self, *args, **kwargs)
        reason = no_batch_reason(getattr(loop, "dataloader", None))
        if reason:
            raise RunnerConfigError(
                f"train_dataloader yields no batch: {reason}, so training would wait forever for "
                "its first batch. Give the dataset samples (check its paths and filters), or a "
                "train_dataloader.batch_size no larger than it holds.")
        return loop
    return build_checked_train_loop


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""an empty train dataset (or drop_last with fewer samples than batch_size) makes
       an iteration-based run wait forever for its first batch""")
def mmengine_runner_empty_train_data(module) -> None:
    replace_attribute(module.Runner, "build_train_loop", _checked)


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner._flexible_runner",
       fixes="""an empty train dataset makes a FlexibleRunner run (DeepSpeed, FSDP) wait forever
       for its first batch, or fail inside the strategy""")
def mmengine_flexible_runner_empty_train_data(module) -> None:
    replace_attribute(module.FlexibleRunner, "build_train_loop", _checked)
