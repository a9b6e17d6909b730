"""Run a function right after a named module has executed, without importing it first.

``import visdet_mmext`` must neither import DeepSpeed (slow, picks an accelerator) nor register a
strategy name before mmengine does (mmengine registers ``DeepSpeedStrategy`` without ``force``),
so patches wait for their module:

* already imported -> the callback runs at once;
* not yet imported -> a finder placed first on ``sys.meta_path`` wraps the loader of exactly that
  module; when the module body has run, the callbacks get the module. The finder then removes
  itself.

A callback that raises makes that import fail, and stays pending: a retried import runs it again
(and fails again) rather than going on unpatched.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Callable

Callback = Callable[[object], None]

_lock = threading.RLock()
_pending: dict[str, list[Callback]] = {}


def _run_all(name: str, module, callbacks: list[Callback]) -> None:
    for index, callback in enumerate(callbacks):
        try:
            callback(module)
        except BaseException:
            with _lock:
                _pending.setdefault(name, [])[:0] = callbacks[index:]
                _install_finder()
            raise


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
            if not _pending and _finder in sys.meta_path:
                sys.meta_path.remove(_finder)
        _run_all(self._name, module, callbacks)

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


def _install_finder() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``name`` has executed (now, if it already has)."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(callback)
            _install_finder()
            return
    _run_all(name, module, [callback])
