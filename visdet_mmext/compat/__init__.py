"""Every change this package makes to another library, in one place.

Each patch is declared with :func:`patch`: the distribution it changes, the versions it is written
for (a PEP 440 range, matching ``pyproject.toml``), the module it waits for, and what goes wrong
without it. :func:`install` (run by ``import visdet_mmext``) arranges for each in-range patch to run
once, right after its module is first imported (at once if it already is), without importing
anything itself. Out of range, or with the package absent, a patch is skipped and says so.
``python -m visdet_mmext list --json`` lists every patch with its state. Known third-party log
messages that say nothing actionable are filtered at their own logger (``noise``).

A patch that fails in range raises: these fixes close security and correctness holes, and a half
patched library must not train silently.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from .post_import import when_imported

logger = logging.getLogger("visdet_mmext")

#: The modules that declare patches (imported by install(); each is light at import time).
PATCH_MODULES = (
    "mmengine_constructor", "mmengine_checkpoint", "mmengine_deepspeed", "mmengine_flexible_runner",
    "deepspeed_checkpoint", "deepspeed_build_lock", "deepspeed_build_announce", "deepspeed_muon",
    "mmengine_file_client", "mmengine_adafactor_notice", "mmengine_runner_hooks",
    "mmengine_runner_onebit", "mmengine_fully_shard", "mmengine_runner_resume",
    "mmengine_save_failure", "mmengine_empty_train_data", "deepspeed_save_together",
)


@dataclass(frozen=True)
class Patch:
    name: str
    package: str  # distribution name, as pip knows it
    versions: str  # PEP 440 specifier of the versions this patch is written for
    module: str  # the patch runs right after this module executes
    fixes: str  # what goes wrong without it, in one sentence
    apply: Callable[[object], None]

    def covers(self, version: str) -> bool:
        return SpecifierSet(self.versions).contains(Version(version), prereleases=True)


PATCHES: dict[str, Patch] = {}
_states: dict[str, str] = {}
_lock = threading.Lock()


def patch(*, package: str, versions: str, module: str, fixes: str):
    """Declare the decorated function ``fn(module)`` as a patch of ``package``."""
    def declare(fn: Callable[[object], None]) -> Callable[[object], None]:
        PATCHES[fn.__name__] = Patch(fn.__name__, package, versions, module, " ".join(fixes.split()), fn)
        return fn
    return declare


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(declared: Patch, module) -> None:
    try:
        declared.apply(module)
    except Exception as error:
        _states[declared.name] = f"failed: {type(error).__name__}: {error}"
        raise RuntimeError(f"visdet_mmext could not apply its fix {declared.name!r} to "
                           f"{declared.package} {installed_version(declared.package)}: {error}. "
                           f"Without it: {declared.fixes}") from error
    _states[declared.name] = "applied"


def install() -> None:
    """Schedule every in-range patch and filter known third-party noise (idempotent)."""
    from . import noise
    noise.install()
    for name in PATCH_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    with _lock:
        todo = [p for p in PATCHES.values() if p.name not in _states]
        for declared in todo:
            version = installed_version(declared.package)
            if version is None:
                _states[declared.name] = f"skipped: {declared.package} is not installed"
            elif not declared.covers(version):
                _states[declared.name] = (f"skipped: {declared.package} {version} is outside "
                                          f"{declared.versions}")
                logger.warning("visdet_mmext: fix %r is written for %s %s, installed %s: not "
                               "applied (%s)", declared.name, declared.package, declared.versions,
                               version, declared.fixes)
            else:
                _states[declared.name] = f"waiting for {declared.module}"
    for declared in todo:
        if _states[declared.name].startswith("waiting"):
            when_imported(declared.module, functools.partial(_run, declared))


def state(name: str) -> str:
    return _states.get(name, "not installed")


def report() -> list[dict]:
    """Every declared patch and its state here (for ``list --json``)."""
    return [dict(name=p.name, package=p.package, versions=p.versions,
                 installed=installed_version(p.package), module=p.module, state=state(p.name),
                 fixes=p.fixes) for p in PATCHES.values()]


def replace_attribute(owner, name: str, make_replacement: Callable):
    """``owner.<name> = make_replacement(original)``, keeping the original as ``__wrapped__``."""
    original = getattr(owner, name)
    replacement = functools.wraps(original)(make_replacement(original))
    setattr(owner, name, replacement)
    return original
