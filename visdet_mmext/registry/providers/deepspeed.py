"""Provider: DeepSpeed's optimizers, registered lazily.

``import deepspeed`` takes seconds and picks an accelerator, so the registry holds a small
builder per name that imports DeepSpeed on first use and then builds the real class.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util

import torch
from packaging.version import Version

from ..availability import (AVAILABLE, MISSING_PACKAGE, NEEDS_CUDA, REMOVED, Availability)
from ...catalog import CATALOG, OptimizerSpec
from ...errors import NeedsCudaError
from .base import register_fixed


def resolve(spec: OptimizerSpec):
    """Import DeepSpeed's class for ``spec``, failing clearly if this accelerator lacks its op."""
    if spec.op_builder is not None:
        from deepspeed.accelerator import get_accelerator
        accelerator = get_accelerator()
        builder = accelerator.create_op_builder(spec.op_builder)
        if builder is None or type(builder).__name__ == "NotImplementedBuilder":
            reason = (f"DeepSpeed's {spec.op_builder} is not implemented on the "
                      f"'{accelerator.device_name()}' accelerator")
            raise NeedsCudaError(f"{spec.name} needs CUDA: {reason}. On CPU use DeepSpeedCPUAdam, "
                                 "DeepSpeedCPULion or this package's LAMB/Lion instead.", reason)
    return getattr(importlib.import_module(spec.module), spec.attribute)


def lazy_builder(spec: OptimizerSpec):
    def build(params, **kwargs):
        return resolve(spec)(params, **kwargs)

    build.__name__ = build.__qualname__ = spec.name
    build.__doc__ = f"Builds {spec.target.replace(':', '.')} (DeepSpeed is imported on first use)."
    build.lazy_spec = spec
    return build


def register(registry):
    rows = CATALOG.rows_of("deepspeed")
    if importlib.util.find_spec("deepspeed") is None:
        return {spec.name: Availability(MISSING_PACKAGE, "deepspeed is not installed",
                                        provider="deepspeed") for spec in rows}
    version = importlib.metadata.version("deepspeed")
    report = {}
    for spec in rows:
        if spec.removed_in and Version(version) >= Version(spec.removed_in):
            report[spec.name] = Availability(
                REMOVED, f"removed in deepspeed {spec.removed_in}; installed {version}",
                provider="deepspeed")
            continue
        register_fixed(registry, spec.name, lazy_builder(spec), "deepspeed")
        target = spec.target.replace(":", ".")
        if spec.cuda_only and not torch.cuda.is_available():
            report[spec.name] = Availability(NEEDS_CUDA, "CUDA-only DeepSpeed op; no CUDA device",
                                             target, "deepspeed")
        else:
            report[spec.name] = Availability(AVAILABLE, "lazy: deepspeed is imported when first built",
                                             target, "deepspeed")
    return report
