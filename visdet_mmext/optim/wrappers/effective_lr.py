"""An OptimWrapper that logs D-Adaptation's real step size.

D-Adaptation steps with ``d * lr`` (times ``layer_scale``), where ``d`` is its running
estimate; mmengine logs only ``lr`` (usually 1.0). ``get_lr`` adds ``effective_lr``, which
RuntimeInfoHook logs as ``train/effective_lr``.
"""
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class DAdaptOptimWrapper(OptimWrapper):

    def get_lr(self):
        lrs = super().get_lr()
        lrs["effective_lr"] = [group["d"] * group["lr"] * group.get("layer_scale", 1.0)
                               for group in self.optimizer.param_groups]
        return lrs
