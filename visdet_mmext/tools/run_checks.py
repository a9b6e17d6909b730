"""What the Runner builds besides the optim wrapper, checked before it is built.

mmengine meets these mistakes inside ``Runner.__init__``, or only at the first iterations (a
``LinearLR`` with ``start_factor=0`` divides by zero at the second step), as a KeyError,
ZeroDivisionError or FileNotFoundError with a traceback. Here each stops with a
``RunnerConfigError`` naming the fix, before anything is built.
"""
from __future__ import annotations

import os

import mmengine.runner  # noqa: F401  (registers mmengine's loops)
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS, LOOPS, MODELS, PARAM_SCHEDULERS

from ..errors import RunnerConfigError
from ..optim.validation import check_sharded_cfg, did_you_mean

#: Strategies that shard parameters with FSDP2 (DTensor).
SHARDING_STRATEGIES = ("FullyShardStrategy",)
#: Schedulers whose ``start_factor`` divides their later values (mmengine allows 0 in it).
LINEAR_SCHEDULERS = ("LinearLR", "LinearMomentum", "LinearParamScheduler")


def _names_in_reach(registry) -> set[str]:
    """What ``registry.get`` can find by a plain name: its own entries and its parents'."""
    names: set[str] = set()
    while registry is not None:
        names |= set(registry.module_dict)
        registry = registry.parent
    return names


def _check_type(where: str, spec, registry, scope: str | None) -> None:
    if spec is None or not isinstance(spec, (dict, str)):
        return  # None: left out (a default hook turned off); an object: built already
    if isinstance(spec, str):
        raise RunnerConfigError(f"{where}={spec!r} must be a dict, e.g. dict(type=...); a list "
                                "item given on the command line is read as a string.")
    kind = spec.get("type")
    if kind is None:
        raise RunnerConfigError(f"{where}={dict(spec)!r} has no 'type': name what to build.")
    if not isinstance(kind, str):
        return  # a class
    with registry.switch_scope_and_registry(scope) as found_in:
        if found_in.get(kind) is not None:
            return
        hint = did_you_mean(kind, _names_in_reach(found_in))
    raise RunnerConfigError(
        f"{where}: type={kind!r} is not registered in mmengine's {registry.name} registry.{hint} "
        "A class from another package needs that package in custom_imports (or its "
        "default_scope).")


def _schedulers(spec, where: str = "param_scheduler") -> list[tuple[str, object]]:
    """Each scheduler with where it is; a dict of lists is one list per optim wrapper."""
    if isinstance(spec, dict) and "type" not in spec and spec and \
            all(isinstance(group, (dict, list, tuple)) for group in spec.values()):
        return [item for name, group in spec.items()
                for item in _schedulers(group, f"{where}[{name!r}]")]
    if isinstance(spec, (list, tuple)):
        return [(f"{where}[{i}]", item) for i, item in enumerate(spec)]
    return [(where, spec)] if spec is not None else []


def _check_positive_int(where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunnerConfigError(f"{where}={value!r} must be a positive integer.")


def check_types(cfg) -> None:
    """Every ``type`` the Runner will build is registered (in the config's scope)."""
    scope = cfg.get("default_scope")
    _check_type("model", cfg.get("model"), MODELS, scope)
    for where, spec in _schedulers(cfg.get("param_scheduler")):
        _check_type(where, spec, PARAM_SCHEDULERS, scope)
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        if not isinstance(hook, Hook):
            _check_type(f"custom_hooks[{i}]", hook, HOOKS, scope)
    for name, hook in (cfg.get("default_hooks") or {}).items():
        if not isinstance(hook, Hook):
            _check_type(f"default_hooks.{name}", hook, HOOKS, scope)
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if isinstance(loader, dict):
            _check_type(f"{split}_dataloader.dataset", loader.get("dataset"), DATASETS, scope)
    train_cfg = cfg.get("train_cfg")
    if isinstance(train_cfg, dict) and "type" in train_cfg:
        _check_type("train_cfg", train_cfg, LOOPS, scope)


def check_values(cfg) -> None:
    """Settings mmengine accepts and then fails on, or trains nothing with."""
    train_cfg = cfg.get("train_cfg")
    if isinstance(train_cfg, dict):
        for key in ("max_iters", "max_epochs", "val_interval"):
            if key in train_cfg:
                _check_positive_int(f"train_cfg.{key}", train_cfg[key])
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if isinstance(loader, dict) and "batch_size" in loader:
            _check_positive_int(f"{split}_dataloader.batch_size", loader["batch_size"])
    scale = cfg.get("auto_scale_lr")
    if isinstance(scale, dict) and "base_batch_size" in scale:  # mmengine divides by it
        _check_positive_int("auto_scale_lr.base_batch_size", scale["base_batch_size"])
    seed = (cfg.get("randomness") or {}).get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RunnerConfigError(f"randomness.seed={seed!r} must be an integer (or None: a "
                                "random seed, logged).")
    for where, spec in _schedulers(cfg.get("param_scheduler")):
        if isinstance(spec, dict) and spec.get("type") in LINEAR_SCHEDULERS:
            factor = spec.get("start_factor", 1 / 3)
            if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor <= 0:
                raise RunnerConfigError(
                    f"{where}: {spec['type']} start_factor={factor!r} must be > 0 (mmengine divides by it "
                    "after the first step): start from a small factor such as 1e-3.")


def check_paths(cfg) -> None:
    """``load_from`` exists (local paths) and ``work_dir`` can be created."""
    load_from = cfg.get("load_from")
    if isinstance(load_from, str) and "://" not in load_from and not os.path.exists(load_from):
        raise RunnerConfigError(f"load_from={load_from!r}: no such file. Give the path of a "
                                "checkpoint to start from, or load_from=None.")
    work_dir = cfg.get("work_dir")
    if isinstance(work_dir, str):
        try:
            os.makedirs(work_dir, exist_ok=True)
        except OSError as error:
            raise RunnerConfigError(f"work_dir={work_dir!r} cannot be created ({error.strerror}): "
                                    "pass --work-dir with a folder you can write to.") from error


def check_strategy(cfg) -> None:
    """A sharding strategy's optimizer steps its shards exactly (its catalog row), or the run
    stops here (not after the model was built and sharded)."""
    strategy = cfg.get("strategy")
    if isinstance(strategy, dict) and strategy.get("type") in SHARDING_STRATEGIES:
        check_sharded_cfg(cfg.get("optim_wrapper"))


def check_run_cfg(cfg) -> None:
    """All of the above."""
    check_types(cfg)
    check_values(cfg)
    check_paths(cfg)
    check_strategy(cfg)
