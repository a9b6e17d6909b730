"""Runner hooks that some optimizers need. A catalog row names them (``OptimizerSpec.hooks``), and
they join the Runner when its optim wrapper is built (``compat.mmengine_runner_hooks``)."""
from .batch_norm import recompute_batch_norm
from .schedule_free import ScheduleFreeHook, schedule_free_optimizers

__all__ = ["ScheduleFreeHook", "recompute_batch_norm", "schedule_free_optimizers"]
