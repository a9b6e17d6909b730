"""Provider: every class of ``bitsandbytes.optim``.

Catalog rows keep their names (``bnb_`` prefix where torch or this package owns the name);
a class that a newer bitsandbytes adds is registered by the same rule and reported as extra.
"""
import inspect

import torch
from packaging.version import Version

from ..availability import NEEDS_CUDA, Availability
from ...catalog import BNB_PREFIXED, CATALOG, FIXED_NAMES
from .base import import_package, register_fixed, register_rows

#: First release whose optimizers step on CPU tensors.
CPU_SUPPORT_SINCE = Version("0.50")


def register(registry):
    rows = CATALOG.rows_of("bitsandbytes")
    bnb, failed = import_package("bitsandbytes", "bitsandbytes", rows)
    if bnb is None:
        return failed
    report = register_rows(registry, rows, "bitsandbytes")
    cpu_ok = Version(bnb.__version__) >= CPU_SUPPORT_SINCE
    if not torch.cuda.is_available():
        for spec in rows:
            if report[spec.name].usable and (not cpu_ok or spec.cuda_only):
                why = (f"bitsandbytes {bnb.__version__} has no CPU optimizers (>= 0.50 has)"
                       if not cpu_ok else "its kernel fails on bitsandbytes' CPU backend")
                report[spec.name] = Availability(NEEDS_CUDA, why, report[spec.name].resolved,
                                                 "bitsandbytes")
    known = {spec.attribute for spec in rows}
    for name, cls in inspect.getmembers(bnb.optim, inspect.isclass):
        if name in known or not issubclass(cls, torch.optim.Optimizer):
            continue
        registry_name = f"bnb_{name}" if name in BNB_PREFIXED or name in FIXED_NAMES else name
        report[registry_name] = register_fixed(registry, registry_name, cls, "bitsandbytes",
                                               "not in the catalog (newer bitsandbytes)")
    return report
