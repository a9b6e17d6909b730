"""Names registered before their package is imported.

An optional package (schedule-free, Prodigy, pytorch-optimizer, DeepSpeed, ...) costs its import
time only in a run that uses it. Until then its catalog rows are registered as a small builder that
imports the class on first use, puts the class itself in the registry in its place (so that later
``OPTIMIZERS.get(name)`` returns the class) and builds it.
"""
from __future__ import annotations

import importlib

from ..catalog import OptimizerSpec
from ..deepspeed.ops import accelerator_builder
from ..errors import NeedsCudaError, OptimizerConfigError


def resolve(spec: OptimizerSpec):
    """Import the class of ``spec``, failing clearly where it cannot run or import here."""
    if spec.op_builder is not None and accelerator_builder(spec) is None:
        from deepspeed.accelerator import get_accelerator
        reason = (f"DeepSpeed's {spec.op_builder} is not implemented on the "
                  f"'{get_accelerator().device_name()}' accelerator")
        raise NeedsCudaError(f"{spec.name} needs CUDA: {reason}. On CPU use DeepSpeedCPUAdam, "
                             "DeepSpeedCPULion or this package's LAMB/Lion instead.", reason)
    try:
        return getattr(importlib.import_module(spec.module), spec.attribute)
    except (ImportError, AttributeError) as error:
        raise OptimizerConfigError(
            f"{spec.name} builds {spec.target.replace(':', '.')}, which cannot be imported here "
            f"({type(error).__name__}: {error}). Reinstall it: {spec.install_hint}.") from error


def lazy_builder(spec: OptimizerSpec, registry):
    """A stand-in for the class of ``spec`` in ``registry``: imports and builds it when called."""
    def build(params, **kwargs):
        return resolve_class()(params, **kwargs)

    def resolve_class():
        cls = resolve(spec)
        if registry.module_dict.get(spec.name) is build:
            registry.register_module(name=spec.name, module=cls, force=True)
        return cls

    build.__name__ = build.__qualname__ = spec.name
    build.__doc__ = (f"Builds {spec.target.replace(':', '.')} (its package is imported on first "
                     "use).")
    build.lazy_spec = spec
    build.resolve_class = resolve_class
    return build


def resolve_registered(registered):
    """The class a registry entry builds: ``registered`` itself, or the class its lazy builder
    stands for (imported now; it then replaces the builder in its registry)."""
    resolve_class = getattr(registered, "resolve_class", None)
    return registered if resolve_class is None else resolve_class()
