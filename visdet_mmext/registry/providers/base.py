"""Helpers shared by the providers: register a catalog row under its fixed name."""
from __future__ import annotations

import importlib
from collections.abc import Iterable

from ..availability import (AVAILABLE, MISSING_PACKAGE, Availability, import_failure,
                            qualified_name)
from ...catalog import OptimizerSpec


def register_fixed(registry, name: str, obj, provider: str, reason: str = "") -> Availability:
    """Register ``obj`` under ``name``, replacing whatever mmengine put there.

    ``force=True`` is deliberate: mmengine's own registration makes ``Lion``/``LAMB``/``Muon``
    depend on what is installed; the catalog fixes them. What was replaced is reported.
    """
    previous = registry.module_dict.get(name)
    registry.register_module(name=name, module=obj, force=True)
    if previous is not None and previous is not obj:
        note = f"replaces {qualified_name(previous)}"
        reason = f"{reason}; {note}" if reason else note
    return Availability(AVAILABLE, reason, qualified_name(obj), provider)


def import_package(package: str, provider: str, rows: Iterable[OptimizerSpec]):
    """Import ``package``; on failure return (None, statuses of every row explaining why)."""
    try:
        return importlib.import_module(package), {}
    except Exception as error:  # report any failure; one broken package must not stop the others
        status, reason = import_failure(error, package.split(".")[0])
        return None, {spec.name: Availability(status, reason, provider=provider) for spec in rows}


def register_rows(registry, rows: Iterable[OptimizerSpec], provider: str) -> dict[str, Availability]:
    """Import each row's class and register it; rows whose import fails are reported."""
    report = {}
    for spec in rows:
        try:
            obj = getattr(importlib.import_module(spec.module), spec.attribute)
        except Exception as error:
            status, reason = import_failure(error, spec.module.split(".")[0])
            if isinstance(error, AttributeError):  # the package is there but too old or too new
                status = MISSING_PACKAGE
                reason = f"the installed {spec.module} has no {spec.attribute}"
            report[spec.name] = Availability(status, reason, provider=provider)
            continue
        report[spec.name] = register_fixed(registry, spec.name, obj, provider)
    return report
