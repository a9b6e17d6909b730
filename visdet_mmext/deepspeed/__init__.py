"""DeepSpeed for mmengine configs: the strategy, its config reading and the ZeRO-Offload mapping.

Nothing here is imported by ``import visdet_mmext``: ``visdet_mmext.compat`` registers
``strategy.DeepSpeedStrategy`` once mmengine's own strategy module is imported. User guide:
``docs/deepspeed.md``.
"""
