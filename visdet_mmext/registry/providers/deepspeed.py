"""Provider: DeepSpeed's optimizers, registered lazily.

``import deepspeed`` takes seconds and picks an accelerator, so the registry holds a small
builder per name (``registry.lazy``) even when DeepSpeed is installed; the first build imports it.
"""
from __future__ import annotations

import importlib.metadata

import torch
from packaging.version import Version

from ..availability import MISSING_PACKAGE, NEEDS_CUDA, REMOVED, Availability
from ...catalog import CATALOG
from .base import is_installed, register_lazily


def register(registry):
    rows = CATALOG.rows_of("deepspeed")
    if not is_installed("deepspeed"):
        return {spec.name: Availability(MISSING_PACKAGE, "deepspeed is not installed",
                                        provider="deepspeed") for spec in rows}
    version = importlib.metadata.version("deepspeed")
    removed = [spec for spec in rows if spec.removed_in and Version(version) >= Version(spec.removed_in)]
    report = {spec.name: Availability(REMOVED, f"removed in deepspeed {spec.removed_in}; installed "
                                      f"{version}", provider="deepspeed") for spec in removed}
    report.update(register_lazily(registry, [spec for spec in rows if spec not in removed],
                                  "deepspeed"))
    for spec in rows:
        if spec.name in report and report[spec.name].usable and spec.cuda_only \
                and not torch.cuda.is_available():
            report[spec.name] = Availability(NEEDS_CUDA, "CUDA-only DeepSpeed op; no CUDA device",
                                             report[spec.name].resolved, "deepspeed")
    return report
