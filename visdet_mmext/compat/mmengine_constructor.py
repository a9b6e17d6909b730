"""This package's checked constructor answers for mmengine's default one, by name or by class.

mmengine builds ``constructor=optim_wrapper.pop('constructor', 'DefaultOptimWrapperConstructor')``
through ``OPTIM_WRAPPER_CONSTRUCTORS``. The name is re-registered to
``CheckedOptimWrapperConstructor`` (child registries of downstream scopes fall back to it), and
the root registry's build function maps the class itself too (a config, or a future mmengine,
may name the default by class).
"""
from __future__ import annotations

from . import patch


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.optim",
       fixes="""mmengine's default constructor reports a bad optimizer config as 'None is not a
       callable object' or not at all, and LBFGS, SparseAdam, D-Adaptation and HF Adafactor fail
       inside the training loop""")
def mmengine_default_constructor(module) -> None:
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

    from ..optim.checked_constructor import CheckedOptimWrapperConstructor
    default = module.DefaultOptimWrapperConstructor
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(name="DefaultOptimWrapperConstructor",
                                               module=CheckedOptimWrapperConstructor, force=True)
    build = OPTIM_WRAPPER_CONSTRUCTORS.build_func

    def build_checked(cfg, *args, **kwargs):
        if cfg.get("type") is default:
            cfg = {**cfg, "type": CheckedOptimWrapperConstructor}
        return build(cfg, *args, **kwargs)

    OPTIM_WRAPPER_CONSTRUCTORS.build_func = build_checked
