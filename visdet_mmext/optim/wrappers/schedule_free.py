"""An OptimWrapper that puts a schedule-free optimizer in train mode around each training forward.

A schedule-free optimizer (Defazio et al. 2024) keeps two weight sequences: gradients are taken
at ``y`` (train mode), and ``x``, an average of the iterates, is what to evaluate and keep (eval
mode); ``optimizer.train()``/``eval()`` move the model between them and its step refuses to run
in eval mode. mmengine's ``train_step`` runs the forward inside ``optim_context``, so switching
there makes every loop that trains through mmengine step at ``y``. Switching to ``x`` for
validation, testing and checkpoints is ``ScheduleFreeHook``'s part (added to the Runner with it).
"""
from contextlib import contextmanager

from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class ScheduleFreeOptimWrapper(OptimWrapper):

    @contextmanager
    def optim_context(self, model):
        self.optimizer.train()  # a no-op when already in train mode
        with super().optim_context(model):
            yield
