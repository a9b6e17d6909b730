"""Catalog names under a downstream scope: the same name may build another package's class.

mmengine looks a name up in the config's ``default_scope`` registry first (mmpretrain registers
its own ``LARS``, ``Lamb`` and ``Adan``), then in mmengine's. The catalog's names are registered in
mmengine's root registry, so under such a scope a catalog name can build a different class. That
is the downstream package's right; it is reported, once per name and scope, with both spellings
that choose explicitly: ``'mmengine.NAME'`` (the catalog's) and ``'SCOPE.NAME'`` (theirs).
"""
from __future__ import annotations

import importlib
import logging

from ..catalog import CATALOG
from ..errors import OptimizerConfigError
from .availability import qualified_name

_reported: set[tuple[str, str]] = set()


def scope_registry(root, scope: str):
    """The registry of ``scope`` below ``root``, importing ``<scope>.registry`` as mmengine does."""
    if scope == root.scope:
        return root
    try:
        importlib.import_module(f"{scope}.registry")
    except ImportError as error:
        raise OptimizerConfigError(f"scope {scope!r}: cannot import {scope}.registry ({error}); "
                                   f"is the package {scope!r} installed?") from error
    registry = root._search_child(scope)
    if registry is None:
        raise OptimizerConfigError(f"scope {scope!r}: {scope}.registry defines no "
                                   f"{root.name!r} registry below mmengine's.")
    return registry


def shadowing(root, registry, name: str):
    """``(catalog's class, scope's class)`` when ``registry`` resolves a catalog name to another
    class than mmengine's root registry does, else None."""
    if registry is root or name not in CATALOG:
        return None
    ours = root.module_dict.get(name)
    theirs = registry.get(name)
    if ours is None or theirs is None or theirs is ours:
        return None
    return ours, theirs


def explain(name: str, scope: str, ours, theirs) -> str:
    return (f"under default_scope={scope!r}, type={name!r} builds {qualified_name(theirs)} "
            f"(registered by {scope}), not the catalog's {qualified_name(ours)}. Write "
            f"type='mmengine.{name}' for the catalog's class, or type='{scope}.{name}' to keep "
            f"{scope}'s and silence this message.")


def warn_if_shadowed(root, registry, name: str) -> None:
    """Log (once per name and scope) that the scope resolves ``name`` to another class."""
    found = shadowing(root, registry, name)
    if found is None or (registry.scope, name) in _reported:
        return
    _reported.add((registry.scope, name))
    from mmengine.logging import print_log
    print_log(explain(name, registry.scope, *found), logger="current", level=logging.WARNING)
