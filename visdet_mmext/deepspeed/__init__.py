"""DeepSpeed support: a working DeepSpeedStrategy for mmengine 0.10.x and ZeRO-Offload mapping."""


def install() -> None:
    """Install the DeepSpeed fixes without importing deepspeed (called by ``import visdet_mmext``)."""
