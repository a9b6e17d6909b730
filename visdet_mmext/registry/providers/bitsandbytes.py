"""Provider: every class of ``bitsandbytes.optim``.

Catalog rows keep their names (``bnb_`` prefix where torch or this package owns the name). When
bitsandbytes is already imported (mmengine.optim imports it), a class that a newer bitsandbytes
adds is registered by the same rule and reported as extra; finding those needs the import, which
this provider does not make itself.
"""
import importlib.metadata
import inspect
import sys

import torch
from packaging.version import Version

from ..availability import NEEDS_CUDA, Availability
from ...catalog import BNB_PREFIXED, CATALOG, FIXED_NAMES
from .base import register_fixed, register_package

#: First release whose optimizers step on CPU tensors.
CPU_SUPPORT_SINCE = Version("0.50")


def register(registry):
    report = register_package(registry, "bitsandbytes", "bitsandbytes")
    rows = CATALOG.rows_of("bitsandbytes")
    if not any(report[spec.name].usable for spec in rows):
        return report
    version = importlib.metadata.version("bitsandbytes")
    cpu_ok = Version(version) >= CPU_SUPPORT_SINCE
    if not torch.cuda.is_available():
        for spec in rows:
            if report[spec.name].usable and (not cpu_ok or spec.cuda_only):
                why = (f"bitsandbytes {version} has no CPU optimizers (>= 0.50 has)"
                       if not cpu_ok else "its kernel fails on bitsandbytes' CPU backend")
                report[spec.name] = Availability(NEEDS_CUDA, why, report[spec.name].resolved,
                                                 "bitsandbytes")
    optim = sys.modules.get("bitsandbytes.optim")
    known = {spec.attribute for spec in rows}
    for name, cls in inspect.getmembers(optim, inspect.isclass) if optim is not None else ():
        if name in known or not issubclass(cls, torch.optim.Optimizer):
            continue
        registry_name = f"bnb_{name}" if name in BNB_PREFIXED or name in FIXED_NAMES else name
        report[registry_name] = register_fixed(registry, registry_name, cls, "bitsandbytes",
                                               "not in the catalog (newer bitsandbytes)")
    return report
