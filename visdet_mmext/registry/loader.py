"""Runs this package's optimizer providers, then every third-party one, once.

A provider is a callable ``register(registry)``: it registers optimizers into mmengine's root
``OPTIMIZERS`` and may return a ``{name: Availability}`` mapping. This package's own providers are
listed here (``OWN_PROVIDERS``, in the order they run); any other installed distribution adds one
by declaring an entry point in the group ``visdet_mmext.optimizers``. The loader keeps a report of
what registered, what is missing and why. A provider that raises is reported, not fatal, unless
``VISDET_MMEXT_STRICT=1``. Names in the catalog cannot be taken over by third-party providers.
"""
from __future__ import annotations

import logging
import os
import threading
import traceback
from dataclasses import dataclass, field
from importlib import metadata

from ..catalog import CATALOG
from ..errors import ProviderError
from .availability import AVAILABLE, IMPORT_ERROR, MISSING_PACKAGE, REMOVED, Availability, qualified_name

ENTRY_POINT_GROUP = "visdet_mmext.optimizers"
DISTRIBUTION = "visdet-mmext"
STRICT_ENV = "VISDET_MMEXT_STRICT"
#: This package's providers in the order they must run (torch names first, bitsandbytes after
#: native): ``registry.providers.<name>:register``.
OWN_PROVIDERS = ("torch", "native", "dadaptation", "transformers", "schedulefree", "prodigyopt",
                 "pytorch_optimizer", "bitsandbytes", "deepspeed")

logger = logging.getLogger("visdet_mmext")


@dataclass
class ProviderResult:
    name: str
    value: str  # "module:function"
    distribution: str
    error: str = ""
    registered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Report:
    providers: dict[str, ProviderResult] = field(default_factory=dict)
    names: dict[str, Availability] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def availability(self, name: str) -> Availability | None:
        return self.names.get(name)

    def usable_names(self) -> list[str]:
        return sorted(name for name, info in self.names.items() if info.usable)

    def summary(self) -> str:
        """One line: how many catalog names are available here, and why the others are not."""
        counts: dict[str, int] = {}
        for name in CATALOG:
            status = self.names[name].status if name in self.names else IMPORT_ERROR
            counts[status] = counts.get(status, 0) + 1
        parts = [f"{counts.pop(AVAILABLE, 0)} optimizers available"]
        parts += [f"{n} {status}" for status, n in sorted(counts.items())]
        return ", ".join(parts) + " (visdet-mmext list shows each)"


_lock = threading.Lock()
_report: Report | None = None


def _entry_points() -> list[metadata.EntryPoint]:
    """Our own providers first (fixed order), then third-party ones sorted by name."""
    own = [metadata.EntryPoint(name, f"{__package__}.providers.{name}:register", ENTRY_POINT_GROUP)
           for name in OWN_PROVIDERS]
    # an install made before this package stopped declaring its own entry points still lists them
    others = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
              if ep.dist is None or ep.dist.name != DISTRIBUTION]
    return own + sorted(others, key=lambda ep: ep.name)


def _run_provider(entry_point, registry, report: Report, strict: bool) -> None:
    distribution = entry_point.dist.name if entry_point.dist is not None else DISTRIBUTION
    result = ProviderResult(entry_point.name, entry_point.value, distribution)
    before = dict(registry.module_dict)
    try:
        statuses = entry_point.load()(registry) or {}
    except Exception as error:
        result.error = f"{type(error).__name__}: {error}"
        logger.warning("optimizer provider %r (%s) failed: %s\n%s", entry_point.name,
                       entry_point.value, result.error, traceback.format_exc())
        if strict:
            raise ProviderError(f"provider {entry_point.name!r} ({entry_point.value}) failed "
                                f"and {STRICT_ENV}=1") from error
        statuses = {}
    changed = [name for name, obj in registry.module_dict.items() if before.get(name) is not obj]
    # every name the provider answers for, including those mmengine had already registered
    result.registered = sorted(set(changed) | {name for name in statuses
                                               if name in registry.module_dict})
    for name, info in statuses.items():
        report.names[name] = info
    for name in changed:
        if name not in statuses:
            report.names[name] = Availability(AVAILABLE, f"from provider {entry_point.name!r}",
                                              qualified_name(registry.module_dict[name]),
                                              entry_point.name)
    report.providers[entry_point.name] = result


def _protect_catalog_names(registry, owned: dict, report: Report, provider: str) -> None:
    """Undo a third-party provider's takeover of a catalog name (names are fixed)."""
    for name, (obj, status) in owned.items():
        if registry.module_dict.get(name) is obj and report.names.get(name) is status:
            continue
        if obj is None:
            registry.module_dict.pop(name, None)
        else:
            registry.module_dict[name] = obj
        report.names[name] = status
        message = f"provider {provider!r} tried to replace catalog name {name!r}; kept the catalog's"
        report.notes.append(message)
        logger.warning(message)


def _drop_impostors(registry, report: Report) -> None:
    """An unavailable catalog name must not resolve to some other class (e.g. mmengine's)."""
    for spec in CATALOG.values():
        info = report.names.get(spec.name)
        if info is None:
            report.names[spec.name] = info = Availability(IMPORT_ERROR, "no provider reported it",
                                                          provider=spec.provider)
        if info.status in (MISSING_PACKAGE, REMOVED, IMPORT_ERROR):
            if registry.module_dict.pop(spec.name, None) is not None:
                report.notes.append(f"removed {spec.name!r}: its package is unavailable, and another "
                                    "class must not answer to the name")


def load_providers(*, reload: bool = False) -> Report:
    """Register every provider's optimizers into mmengine's ``OPTIMIZERS``; cached."""
    global _report
    with _lock:
        if _report is not None and not reload:
            return _report
        # mmengine.optim registers its built-ins on import; registering a torch name before
        # that makes its own import fail, so it always comes first.
        import mmengine.optim  # noqa: F401
        from mmengine.registry import OPTIMIZERS

        strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        report = Report()
        entry_points = _entry_points()
        for entry_point in entry_points[:len(OWN_PROVIDERS)]:
            _run_provider(entry_point, OPTIMIZERS, report, strict)
        owned = {name: (OPTIMIZERS.module_dict.get(name), report.names.get(name)) for name in CATALOG}
        for entry_point in entry_points[len(OWN_PROVIDERS):]:
            _run_provider(entry_point, OPTIMIZERS, report, strict)
            _protect_catalog_names(OPTIMIZERS, owned, report, entry_point.name)
        _drop_impostors(OPTIMIZERS, report)
        _report = report
        return report
