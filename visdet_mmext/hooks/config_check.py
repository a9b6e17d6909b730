"""The config's hooks checked before the Runner is built.

mmengine builds ``custom_hooks`` and ``default_hooks`` inside ``Runner.__init__``; a misspelt
type there ends in a KeyError with a traceback. Here it is a ``HookConfigError`` naming the
closest registered hooks.
"""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..errors import HookConfigError
from ..optim.validation import closest_names


def _entries(cfg) -> list[tuple[str, object]]:
    entries = [(f"custom_hooks[{i}]", hook) for i, hook in enumerate(cfg.get("custom_hooks") or [])]
    entries += [(f"default_hooks.{name}", hook)
                for name, hook in (cfg.get("default_hooks") or {}).items()]
    return entries


def _names_in_reach(registry) -> set[str]:
    """What ``registry.get`` can find by a plain name: its own hooks and its parents'."""
    names: set[str] = set()
    while registry is not None:
        names |= set(registry.module_dict)
        registry = registry.parent
    return names


def check_hooks(cfg) -> None:
    """Every hook the config asks for is a dict with a registered ``type`` (in its scope)."""
    with HOOKS.switch_scope_and_registry(cfg.get("default_scope")) as registry:
        for where, hook in _entries(cfg):
            if hook is None or isinstance(hook, Hook):
                continue  # None turns a default hook off; a Hook object is built already
            if not isinstance(hook, dict):
                raise HookConfigError(f"{where}={hook!r} must be a dict (or a Hook object), e.g. "
                                      "dict(type='CheckpointHook', interval=1000).")
            kind = hook.get("type")
            if kind is None:
                raise HookConfigError(f"{where}={dict(hook)!r} has no 'type': name the hook, "
                                      "e.g. dict(type='CheckpointHook', interval=1000).")
            if isinstance(kind, str) and registry.get(kind) is None:
                close = closest_names(kind, _names_in_reach(registry), n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise HookConfigError(
                    f"{where}: type={kind!r} is not a registered hook.{hint} A hook from another "
                    "package needs that package in custom_imports (or its default_scope).")
