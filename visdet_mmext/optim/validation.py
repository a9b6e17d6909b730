"""Clear errors for a bad ``optim_wrapper`` config, raised before training starts.

mmengine reports an unknown optimizer as ``TypeError: None is not a callable object``, a typo in
``clip_grad`` at the first step, and many bad values never (they train). Here every part of an
``optim_wrapper`` is checked: the wrapper type and its settings, ``constructor``, ``clip_grad``,
``accumulative_counts``, the optimizer's name and each setting (typed from the optimizer's own
signature: numbers finite and not bool, tuples of the right length, ranges of lr, eps, decay,
momentum and betas), and ``paramwise_cfg`` with its ``custom_keys``. Each error names the fix and
the closest valid names.
"""
from __future__ import annotations

import inspect
import logging
import math
import numbers
import re
import sys
from collections.abc import Mapping

from mmengine.logging import print_log
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from ..catalog import CATALOG
from ..echo import echo
from ..errors import NeedsCudaError, OptimizerConfigError
from ..registry.availability import NEEDS_CUDA
from ..registry.lazy import resolve_registered
from ..registry.loader import load_providers
from ..registry.scopes import warn_if_shadowed
from ..suggest import closest_names, did_you_mean

#: paramwise_cfg keys mmengine's DefaultOptimWrapperConstructor reads.
MMENGINE_PARAMWISE_KEYS = ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult",
                           "dwconv_decay_mult", "flat_decay_mult", "dcn_offset_lr_mult",
                           "custom_keys", "bypass_duplicate")
#: paramwise_cfg keys this package adds (VisdetOptimWrapperConstructor).
PACKAGE_PARAMWISE_KEYS = ("muon",)
#: custom_keys entries: mmengine's multipliers, this package's Muon flag, and any optimizer
#: setting (mmengine copies every key of the entry into the param group).
CUSTOM_KEY_FLAGS = ("lr_mult", "decay_mult", "use_muon")
CLIP_GRAD_KEYS = {"norm": ("type", "max_norm", "norm_type", "error_if_nonfinite", "foreach"),
                  "value": ("type", "clip_value", "foreach")}
#: optim_wrapper keys taken by mmengine's build_optim_wrapper itself.
BUILD_KEYS = ("type", "optimizer", "constructor", "paramwise_cfg")
LISTING = " Run `python -m visdet_mmext list` to see every name and its status."


def _suggestion(name: str) -> str:
    close = closest_names(name, load_providers().usable_names())
    return f" Closest available names: {', '.join(close)}." if close else ""


# -- values -----------------------------------------------------------------------------------

def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(where: str, value, low: float | None = None, high: float | None = None,
            high_open: bool = False, integer: bool = False, shown=None, low_open: bool = False,
            infinite: bool = False) -> None:
    """Refuse a value that is not a finite number (bool is not one) in [low, high]; messages
    show ``shown`` (the whole setting, for an entry of a tuple). ``infinite``: +-inf is allowed
    (a setting whose default is inf)."""
    kind = "an integer" if integer else "a number"
    subject = f"{where}={echo(value)}" if shown is None else f"{where}={echo(shown)}: entry {echo(value)}"
    if not _is_number(value) or (integer and not isinstance(value, numbers.Integral)):
        raise OptimizerConfigError(f"{subject} must be {kind}"
                                   f"{' (True/False are not numbers)' if isinstance(value, bool) else ''}.")
    if isinstance(value, numbers.Integral) and abs(value) > sys.float_info.max:
        # an int compares with a float exactly, where float(value) would overflow
        raise OptimizerConfigError(f"{subject} is too large: settings are floats, at most "
                                   f"{sys.float_info.max:.3g}.")
    if math.isnan(value) or (math.isinf(value) and not infinite):
        raise OptimizerConfigError(f"{subject} must be finite.")
    too_high = high is not None and (value >= high if high_open else value > high)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or too_high:
        bound = f"{'>' if low_open else '>='} {low}" if low is not None else ""
        if high is not None:
            bound += f"{' and ' if bound else ''}{'<' if high_open else '<='} {high}"
        raise OptimizerConfigError(f"{subject} is out of range: expected {bound}.")


def _key_rule(key: str):
    """Range rules by setting name (also for Muon's ``adamw_*`` settings)."""
    last = key.rsplit("_", 1)[-1] if key.startswith("adamw_") else key
    if key.endswith("weight_decay"):
        return dict(low=0.0)
    if last in ("lr", "eps"):
        return dict(low=0.0)
    if last == "momentum":
        return dict(low=0.0, high=1.0)
    if key in ("ns_steps", "max_iter", "history_size"):
        return dict(low=1, integer=True)
    if key == "min_8bit_size":
        return dict(low=0, integer=True)
    if key in ("d0", "d_coef"):  # D-Adaptation / Prodigy: the step is d * lr, and d starts at d0
        return dict(low=0.0, low_open=True)  # and grows by d_coef: 0 freezes every step size
    return {}


def _annotation(parameter: inspect.Parameter | None) -> str:
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return ""
    return str(parameter.annotation)


def _types(annotation: str) -> set[str]:
    """Type names an annotation mentions, e.g. ``'float | None'`` -> {'float'}."""
    return set(re.findall(r"[A-Za-z_]+", annotation)) - {"None", "Optional", "typing", "Union", "torch"}


def check_value(where: str, key: str, value, parameter: inspect.Parameter | None = None) -> None:
    """Check one setting by its name's rule and the signature's default and annotation."""
    default = inspect.Parameter.empty if parameter is None else parameter.default
    annotation = _annotation(parameter)
    types = _types(annotation)
    label = f"{where}: {key}"
    numeric_default = isinstance(default, (tuple, list)) and default and all(map(_is_number, default))
    if key.endswith("betas") or numeric_default:
        expected = len(default) if numeric_default else 2
        example = tuple(default) if numeric_default else (0.9, 0.999)
        betas = key.endswith("betas")
        if not isinstance(value, (tuple, list)) or len(value) != expected:
            raise OptimizerConfigError(f"{label}={echo(value)} must be a tuple of {expected} numbers"
                                       f"{' in [0, 1)' if betas else ''}, e.g. {example}.")
        for item in value:
            _number(label, item, 0.0 if betas else None, 1.0 if betas else None, high_open=True,
                    shown=value)
        return
    if value is None:
        if default is None or not annotation or "None" in annotation or "Optional" in annotation:
            return
        raise OptimizerConfigError(f"{label}=None is not allowed; the default is {default!r}.")
    if isinstance(default, bool) or types == {"bool"}:
        if not isinstance(value, bool):
            raise OptimizerConfigError(f"{label}={echo(value)} must be True or False.")
        return
    rule = dict(_key_rule(key))
    if rule or _is_number(default) or (types and types <= {"float", "int", "Tensor"}):
        if isinstance(value, str) and "str" in types:
            return
        integer = rule.pop("integer", False) or types == {"int"}
        infinite = _is_number(default) and math.isinf(default)
        _number(label, value, integer=integer, infinite=infinite, **rule)


# -- optimizer --------------------------------------------------------------------------------

def resolve_optimizer_type(optimizer_type):
    """The class (or builder) that ``optimizer=dict(type=...)`` names, or a clear error."""
    if not isinstance(optimizer_type, str):
        if callable(optimizer_type):
            return optimizer_type
        raise OptimizerConfigError(f"optimizer type must be a registered name or a class, "
                                   f"got {echo(optimizer_type)}")
    with OPTIMIZERS.switch_scope_and_registry(None) as registry:
        found = registry.get(optimizer_type)
    if found is not None:
        warn_if_shadowed(OPTIMIZERS, registry, optimizer_type)
        try:  # an optional package is imported here, to check the settings against its class
            return resolve_registered(found)
        except NeedsCudaError:  # check_device refuses it, naming the model's device
            return found
    info = load_providers().availability(optimizer_type)
    if optimizer_type in CATALOG and info is not None:
        spec = CATALOG[optimizer_type]
        raise OptimizerConfigError(
            f"Optimizer {echo(optimizer_type)} is not available here: {info.status}"
            f"{' (' + info.reason + ')' if info.reason else ''}. Install it with: "
            f"{spec.install_hint}.{_suggestion(optimizer_type)}{LISTING}")
    raise OptimizerConfigError(f"Unknown optimizer {echo(optimizer_type)}.{_suggestion(optimizer_type)}"
                               f"{LISTING}")


def signature_parameters(optimizer_cls) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters the optimizer accepts; None when unknown (``**kwargs``).

    A catalog row marked ``swallows_kwargs`` (pytorch-optimizer's classes put unknown keywords in
    the param groups and ignore them) is checked against its named parameters.
    """
    try:
        parameters = inspect.signature(optimizer_cls).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        spec = CATALOG.spec_of(optimizer_cls) if isinstance(optimizer_cls, type) else None
        if spec is None or not spec.swallows_kwargs:
            return None
        parameters = {n: p for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD}
    return {name: p for name, p in parameters.items() if name not in ("params", "model_params")}


def check_optimizer_cfg(optimizer_cfg) -> object:
    """Resolve ``optimizer_cfg['type']`` and check every setting; return the class."""
    if not isinstance(optimizer_cfg, Mapping) or "type" not in optimizer_cfg:
        raise OptimizerConfigError("optim_wrapper.optimizer must be a dict with a 'type' key, "
                                   f"got {echo(optimizer_cfg)}")
    optimizer_type = optimizer_cfg["type"]
    optimizer_cls = resolve_optimizer_type(optimizer_type)
    name = optimizer_type if isinstance(optimizer_type, str) else optimizer_cls.__name__
    parameters = signature_parameters(optimizer_cls)
    for key, value in optimizer_cfg.items():
        if key == "type":
            continue
        if parameters is not None and key not in parameters:
            raise OptimizerConfigError(f"{name} has no setting {echo(key)}.{did_you_mean(key, parameters)} "
                                       f"It accepts: {', '.join(sorted(parameters))}.")
        check_value(name, key, value, (parameters or {}).get(key))
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


def check_sharded_cfg(optim_wrapper_cfg) -> None:
    """:func:`check_sharded` for the optimizer of each wrapper an ``optim_wrapper`` config builds."""
    if not isinstance(optim_wrapper_cfg, Mapping):
        return
    optimizer = optim_wrapper_cfg.get("optimizer")
    if isinstance(optimizer, Mapping):
        check_sharded(optimizer.get("type"))
    elif optimizer is None and "constructor" not in optim_wrapper_cfg:
        for value in optim_wrapper_cfg.values():  # one wrapper config per name
            check_sharded_cfg(value)


def check_sharded(optimizer_type) -> None:
    """Refuse an optimizer whose catalog row says it cannot step FSDP2 shards exactly (by name,
    or by class; nothing is imported or built)."""
    spec = CATALOG.get(optimizer_type) if isinstance(optimizer_type, str) else \
        CATALOG.spec_of(optimizer_type) if isinstance(optimizer_type, type) else None
    if spec is not None and spec.fsdp_impossible is not None:
        raise OptimizerConfigError(
            f"{spec.name} cannot train FSDP2-sharded parameters exactly: it "
            f"{spec.fsdp_impossible.reason}. Fix: {spec.fsdp_impossible.fix}.")


# -- paramwise_cfg ----------------------------------------------------------------------------

def check_paramwise_cfg(paramwise_cfg, optimizer_cls, name: str, *,
                        package_keys: bool = False) -> None:
    """Keys known, multipliers numbers >= 0, ``custom_keys`` entries dicts of known keys.

    ``package_keys``: this package's keys (``muon``) are allowed (its constructor reads them).
    """
    if not paramwise_cfg:
        return
    if not isinstance(paramwise_cfg, Mapping):
        raise OptimizerConfigError(f"paramwise_cfg must be a dict, got {echo(paramwise_cfg)}.")
    known = MMENGINE_PARAMWISE_KEYS + (PACKAGE_PARAMWISE_KEYS if package_keys else ())
    for key, value in paramwise_cfg.items():
        if key in PACKAGE_PARAMWISE_KEYS and not package_keys:
            raise OptimizerConfigError(
                f"paramwise_cfg.{key} is read by this package's constructor only: add "
                f"constructor='VisdetOptimWrapperConstructor' to optim_wrapper (without it the "
                "setting would be ignored).")
        if key not in known:
            raise OptimizerConfigError(f"paramwise_cfg has no key {echo(key)}.{did_you_mean(key, known)} "
                                       f"Known keys: {', '.join(known)}.")
        if key.endswith("_mult"):
            _number(f"paramwise_cfg.{key}", value, low=0.0)
        elif key == "bypass_duplicate" and not isinstance(value, bool):
            raise OptimizerConfigError(f"paramwise_cfg.bypass_duplicate={echo(value)} must be True or False.")
        elif key == "custom_keys":
            _check_custom_keys(value, optimizer_cls, name)


def _check_custom_keys(custom_keys, optimizer_cls, name: str) -> None:
    if not isinstance(custom_keys, Mapping):
        raise OptimizerConfigError(f"paramwise_cfg.custom_keys must be a dict of "
                                   f"{{name substring: dict(lr_mult=..., ...)}}, got {echo(custom_keys)}.")
    parameters = signature_parameters(optimizer_cls)
    accepted = set(CUSTOM_KEY_FLAGS) | set(parameters or ())
    for pattern, entry in custom_keys.items():
        where = f"paramwise_cfg.custom_keys[{echo(pattern)}]"
        if not isinstance(pattern, str):
            raise OptimizerConfigError(f"{where}: keys are parameter-name substrings (str).")
        if not isinstance(entry, Mapping):
            raise OptimizerConfigError(f"{where}={echo(entry)} must be a dict such as "
                                       "dict(lr_mult=0.1, decay_mult=0.0).")
        for key, value in entry.items():
            if parameters is not None and key not in accepted:
                raise OptimizerConfigError(
                    f"{where} has no key {echo(key)}.{did_you_mean(key, accepted)} An entry takes "
                    f"lr_mult, decay_mult, use_muon or a setting of {name}.")
            if key == "use_muon":
                if not isinstance(value, bool):
                    raise OptimizerConfigError(f"{where}: use_muon={echo(value)} must be True or False.")
            elif key in ("lr_mult", "decay_mult"):
                _number(f"{where}: {key}", value, low=0.0)
            else:
                check_value(where, key, value, (parameters or {}).get(key))


def check_decay_mults(paramwise_cfg, optimizer_cfg: Mapping, name: str) -> None:
    """A decay multiplier needs the ``weight_decay`` it multiplies: mmengine's constructor
    raises a bare ``ValueError('base_wd should not be None')`` (bias, norm, depthwise and
    custom_keys multipliers) or ignores it (``flat_decay_mult``)."""
    if not isinstance(paramwise_cfg, Mapping) or "weight_decay" in optimizer_cfg:
        return
    given = [f"{key}={echo(paramwise_cfg[key])}" for key in MMENGINE_PARAMWISE_KEYS
             if key.endswith("_decay_mult") and key in paramwise_cfg]
    given += [f"custom_keys[{echo(pattern)}].decay_mult={echo(entry['decay_mult'])}"
              for pattern, entry in (paramwise_cfg.get("custom_keys") or {}).items()
              if isinstance(entry, Mapping) and "decay_mult" in entry]
    if given:
        raise OptimizerConfigError(
            f"paramwise_cfg.{given[0]} multiplies the optimizer's weight_decay, and optimizer="
            f"dict(type={echo(name)}, ...) sets none: add weight_decay=... to optimizer (e.g. "
            f"weight_decay=0.05), or remove {', '.join(g.partition('=')[0] for g in given)}.")


def warn_unmatched_keys(paramwise_cfg, names: list[str]) -> list[str]:
    """Warn about ``custom_keys`` entries that match no parameter (a typo trains silently)."""
    warnings = []
    for pattern in (paramwise_cfg or {}).get("custom_keys", {}):
        if not any(pattern in name for name in names):
            close = closest_names(pattern, names, n=3, cutoff=0.3)
            warnings.append(f"paramwise_cfg.custom_keys[{echo(pattern)}] matches no parameter name"
                            f"{'; closest names: ' + ', '.join(close) if close else ''}. "
                            "A key applies to every parameter whose full name contains it.")
    for warning in warnings:
        print_log(warning, logger="current", level=logging.WARNING)
    return warnings


# -- the whole optim_wrapper ------------------------------------------------------------------

def _lookup(registry, name, scope: str | None):
    with registry.switch_scope_and_registry(scope) as found_in:
        found = found_in.get(name)
    if found is None and registry is OPTIM_WRAPPERS:
        import mmengine._strategy  # noqa: F401  (registers DeepSpeedOptimWrapper and friends)
        with registry.switch_scope_and_registry(scope) as found_in:
            found = found_in.get(name)
    return found


def _registered(registry, kind: str, name, scope: str | None):
    if not isinstance(name, str):
        return name
    found = _lookup(registry, name, scope)
    if found is None:
        raise OptimizerConfigError(
            f"optim_wrapper {kind}={echo(name)} is not registered.{did_you_mean(name, registry.module_dict)}"
            f" Registered: {', '.join(sorted(registry.module_dict))}.")
    return found


def _wrapper_parameters(wrapper_cls) -> set[str] | None:
    """Keywords a wrapper accepts, following ``**kwargs`` up its bases; None when unknown."""
    accepted: set[str] = set()
    for cls in inspect.getmro(wrapper_cls):
        if "__init__" not in vars(cls):
            continue
        try:
            parameters = inspect.signature(cls.__init__).parameters
        except (TypeError, ValueError):
            return None
        accepted |= {n for n, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return accepted - {"self", "optimizer"}
    return None


def check_wrapper_settings(wrapper_cfg: Mapping, scope: str | None = None) -> None:
    """The wrapper type, its settings, ``clip_grad`` and ``accumulative_counts``."""
    wrapper_cls = _registered(OPTIM_WRAPPERS, "type", wrapper_cfg.get("type", "OptimWrapper"), scope)
    _check_amp(wrapper_cls)
    accepted = _wrapper_parameters(wrapper_cls) if isinstance(wrapper_cls, type) else None
    for key in wrapper_cfg:
        if key in BUILD_KEYS or accepted is None or key in accepted:
            continue
        raise OptimizerConfigError(
            f"optim_wrapper has no setting {echo(key)} ({getattr(wrapper_cls, '__name__', wrapper_cls)})."
            f"{did_you_mean(key, set(accepted) | set(BUILD_KEYS))} It accepts: "
            f"{', '.join(sorted(set(accepted) | set(BUILD_KEYS)))}.")
    if "accumulative_counts" in wrapper_cfg:
        _number("optim_wrapper.accumulative_counts", wrapper_cfg["accumulative_counts"], low=1,
                integer=True)
    clip = wrapper_cfg.get("clip_grad")
    if clip is not None:
        _check_clip_grad(clip)


def _check_amp(wrapper_cls) -> None:
    """mmengine's AmpOptimWrapper asserts a GPU (or NPU/MLU/MUSA) when it is built."""
    from mmengine.optim import AmpOptimWrapper
    from mmengine.device import get_device
    if isinstance(wrapper_cls, type) and issubclass(wrapper_cls, AmpOptimWrapper) and \
            get_device() == "cpu":
        raise OptimizerConfigError(
            f"optim_wrapper type {wrapper_cls.__name__!r} (mixed precision) needs a GPU, and this "
            "machine has none: use type='OptimWrapper' (and drop loss_scale/dtype) to train on CPU.")


def _check_clip_grad(clip) -> None:
    if not isinstance(clip, Mapping):
        raise OptimizerConfigError(f"optim_wrapper.clip_grad={echo(clip)} must be a dict such as "
                                   "dict(max_norm=1.0) or dict(type='value', clip_value=0.5).")
    kind = clip.get("type", "norm")
    if kind not in CLIP_GRAD_KEYS:
        raise OptimizerConfigError(f"optim_wrapper.clip_grad.type={echo(kind)}: use 'norm' or 'value'.")
    for key in clip:
        if key not in CLIP_GRAD_KEYS[kind]:
            raise OptimizerConfigError(
                f"optim_wrapper.clip_grad has no key {echo(key)} for type {echo(kind)}."
                f"{did_you_mean(key, CLIP_GRAD_KEYS[kind])} It takes: {', '.join(CLIP_GRAD_KEYS[kind])}.")
    needed = "max_norm" if kind == "norm" else "clip_value"
    if needed not in clip:
        raise OptimizerConfigError(f"optim_wrapper.clip_grad needs {needed} for type {echo(kind)}.")
    _number(f"optim_wrapper.clip_grad.{needed}", clip[needed], low=0.0)
    if kind == "norm" and "norm_type" in clip and clip["norm_type"] not in ("inf", float("inf")):
        _number("optim_wrapper.clip_grad.norm_type", clip["norm_type"], low=0.0)


def _check_one(cfg: Mapping, scope: str | None) -> None:
    if "optimizer" not in cfg:
        raise OptimizerConfigError("optim_wrapper needs an 'optimizer' dict, e.g. "
                                   "optimizer=dict(type='AdamW', lr=1e-3).")
    constructor = _registered(OPTIM_WRAPPER_CONSTRUCTORS, "constructor",
                              cfg.get("constructor", "DefaultOptimWrapperConstructor"), scope)
    package_keys = bool(getattr(constructor, "reads_package_settings", False))
    if "base" in cfg and not package_keys:
        raise OptimizerConfigError("optim_wrapper.base is read by this package's constructor only: "
                                   "add constructor='VisdetOptimWrapperConstructor' to optim_wrapper.")
    check_wrapper_settings({k: v for k, v in cfg.items() if k != "base"}, scope)
    optimizer_cls = check_optimizer_cfg(cfg["optimizer"])
    name = cfg["optimizer"]["type"] if isinstance(cfg["optimizer"]["type"], str) else \
        getattr(optimizer_cls, "__name__", "optimizer")
    if "base" not in cfg:  # a base constructor checks its own paramwise_cfg keys
        check_paramwise_cfg(cfg.get("paramwise_cfg"), optimizer_cls, name,
                            package_keys=package_keys)
        check_decay_mults(cfg.get("paramwise_cfg"), cfg["optimizer"], name)


def check_optim_wrapper_cfg(optim_wrapper_cfg, scope: str | None = None) -> None:
    """Check a whole ``optim_wrapper`` config (one wrapper, or a dict of them)."""
    if not isinstance(optim_wrapper_cfg, Mapping):
        raise OptimizerConfigError(f"optim_wrapper must be a dict, got {echo(optim_wrapper_cfg)}.")
    if "optimizer" in optim_wrapper_cfg or "type" in optim_wrapper_cfg or \
            "constructor" not in optim_wrapper_cfg and not any(
                isinstance(v, Mapping) and "optimizer" in v for v in optim_wrapper_cfg.values()):
        _check_one(optim_wrapper_cfg, scope)
        return
    for name, sub in optim_wrapper_cfg.items():  # an OptimWrapperDict config
        if isinstance(sub, Mapping) and "optimizer" in sub:
            try:
                _check_one(sub, scope)
            except OptimizerConfigError as error:
                raise OptimizerConfigError(f"optim_wrapper.{name}: {error}") from None
