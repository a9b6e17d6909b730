"""Run a function right after a named module has executed, without importing it first.

``import visdet_mmext`` must neither import DeepSpeed (slow, picks an accelerator) nor
register a strategy name before mmengine does (mmengine registers ``DeepSpeedStrategy``
without ``force`` when ``mmengine._strategy.deepspeed`` executes, so an earlier name makes
that import raise ``KeyError``). So the fixes wait for mmengine's own module:

* already imported -> the callback runs at once;
* not yet imported -> a finder placed first on ``sys.meta_path`` wraps the loader of exactly
  that module; when the module body has run, the callback gets the module. The finder then
  removes itself.

A callback that raises is logged and does not break the host import.
"""
from __future__ import annotations

import functools
import importlib.abc
import logging
import sys
import threading
from collections.abc import Callable

logger = logging.getLogger("visdet_mmext")

Callback = Callable[[object], None]

_lock = threading.RLock()
_pending: dict[str, list[Callback]] = {}
_done: dict[str, list[Callback]] = {}


def _run(callback: Callback, module) -> None:
    try:
        callback(module)
    except Exception:  # never break the host package's import
        logger.exception("visdet_mmext: post-import fix %r for %s failed", callback, module.__name__)


class _Loader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the callbacks waiting for the module."""

    def __init__(self, wrapped, name: str):
        self._wrapped = wrapped
        self._name = name

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module) -> None:
        self._wrapped.exec_module(module)
        with _lock:
            callbacks = _pending.pop(self._name, [])
            _done.setdefault(self._name, []).extend(callbacks)
            _uninstall_finder_if_idle()
        for callback in callbacks:
            _run(callback, module)

    def __getattr__(self, attribute):  # get_source, is_package, ... for tools that ask
        return getattr(self._wrapped, attribute)


class _Finder(importlib.abc.MetaPathFinder):

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader, fullname)
        return spec


_finder = _Finder()


def _uninstall_finder_if_idle() -> None:
    if not _pending and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``name`` has executed (now, if it already has)."""
    with _lock:
        if callback in _done.get(name, ()) or callback in _pending.get(name, ()):
            return  # idempotent: ``install()`` may run more than once
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(callback)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
            return
        _done.setdefault(name, []).append(callback)
    _run(callback, module)


def pending() -> list[str]:
    """Module names whose fixes still wait for their import (for tests and reports)."""
    with _lock:
        return sorted(_pending)


def wrap_once(owner, name: str, make_wrapper: Callable):
    """Replace ``owner.<name>`` by ``make_wrapper(original)`` unless this package already did.

    Returns the original, or None when it was wrapped before (fixes may be applied twice).
    """
    original = getattr(owner, name)
    if getattr(original, "_visdet_mmext_wrapped", False):
        return None
    wrapper = functools.wraps(original)(make_wrapper(original))
    wrapper._visdet_mmext_wrapped = True
    setattr(owner, name, wrapper)
    return original
