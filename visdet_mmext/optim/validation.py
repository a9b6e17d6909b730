"""Clear errors for bad optimizer configs, raised before training starts.

mmengine reports an unknown ``type`` as ``TypeError: None is not a callable object`` and a
bad hyperparameter whenever the optimizer happens to check it. Here every problem names
the optimizer, the reason, the fix (the extra to install) and the closest valid names.
"""
from __future__ import annotations

import difflib
import inspect
import numbers

from mmengine.registry import OPTIMIZERS

from .availability import NEEDS_CUDA
from .catalog import CATALOG_BY_NAME
from .loader import load_providers


class OptimizerConfigError(ValueError):
    """The optimizer part of an ``optim_wrapper`` config cannot work."""


def closest_names(name: str, candidates, n: int = 5) -> list[str]:
    candidates = sorted(set(candidates))
    same_letters = [c for c in candidates if c.lower() == name.lower() and c != name]
    similar = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    lowered = {c.lower(): c for c in candidates}
    similar += [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=n,
                                                              cutoff=0.5)]
    return list(dict.fromkeys(same_letters + similar))[:n]


def _suggestion(name: str) -> str:
    report = load_providers()
    close = closest_names(name, report.usable_names())
    return f" Closest available names: {', '.join(close)}." if close else ""


def resolve_optimizer_type(optimizer_type):
    """The class (or builder) that ``optimizer=dict(type=...)`` names, or a clear error."""
    if not isinstance(optimizer_type, str):
        if callable(optimizer_type):
            return optimizer_type
        raise OptimizerConfigError(f"optimizer type must be a registered name or a class, "
                                   f"got {optimizer_type!r}")
    with OPTIMIZERS.switch_scope_and_registry(None) as registry:
        found = registry.get(optimizer_type)
    if found is not None:
        return found
    info = load_providers().availability(optimizer_type)
    listing = " Run `python -m visdet_mmext list` to see every name and its status."
    if optimizer_type in CATALOG_BY_NAME and info is not None:
        spec = CATALOG_BY_NAME[optimizer_type]
        raise OptimizerConfigError(
            f"Optimizer {optimizer_type!r} is not available here: {info.status}"
            f"{' (' + info.reason + ')' if info.reason else ''}. Install it with: "
            f"{spec.install_hint}.{_suggestion(optimizer_type)}{listing}")
    raise OptimizerConfigError(f"Unknown optimizer {optimizer_type!r}.{_suggestion(optimizer_type)}"
                               f"{listing}")


def _accepted_arguments(optimizer_cls) -> set[str] | None:
    """Keyword names the optimizer accepts; None when it takes ``**kwargs``."""
    target = getattr(optimizer_cls, "lazy_spec", None)
    if target is not None:  # a lazy DeepSpeed builder: do not import DeepSpeed just to check
        return None
    try:
        parameters = inspect.signature(optimizer_cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _check_range(name: str, key: str, value, low: float, high: float | None, closed_high: bool):
    values = value if isinstance(value, (tuple, list)) else (value,)
    for item in values:
        if item is None:
            continue
        if not isinstance(item, numbers.Real):
            raise OptimizerConfigError(f"{name}: {key}={value!r} must be a number")
        too_high = high is not None and (item > high if closed_high else item >= high)
        if item < low or too_high:
            bound = "" if high is None else f" and {'<=' if closed_high else '<'} {high}"
            raise OptimizerConfigError(f"{name}: {key}={value!r} is out of range: expected >= {low}"
                                       f"{bound}.")


#: key -> (low, high, high is allowed). Only checked when present in the config.
RANGES = {
    "lr": (0.0, None, True),
    "weight_decay": (0.0, None, True),
    "eps": (0.0, None, True),
    "momentum": (0.0, 1.0, True),
    "betas": (0.0, 1.0, False),
}


def check_optimizer_cfg(optimizer_cfg: dict, *, skip: tuple[str, ...] = ()):
    """Resolve ``optimizer_cfg['type']`` and check the hyperparameters; return the class."""
    if not isinstance(optimizer_cfg, dict) or "type" not in optimizer_cfg:
        raise OptimizerConfigError("optim_wrapper.optimizer must be a dict with a 'type' key, "
                                   f"got {optimizer_cfg!r}")
    optimizer_type = optimizer_cfg["type"]
    optimizer_cls = resolve_optimizer_type(optimizer_type)
    name = optimizer_type if isinstance(optimizer_type, str) else optimizer_cls.__name__
    settings = {k: v for k, v in optimizer_cfg.items() if k != "type" and k not in skip}
    accepted = _accepted_arguments(optimizer_cls)
    if accepted is not None:
        for key in settings:
            if key not in accepted:
                close = closest_names(key, accepted - {"params", "model_params"}, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise OptimizerConfigError(f"{name} has no setting {key!r}.{hint} It accepts: "
                                           f"{', '.join(sorted(accepted - {'params'}))}.")
    for key, (low, high, closed) in RANGES.items():
        if key in settings:
            _check_range(name, key, settings[key], low, high, closed)
    return optimizer_cls


def check_device(optimizer_type, device) -> None:
    """Refuse an optimizer that cannot step on the model's device (e.g. CUDA-only kernels)."""
    if not isinstance(optimizer_type, str):
        return
    info = load_providers().availability(optimizer_type)
    if info is not None and info.status == NEEDS_CUDA and device.type != "cuda":
        raise OptimizerConfigError(
            f"Optimizer {optimizer_type!r} needs CUDA ({info.reason}), but the model's parameters "
            f"are on {device.type}.{_suggestion(optimizer_type)}")


def check_optim_wrapper_cfg(optim_wrapper_cfg: dict) -> None:
    """Check every optimizer of an ``optim_wrapper`` config (tools/train.py calls this)."""
    if "optimizer" in optim_wrapper_cfg:
        check_optimizer_cfg(optim_wrapper_cfg["optimizer"])
        return
    for name, sub in optim_wrapper_cfg.items():  # an OptimWrapperDict config
        if isinstance(sub, dict) and "optimizer" in sub:
            try:
                check_optimizer_cfg(sub["optimizer"])
            except OptimizerConfigError as error:
                raise OptimizerConfigError(f"optim_wrapper.{name}: {error}") from None
