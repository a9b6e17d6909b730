"""mmengine's ``DeepSpeedStrategy`` module, made to work with current DeepSpeed.

Its ``register_deepspeed_optimizers`` imports ``deepspeed.runtime.fp16.onebit`` (removed in
DeepSpeed 0.19.7, so no strategy can be built) and registers without ``force`` (a second strategy
in one process raises ``KeyError``). It becomes an idempotent function that registers the
catalog's DeepSpeed names, and ``DeepSpeedStrategy`` is re-registered as this package's subclass
(``visdet_mmext.deepspeed.strategy``).
"""
from __future__ import annotations

from . import patch


def register_deepspeed_optimizers() -> list[str]:
    """Register the catalog's DeepSpeed optimizers; safe to call any number of times.

    Rows whose op exists on this accelerator get DeepSpeed's real class (DeepSpeed is imported
    by now, so that costs nothing and lets the constructor validate their arguments); the others
    keep the lazy builder, which fails with a "needs CUDA" message.
    """
    from mmengine.registry import OPTIMIZERS

    from ..catalog import CATALOG
    from ..errors import NeedsCudaError
    from ..registry.availability import AVAILABLE, NEEDS_CUDA
    from ..registry.loader import load_providers
    from ..registry.lazy import lazy_builder, resolve

    report = load_providers()
    names = []
    for spec in CATALOG.rows_of("deepspeed"):
        info = report.availability(spec.name)
        if info is None or info.status not in (AVAILABLE, NEEDS_CUDA):
            continue
        registered = OPTIMIZERS.module_dict.get(spec.name)
        if info.usable:
            try:
                cls = resolve(spec)
            except NeedsCudaError:  # op missing on this accelerator: keep the clear lazy error
                cls = None
            if cls is not None and registered is not cls:
                OPTIMIZERS.register_module(name=spec.name, module=cls, force=True)
        elif registered is None:
            OPTIMIZERS.register_module(name=spec.name, module=lazy_builder(spec, OPTIMIZERS),
                                       force=True)
        names.append(spec.name)
    return names


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine._strategy.deepspeed",
       fixes="""no DeepSpeedStrategy can be built with DeepSpeed >= 0.19.7 (it imports the removed
       1-bit optimizers), a second one in a process raises KeyError, ZeRO-Offload refuses
       mmengine's optimizers, and CPU-only runs call torch.cuda""")
def mmengine_deepspeed_strategy(module) -> None:
    if getattr(module, "deepspeed", None) is None:
        return  # DeepSpeed not installed: mmengine's strategy already says so when built
    module.register_deepspeed_optimizers = register_deepspeed_optimizers
    from mmengine.registry import STRATEGIES

    from ..deepspeed.strategy import DeepSpeedStrategy
    STRATEGIES.register_module(name="DeepSpeedStrategy", module=DeepSpeedStrategy, force=True)
