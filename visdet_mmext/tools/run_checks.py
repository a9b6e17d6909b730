"""What the Runner builds besides the optim wrapper, checked before it is built.

mmengine meets these mistakes inside ``Runner.__init__``, or only at the first iterations (a
``LinearLR`` with ``start_factor=0`` divides by zero at the second step), as a KeyError,
ZeroDivisionError or FileNotFoundError with a traceback. Here each stops with a
``RunnerConfigError`` naming the fix, before anything is built.
"""
from __future__ import annotations

import inspect
import os

import mmengine.runner  # noqa: F401  (registers mmengine's loops)
from mmengine.hooks import Hook
from mmengine.registry import (DATA_SAMPLERS, DATASETS, EVALUATOR, FUNCTIONS, HOOKS,
                               LOG_PROCESSORS, LOOPS, METRICS, MODELS, PARAM_SCHEDULERS,
                               VISBACKENDS, VISUALIZERS)

from ..checkpoint.deepspeed_layout import is_deepspeed_checkpoint
from ..checkpoint.resume import saves_directories
from ..echo import echo
from ..errors import RunnerConfigError
from ..optim.validation import check_sharded_cfg
from ..suggest import did_you_mean

#: Strategies that shard parameters with FSDP2 (DTensor).
SHARDING_STRATEGIES = ("FullyShardStrategy",)
#: Schedulers whose ``start_factor`` divides their later values (mmengine allows 0 in it).
LINEAR_SCHEDULERS = ("LinearLR", "LinearMomentum", "LinearParamScheduler")
#: The largest count (iterations, epochs, batch size) a run can use: mmengine's ETA and torch's
#: sizes are C ints, and no run reaches more.
MAX_COUNT = 2**31 - 1
#: Arguments of a loop's __init__ that the Runner passes itself.
LOOP_ARGUMENTS = ("self", "runner", "dataloader", "evaluator")


def _names_in_reach(registry) -> set[str]:
    """What ``registry.get`` can find by a plain name: its own entries and its parents'."""
    names: set[str] = set()
    while registry is not None:
        names |= set(registry.module_dict)
        registry = registry.parent
    return names


def _check_type(where: str, spec, registries, scope: str | None, needs_type: bool = True) -> None:
    """``spec`` builds from one of ``registries`` (a registry, or a tuple of them)."""
    if spec is None or not isinstance(spec, (dict, str)):
        return  # None: left out (a default hook turned off); an object: built already
    if isinstance(spec, str):
        raise RunnerConfigError(f"{where}={echo(spec)} must be a dict, e.g. dict(type=...); a list "
                                "item given on the command line is read as a string.")
    kind = spec.get("type")
    if kind is None:
        if not needs_type:
            return  # the Runner supplies a default type
        raise RunnerConfigError(f"{where}={echo(dict(spec))} has no 'type': name what to build.")
    if not isinstance(kind, str):
        return  # a class
    registries = registries if isinstance(registries, tuple) else (registries,)
    names: set[str] = set()
    for registry in registries:
        with registry.switch_scope_and_registry(scope) as found_in:
            if found_in.get(kind) is not None:
                return
            names |= _names_in_reach(found_in)
    raise RunnerConfigError(
        f"{where}: type={echo(kind)} is not registered in mmengine's "
        f"{' or '.join(r.name for r in registries)} registry.{did_you_mean(kind, names)} "
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
        raise RunnerConfigError(f"{where}={echo(value)} must be a positive integer.")
    if value > MAX_COUNT:
        raise RunnerConfigError(f"{where}={echo(value)} is more than any run can reach: at most "
                                f"{MAX_COUNT}.")


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
            where = f"{split}_dataloader"
            _check_type(f"{where}.dataset", loader.get("dataset"), DATASETS, scope)
            _check_type(f"{where}.sampler", loader.get("sampler"), DATA_SAMPLERS, scope)
            _check_type(f"{where}.batch_sampler", loader.get("batch_sampler"), DATA_SAMPLERS, scope)
            _check_type(f"{where}.collate_fn", loader.get("collate_fn"), FUNCTIONS, scope)
    for split in ("val", "test"):
        evaluator = cfg.get(f"{split}_evaluator")
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            where = f"{split}_evaluator" + (f"[{i}]" if metrics is evaluator else "")
            _check_type(where, metric, (METRICS, EVALUATOR), scope)
    visualizer = cfg.get("visualizer")
    _check_type("visualizer", visualizer, VISUALIZERS, scope)
    for i, backend in enumerate((visualizer or {}).get("vis_backends") or []
                                if isinstance(visualizer, dict) else []):
        _check_type(f"visualizer.vis_backends[{i}]", backend, VISBACKENDS, scope)
    _check_type("log_processor", cfg.get("log_processor"), LOG_PROCESSORS, scope, needs_type=False)
    train_cfg = cfg.get("train_cfg")
    if isinstance(train_cfg, dict) and "type" in train_cfg:
        _check_type("train_cfg", train_cfg, LOOPS, scope)


def _loop_class(where: str, spec, scope: str | None):
    """The loop class the Runner builds for ``spec`` (mmengine's ``build_*_loop`` rules)."""
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop
    if "type" in spec:
        if "by_epoch" in spec:
            raise RunnerConfigError(f"{where} has both type={echo(spec['type'])} and by_epoch: "
                                    "mmengine takes one of them. Drop by_epoch (the loop type "
                                    "decides).")
        if not isinstance(spec["type"], str):
            return spec["type"]
        with LOOPS.switch_scope_and_registry(scope) as found_in:
            return found_in.get(spec["type"])
    if where != "train_cfg":
        return ValLoop if where == "val_cfg" else TestLoop
    if "by_epoch" not in spec:
        raise RunnerConfigError("train_cfg needs type='IterBasedTrainLoop' (with max_iters) or "
                                "type='EpochBasedTrainLoop' (with max_epochs), or by_epoch=False/True.")
    return EpochBasedTrainLoop if spec["by_epoch"] else IterBasedTrainLoop


def check_loops(cfg) -> None:
    """Every key of ``train_cfg``/``val_cfg``/``test_cfg`` is a setting of the loop it builds
    (mmengine passes them all to the loop's ``__init__``: a stray key is a TypeError there)."""
    scope = cfg.get("default_scope")
    for where in ("train_cfg", "val_cfg", "test_cfg"):
        spec = cfg.get(where)
        if not isinstance(spec, dict):
            continue
        loop = _loop_class(where, spec, scope)
        try:
            parameters = inspect.signature(loop.__init__).parameters
        except (TypeError, ValueError, AttributeError):
            continue  # not a class with a readable signature: the Runner will say
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            continue
        accepted = [name for name in parameters if name not in LOOP_ARGUMENTS]
        for key in spec:
            if key in ("type", "by_epoch") or key in accepted:
                continue
            other = {"max_iters": "max_epochs", "max_epochs": "max_iters"}.get(key)
            hint = (f" {loop.__name__} counts {'epochs' if other == 'max_epochs' else 'iterations'}:"
                    f" use {other}, or the other loop type." if other in accepted else
                    did_you_mean(key, accepted))
            raise RunnerConfigError(f"{where}: {loop.__name__} has no setting {echo(key)}.{hint} "
                                    f"It takes: {', '.join(accepted)}.")


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
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed < 2**32):
        raise RunnerConfigError(f"randomness.seed={echo(seed)} must be an integer from 0 to "
                                f"{2**32 - 1} (numpy's range), or None: a random seed, logged.")
    for where, spec in _schedulers(cfg.get("param_scheduler")):
        if isinstance(spec, dict) and spec.get("type") in LINEAR_SCHEDULERS:
            factor = spec.get("start_factor", 1 / 3)
            if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor <= 0:
                raise RunnerConfigError(
                    f"{where}: {spec['type']} start_factor={echo(factor)} must be > 0 (mmengine divides by it "
                    "after the first step): start from a small factor such as 1e-3.")


def check_paths(cfg) -> None:
    """``load_from`` exists (local paths) and ``work_dir`` can be created."""
    load_from = cfg.get("load_from")
    if isinstance(load_from, str) and "://" not in load_from and not os.path.exists(load_from):
        raise RunnerConfigError(f"load_from={echo(load_from, 300)}: no such file. Give the path of a "
                                "checkpoint to start from, or load_from=None.")
    if isinstance(load_from, str) and os.path.isdir(load_from) and not saves_directories(cfg) \
            and not is_deepspeed_checkpoint(load_from):
        raise RunnerConfigError(f"load_from={echo(load_from, 300)} is a directory; give the path "
                                "of a checkpoint file in it (e.g. its iter_N.pth).")
    work_dir = cfg.get("work_dir")
    if isinstance(work_dir, str):
        try:
            os.makedirs(work_dir, exist_ok=True)
        except OSError as error:
            raise RunnerConfigError(f"work_dir={echo(work_dir)} cannot be created ({error.strerror}): "
                                    "pass --work-dir with a folder you can write to.") from error


def check_strategy(cfg) -> None:
    """The strategy's settings that would fail only once the model is built: a sharding
    strategy's optimizer steps its shards exactly (its catalog row); a DeepSpeed strategy's ZeRO
    settings read as DeepSpeed will (before it is imported)."""
    strategy = cfg.get("strategy")
    if not isinstance(strategy, dict):
        return
    if strategy.get("type") in SHARDING_STRATEGIES:
        check_sharded_cfg(cfg.get("optim_wrapper"))
    if "DeepSpeed" in str(strategy.get("type", "")):
        from ..deepspeed.config import check
        config = strategy.get("config")
        config = dict(config) if isinstance(config, dict) else {}
        if strategy.get("zero_optimization") is not None:
            config["zero_optimization"] = strategy["zero_optimization"]
        check(config)


def check_run_cfg(cfg) -> None:
    """All of the above."""
    check_types(cfg)
    check_loops(cfg)
    check_values(cfg)
    check_strategy(cfg)
    check_paths(cfg)
