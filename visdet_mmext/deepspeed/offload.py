"""What DeepSpeed ZeRO accepts, from the optimizer a config built: a pure mapping.

mmengine's strategy hands ``deepspeed.initialize`` the optimizer that the optim-wrapper
constructor built. DeepSpeed then applies two gates (``engine.py``):

1. with ``offload_optimizer`` on cpu/nvme, a client optimizer must be a ``DeepSpeedCPUAdam``
   or ``DeepSpeedCPULion`` instance unless ``zero_force_ds_cpu_optimizer: false``;
2. at ZeRO stage >= 1, the optimizer's exact type must be on DeepSpeed's tested list unless
   ``zero_allow_untested_optimizer: true``.

Under ZeRO every param group becomes one flat 1-D partition per rank: group settings (lr,
betas, eps, weight decay, ``paramwise_cfg`` multipliers) survive, per-parameter behaviour
does not.

``plan_optimizer`` reads the built optimizer (its catalog row, defaults and param groups) and the
DeepSpeed config, and returns a :class:`DeepSpeedOptimizerPlan`. By the row's ``zero_as``:
Adam-like -> client ``DeepSpeedCPUAdam`` under offload (``adamw_mode`` from decoupled weight
decay), Lion -> ``DeepSpeedCPULion``, Adagrad -> DeepSpeed's config-built CPU Adagrad (a client
one is refused by gate 1), hybrid Muon at ZeRO >= 1 -> DeepSpeed's own Muon with this package's
routing; every group's settings kept. Anything else under offload is refused with the fix named,
unless the run opts in (``allow_untested_optimizer=True``: DeepSpeed's two escape hatches, a
warning).

Nothing here imports DeepSpeed; ``DeepSpeedOptimizerPlan.build_client`` does, when asked.
"""
from __future__ import annotations

import copy
import importlib
import inspect
from dataclasses import dataclass, field

from ..catalog import CATALOG
from ..catalog.spec import (ZERO_AS_ADAGRAD, ZERO_AS_ADAM, ZERO_AS_LION, ZERO_AS_MUON, ZERO_NATIVE,
                            OptimizerSpec)
from ..errors import DeepSpeedConfigError
from ..registry.availability import qualified_name
from .config import (ALLOW_UNTESTED_OPTIMIZER, FORCE_DS_CPU_OPTIMIZER, offload_optimizer_device,
                     offloads_optimizer, zero_config, zero_stage)

CPU_ADAM = "deepspeed.ops.adam:DeepSpeedCPUAdam"
CPU_LION = "deepspeed.ops.lion:DeepSpeedCPULion"
OPT_IN = "allow_untested_optimizer"

#: Implementation switches that do not change the update rule (dropped when mapping).
IMPLEMENTATION_FLAGS = frozenset({"foreach", "fused", "capturable", "differentiable",
                                  "set_grad_none", "initial_lr"})


@dataclass
class DeepSpeedOptimizerPlan:
    """How the strategy hands the optimizer to ``deepspeed.initialize``."""
    kind: str  # "client": pass an optimizer instance; "config": DeepSpeed builds it from config
    config: dict  # the DeepSpeed config to use (a modified copy)
    source: str  # qualified class name of the optimizer the config built
    target: str | None = None  # "module:Class" to build as the client; None keeps the built one
    groups: list[dict] = field(default_factory=list)  # param groups for target / config path
    defaults: dict = field(default_factory=dict)  # optimizer-level arguments for target
    muon_tags: dict[int, bool] = field(default_factory=dict)  # id(param) -> use_muon
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        short = self.source.rsplit(".", 1)[-1]
        if self.kind == "config":
            built = self.config["optimizer"]["type"]
            return (f"{short} -> DeepSpeed's config optimizer {built!r} over {len(self.groups)} "
                    f"param group(s)")
        if self.target is None:
            return f"{short} handed to DeepSpeed unchanged"
        return (f"{short} -> {self.target.split(':')[1]}"
                f"({', '.join(f'{k}={v!r}' for k, v in self.defaults.items())}) over "
                f"{len(self.groups)} param group(s)")

    def build_client(self, built_optimizer):
        """The optimizer instance to pass to ``deepspeed.initialize`` (imports DeepSpeed)."""
        if self.kind != "client" or self.target is None:
            return built_optimizer
        module, _, attribute = self.target.partition(":")
        cls = getattr(importlib.import_module(module), attribute)
        return cls(self.groups, **self.defaults)


def _short(source: str) -> str:
    return source.rsplit(".", 1)[-1]


def _signature_defaults(cls) -> dict:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:
        return False


def _carry_groups(optimizer, carried: tuple[str, ...], target_name: str, *, fixed: dict | None = None,
                  renamed: dict | None = None) -> list[dict]:
    """Param groups for the target: ``params``, the carried settings and metadata keys.

    A setting of the source optimizer that the target cannot express is refused unless it
    still has the source's default value (then it changes nothing).
    """
    source = type(optimizer)
    name = _short(qualified_name(source))
    hyper = set(optimizer.defaults)
    signature = _signature_defaults(source)
    fixed = fixed or {}
    renamed = renamed or {}
    groups = []
    for index, group in enumerate(optimizer.param_groups):
        new = {"params": list(group["params"])}
        for key, value in group.items():
            if key == "params":
                continue
            if key in carried:
                new[renamed.get(key, key)] = value
            elif key not in hyper:
                new[key] = value  # metadata (param_names, name, use_muon, ...): kept as is
            elif key in IMPLEMENTATION_FLAGS or key in fixed:
                continue
            elif key in signature and _same(value, signature[key]):
                continue
            else:
                raise DeepSpeedConfigError(
                    f"{name} setting {key}={value!r} (param group {index}) has no equivalent in "
                    f"{target_name}, which ZeRO-Offload runs instead. Remove {key!r} from the "
                    f"optimizer config, or train without offload_optimizer.")
        groups.append(new)
    return groups


def _defaults(optimizer, carried: tuple[str, ...], renamed: dict | None = None) -> dict:
    renamed = renamed or {}
    return {renamed.get(k, k): optimizer.defaults[k] for k in carried if k in optimizer.defaults}


def _adam(optimizer, plan: DeepSpeedOptimizerPlan, spec: OptimizerSpec) -> None:
    source = plan.source
    defaults = optimizer.defaults
    if spec.name == "FusedAdam":
        adamw_mode = bool(getattr(optimizer, "adam_w_mode", True))
    else:
        adamw_mode = bool(defaults.get("decoupled_weight_decay", source.endswith("AdamW")))
    for key in ("amsgrad", "maximize"):
        bad = [i for i, g in enumerate(optimizer.param_groups) if g.get(key, defaults.get(key))]
        if bad:
            raise DeepSpeedConfigError(
                f"{_short(source)}({key}=True) cannot run under ZeRO-Offload: DeepSpeedCPUAdam, "
                f"which offload needs, has no {key}. Drop {key}=True, or remove offload_optimizer.")
    carried = ("lr", "betas", "eps", "weight_decay", "bias_correction")
    plan.groups = _carry_groups(optimizer, carried, "DeepSpeedCPUAdam",
                                fixed={"amsgrad": None, "maximize": None, "decoupled_weight_decay": None,
                                       "adam_w_mode": None})
    plan.defaults = {**_defaults(optimizer, carried), "adamw_mode": adamw_mode}
    plan.target = CPU_ADAM


def _lion(optimizer, plan: DeepSpeedOptimizerPlan) -> None:
    carried = ("lr", "betas", "weight_decay")
    plan.groups = _carry_groups(optimizer, carried, "DeepSpeedCPULion")
    plan.defaults = _defaults(optimizer, carried)
    plan.target = CPU_LION


def _adagrad(optimizer, plan: DeepSpeedOptimizerPlan) -> None:
    carried = ("lr", "eps", "weight_decay")
    plan.groups = _carry_groups(optimizer, carried, "DeepSpeedCPUAdagrad (DeepSpeed's config Adagrad)")
    plan.kind = "config"
    plan.config["optimizer"] = {"type": "Adagrad", "params": _defaults(optimizer, carried)}


#: DeepSpeed's Muon half-group keys (``DeepSpeedEngine._MUON_HALF_KEYS``/``_ADAM_HALF_KEYS``).
DS_MUON_KEYS = ("lr", "momentum", "weight_decay")
DS_ADAM_KEYS = ("lr", "betas", "eps", "weight_decay")


#: Muon-group settings DeepSpeed's ZeRO Muon fixes: (key, the value it uses, why).
DS_MUON_FIXED = (
    ("nesterov", True, "DeepSpeed's ZeRO Muon always uses Nesterov momentum"),
    ("ns_steps", 5, "DeepSpeed's ZeRO Muon always runs 5 Newton-Schulz steps"),
    ("adjust_lr", "original", "DeepSpeed's Muon scales the step by sqrt(max(1, rows/cols)) "
                              "(Keller Jordan's convention); match_rms_adamw has no equivalent"),
)


def _muon(optimizer, plan: DeepSpeedOptimizerPlan) -> None:
    """This package's hybrid Muon -> DeepSpeed's Muon, keeping our routing and group settings."""
    for index, group in enumerate(optimizer.param_groups):
        if not group.get("use_muon"):
            continue
        for key, value, why in DS_MUON_FIXED:
            if key in group and not _same(group[key], value):
                raise DeepSpeedConfigError(
                    f"Muon {key}={group[key]!r} (param group {index}) cannot run under ZeRO stage "
                    f"{zero_stage(plan.config)}: {why}. Use {key}={value!r}, or ZeRO stage 0 "
                    "(this package's Muon then runs as it is).")
    groups, tags = [], {}
    for index, group in enumerate(optimizer.param_groups):
        if "use_muon" not in group:
            raise DeepSpeedConfigError(
                f"Muon param group {index} has no use_muon flag, so its routing is unknown; build "
                "Muon through the package constructor (the default one after import visdet_mmext).")
        use_muon = bool(group["use_muon"])
        keys = DS_MUON_KEYS if use_muon else DS_ADAM_KEYS
        new = {"params": list(group["params"]), "use_muon": use_muon}
        new.update({k: group[k] for k in keys if k in group})
        if "name" in group:
            new["name"] = group["name"]
        groups.append(new)
        tags.update({id(p): use_muon for p in group["params"]})
    muon_defaults = next((g for g in groups if g["use_muon"]), {})
    adam_defaults = next((g for g in groups if not g["use_muon"]), {})
    params = {k: v for k, v in muon_defaults.items() if k in DS_MUON_KEYS}
    if "lr" in adam_defaults:
        params["adam_lr"] = adam_defaults["lr"]
    if "lr" in params:
        params["muon_lr"] = params["lr"]
    params.update({k: adam_defaults[k] for k in ("betas", "eps") if k in adam_defaults})
    plan.kind = "config"
    plan.groups = groups
    plan.muon_tags = tags
    plan.config["optimizer"] = {"type": "Muon", "params": params}
    zero = dict(zero_config(plan.config))
    if zero_stage(plan.config) == 3 and zero.get("reduce_scatter", True):
        if "reduce_scatter" in zero:
            raise DeepSpeedConfigError(
                "DeepSpeed's Muon at ZeRO stage 3 needs zero_optimization.reduce_scatter=False "
                "(Newton-Schulz needs whole matrices); remove reduce_scatter=True.")
        zero["reduce_scatter"] = False
        plan.config["zero_optimization"] = zero
        plan.notes.append("Muon at ZeRO stage 3: set zero_optimization.reduce_scatter=False "
                          "(DeepSpeed's Muon needs whole matrices).")
    counts = (sum(len(g["params"]) for g in groups if g["use_muon"]),
              sum(len(g["params"]) for g in groups if not g["use_muon"]))
    plan.notes.append(f"Muon runs as DeepSpeed's Muon: {counts[0]} tensor(s) on Muon, {counts[1]} "
                      "on its auxiliary Adam, as routed by this package (DeepSpeed's name rule is "
                      "not used).")


def _refusal(plan: DeepSpeedOptimizerPlan, offload: bool, stage: int,
             spec: OptimizerSpec | None) -> str:
    name = _short(plan.source)
    if offload:
        device = offload_optimizer_device(plan.config)
        return (
            f"ZeRO-Offload (offload_optimizer.device={device!r}) steps the optimizer on the CPU with "
            f"DeepSpeed's kernels, and {name} has no DeepSpeed CPU version. Fix: use optimizer "
            "type 'AdamW', 'Adam', 'Lion', 'Adagrad' or 'Muon' (mapped to DeepSpeedCPUAdam, "
            "DeepSpeedCPULion, DeepSpeed's CPU Adagrad and DeepSpeed's Muon); or keep "
            f"{name} with strategy=dict(type='DeepSpeedStrategy', ..., {OPT_IN}=True), which runs "
            f"its PyTorch step on the offloaded fp32 partitions (often several times slower); or "
            "remove offload_optimizer.")
    loses = f" Under ZeRO {spec.zero_loses}." if spec is not None and spec.zero_loses else ""
    sharded = (f", or shard with strategy=dict(type='FullyShardStrategy') (FSDP2), under which "
               f"{name} is exact" if spec is not None and spec.fsdp_impossible is None else "")
    return (
        f"ZeRO stage {stage} hands the optimizer flat 1-D partitions, and {name} is not on "
        f"DeepSpeed's tested list for that.{loses} Fix: use 'AdamW', 'Adam', 'Adagrad' or "
        f"'Muon'{sharded}, or keep {name} with strategy=dict(type='DeepSpeedStrategy', ..., "
        f"{OPT_IN}=True).")


def plan_optimizer(optimizer, config: dict, *, zero_tested,
                   allow_untested: bool = False) -> DeepSpeedOptimizerPlan:
    """Decide what ``deepspeed.initialize`` gets for ``optimizer`` under ``config``.

    What the optimizer can do under ZeRO comes from its catalog row; ``zero_tested(optimizer)``
    is DeepSpeed's own exact-type check (``is_zero_supported_optimizer``). Raises :class:`DeepSpeedConfigError` naming the fix
    when the optimizer cannot train this way.
    """
    config = copy.deepcopy(dict(config))
    source = qualified_name(optimizer)
    spec = CATALOG.spec_of(optimizer)
    zero_as = spec.zero_as if spec is not None else None
    plan = DeepSpeedOptimizerPlan("client", config, source)
    name = _short(source)
    stage = zero_stage(config)
    offload = offloads_optimizer(config)
    if "optimizer" in config:
        del config["optimizer"]
        plan.warnings.append("The DeepSpeed config's 'optimizer' block is ignored: optim_wrapper."
                             "optimizer is what trains (mmengine always hands DeepSpeed that one).")
    if "scheduler" in config:
        del config["scheduler"]
        plan.warnings.append("The DeepSpeed config's 'scheduler' block is ignored: use mmengine's "
                             "param_scheduler.")
    opted_in = allow_untested or config.get(FORCE_DS_CPU_OPTIMIZER) is False or \
        (not offload and config.get(ALLOW_UNTESTED_OPTIMIZER) is True)
    tested = zero_tested(optimizer)

    impossible = spec.zero_impossible if spec is not None else None
    if impossible is not None and stage >= impossible.from_stage:
        raise DeepSpeedConfigError(f"{name} cannot train under DeepSpeed ZeRO stage {stage}: it "
                                   f"{impossible.reason}. Fix: {impossible.fix}.")
    if offload and spec is not None and spec.cuda_only:
        raise DeepSpeedConfigError(
            f"{name} runs CUDA kernels, but ZeRO-Offload steps the optimizer on CPU copies. Fix: "
            "use AdamW/Adam (DeepSpeedCPUAdam) or Lion (DeepSpeedCPULion), or remove "
            "offload_optimizer.")

    if zero_as == ZERO_AS_MUON and stage >= 1:
        _muon(optimizer, plan)
    elif not offload:
        if stage >= 1 and not tested:
            if spec is not None and spec.elementwise:
                config[ALLOW_UNTESTED_OPTIMIZER] = True
                plan.notes.append(f"{name} updates element by element, so ZeRO's flat partitions give "
                                  f"the same result; set {ALLOW_UNTESTED_OPTIMIZER}=true for it.")
            elif opted_in:
                config[ALLOW_UNTESTED_OPTIMIZER] = True
                plan.warnings.append(f"{name} is not on DeepSpeed's tested ZeRO list; running it "
                                     f"because {OPT_IN} is set.")
            else:
                raise DeepSpeedConfigError(_refusal(plan, offload, stage, spec))
    elif zero_as == ZERO_NATIVE:
        pass  # DeepSpeedCPUAdam / DeepSpeedCPULion: what offload wants
    elif zero_as == ZERO_AS_ADAM:
        _adam(optimizer, plan, spec)
    elif zero_as == ZERO_AS_LION:
        _lion(optimizer, plan)
    elif zero_as == ZERO_AS_ADAGRAD:
        _adagrad(optimizer, plan)
    elif opted_in:
        config[FORCE_DS_CPU_OPTIMIZER] = False
        if not tested:
            config[ALLOW_UNTESTED_OPTIMIZER] = True
        plan.warnings.append(
            f"{name} under ZeRO-Offload: {OPT_IN} is set, so DeepSpeed's escape hatches are on "
            f"({FORCE_DS_CPU_OPTIMIZER}=false"
            f"{', ' + ALLOW_UNTESTED_OPTIMIZER + '=true' if not tested else ''}). Its PyTorch step "
            "runs on the offloaded fp32 partitions on the CPU, usually several times slower than "
            "DeepSpeedCPUAdam/DeepSpeedCPULion.")
    else:
        raise DeepSpeedConfigError(_refusal(plan, offload, stage, spec))

    if plan.kind == "client" and plan.target is None and stage >= 1 and spec is not None \
            and spec.zero_loses:
        plan.warnings.append(f"{name} under ZeRO stage {stage}: {spec.zero_loses}.")
    if plan.target is not None or plan.kind == "config":
        plan.notes.insert(0, f"DeepSpeed optimizer: {plan.summary}.")
    return plan
