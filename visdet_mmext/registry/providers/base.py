"""Helpers shared by the providers: register a catalog row under its fixed name."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable

from ..availability import AVAILABLE, MISSING_PACKAGE, Availability, import_failure, qualified_name
from ..lazy import lazy_builder
from ...catalog import CATALOG, OptimizerSpec


def register_fixed(registry, name: str, obj, provider: str, reason: str = "",
                   resolved: str = "") -> Availability:
    """Register ``obj`` under ``name``, replacing whatever mmengine put there.

    ``force=True`` is deliberate: mmengine's own registration makes ``Lion``/``LAMB``/``Muon``
    depend on what is installed; the catalog fixes them. What was replaced is reported.
    """
    previous = registry.module_dict.get(name)
    registry.register_module(name=name, module=obj, force=True)
    if previous is not None and previous is not obj:
        note = f"replaces {qualified_name(previous)}"
        reason = f"{reason}; {note}" if reason else note
    return Availability(AVAILABLE, reason, resolved or qualified_name(obj), provider)


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


def register_lazily(registry, rows: Iterable[OptimizerSpec], provider: str) -> dict[str, Availability]:
    """Register each row as a builder that imports its package on first use."""
    return {spec.name: register_fixed(registry, spec.name, lazy_builder(spec, registry), provider,
                                      "imported on first use", spec.target.replace(":", "."))
            for spec in rows}


def is_installed(package: str) -> bool:
    """Whether ``import package`` can find it (without importing it; a None entry in
    ``sys.modules`` is Python's "not importable")."""
    if package in sys.modules:
        return sys.modules[package] is not None
    return importlib.util.find_spec(package) is not None


def register_package(registry, provider: str, package: str) -> dict[str, Availability]:
    """A provider of an optional package: its rows as classes when something (mmengine.optim) has
    imported the package already, as lazy builders when it is installed but not imported."""
    rows = CATALOG.rows_of(provider)
    if sys.modules.get(package) is not None:
        return register_rows(registry, rows, provider)
    if not is_installed(package):
        return {spec.name: Availability(MISSING_PACKAGE, f"{package} is not installed",
                                        provider=provider) for spec in rows}
    return register_lazily(registry, rows, provider)
