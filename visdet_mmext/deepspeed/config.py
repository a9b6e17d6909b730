"""Reading a DeepSpeed config the way the engine will: stage, offload devices, legacy keys.

Pure functions on plain dicts (no DeepSpeed import), so the strategy and the offload mapping
agree on what the run does, and tests can check them without building an engine.
"""
from __future__ import annotations

import copy

from ..echo import echo
from ..errors import DeepSpeedConfigError

#: DeepSpeed's top-level switches for client optimizers (not in its documented config pages).
FORCE_DS_CPU_OPTIMIZER = "zero_force_ds_cpu_optimizer"
ALLOW_UNTESTED_OPTIMIZER = "zero_allow_untested_optimizer"
OFFLOAD_DEVICES = ("cpu", "nvme")
STAGES = (0, 1, 2, 3)


def zero_config(config: dict) -> dict:
    return config.get("zero_optimization") or {}


def zero_stage(config: dict) -> int:
    return zero_config(config).get("stage", 0) or 0  # an int of STAGES once ``check`` passed


def check(config: dict) -> None:
    """Refuse, before DeepSpeed is imported, the ZeRO settings its engine fails on late (an
    unknown stage fails after its ops are built; NVMe offload without a folder at the first
    step) or with a bare ``ValueError``."""
    zero = config.get("zero_optimization")
    if zero is None:
        return
    if not isinstance(zero, dict):
        raise DeepSpeedConfigError(f"zero_optimization={echo(zero)} must be a dict, e.g. "
                                   "dict(stage=2, offload_optimizer=dict(device='cpu')).")
    stage = zero.get("stage")
    if stage is not None and (isinstance(stage, bool) or stage not in STAGES):
        raise DeepSpeedConfigError(f"zero_optimization.stage={echo(stage)}: ZeRO stages are the "
                                   "integers 0, 1, 2 and 3.")
    for key in ("offload_optimizer", "offload_param"):
        block = zero.get(key)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise DeepSpeedConfigError(f"zero_optimization.{key}={echo(block)} must be a dict, "
                                       "e.g. dict(device='cpu').")
        if _device(block) == "nvme" and not (isinstance(block.get("nvme_path"), str)
                                             and block["nvme_path"]):
            raise DeepSpeedConfigError(
                f"zero_optimization.{key}.device='nvme' needs nvme_path: the folder on a fast "
                f"disk where DeepSpeed swaps the {'optimizer state' if 'optimizer' in key else 'parameters'}"
                f", e.g. {key}=dict(device='nvme', nvme_path='/local_nvme'). Or offload to "
                "device='cpu'.")


def _device(block) -> str:
    if isinstance(block, dict):
        return str(block.get("device", "none") or "none").lower()
    return "none"


def offload_optimizer_device(config: dict) -> str:
    """``'cpu'``, ``'nvme'`` or ``'none'``: where ZeRO keeps (and steps) the optimizer."""
    return _device(zero_config(config).get("offload_optimizer"))


def offloads_optimizer(config: dict) -> bool:
    """DeepSpeed's ``zero_use_cpu_optimizer``: the optimizer steps on the CPU."""
    return offload_optimizer_device(config) in OFFLOAD_DEVICES


def normalize(config: dict) -> tuple[dict, list[str]]:
    """Translate the legacy offload keys and check what the engine would reject late.

    mmengine's documented example still writes ``zero_optimization=dict(cpu_offload=...)``.
    DeepSpeed keeps ``cpu_offload``/``cpu_offload_param``/``cpu_offload_use_pin_memory`` as
    deprecated aliases; they are rewritten here to ``offload_optimizer``/``offload_param`` so
    that the optimizer mapping sees the offload. Returns the new config and notes to log.
    """
    config = copy.deepcopy(dict(config))
    notes: list[str] = []
    check(config)
    if "zero_optimization" not in config or config["zero_optimization"] is None:
        return config, notes
    zero = dict(config["zero_optimization"])
    stage = zero.get("stage") or 0
    pin = zero.pop("cpu_offload_use_pin_memory", None)

    legacy = (("cpu_offload", "offload_optimizer"), ("cpu_offload_param", "offload_param"))
    for old, new in legacy:
        if old not in zero:
            continue
        value = zero.pop(old)
        if not value:
            notes.append(f"zero_optimization.{old}={value!r} is a deprecated DeepSpeed key and means "
                         f"no offload; dropped it (write {new}=dict(device='cpu') to offload).")
            continue
        if zero.get(new) not in (None, {}) and _device(zero.get(new)) != "none":
            raise DeepSpeedConfigError(
                f"zero_optimization has both the deprecated {old}={value!r} and {new}={zero[new]!r}; "
                f"remove {old} and keep {new}.")
        zero[new] = {"device": "cpu"}
        notes.append(f"zero_optimization.{old}=True is deprecated in DeepSpeed; treated as "
                     f"{new}=dict(device='cpu'). Write that instead.")
    if pin is not None:
        for key in ("offload_optimizer", "offload_param"):
            if _device(zero.get(key)) != "none":
                zero[key] = {**zero[key], "pin_memory": zero[key].get("pin_memory", bool(pin))}
        notes.append("zero_optimization.cpu_offload_use_pin_memory is deprecated; moved to "
                     "offload_optimizer/offload_param.pin_memory.")

    if _device(zero.get("offload_param")) != "none" and stage != 3:
        raise DeepSpeedConfigError(
            f"zero_optimization.offload_param works only with ZeRO stage 3, but stage={stage}. "
            "Set stage=3, or offload only the optimizer with offload_optimizer=dict(device='cpu').")
    optimizer_device = _device(zero.get("offload_optimizer"))
    if optimizer_device not in ("none", *OFFLOAD_DEVICES):
        raise DeepSpeedConfigError(
            f"zero_optimization.offload_optimizer.device={optimizer_device!r}: DeepSpeed accepts "
            "'cpu', 'nvme' or 'none'.")
    if optimizer_device == "nvme" and stage in (1, 2):
        notes.append(f"offload_optimizer.device='nvme' at ZeRO stage {stage}: DeepSpeed keeps the "
                     "optimizer state in CPU memory (NVMe offload needs stage 3).")
    if optimizer_device != "none" and stage == 0:
        notes.append("offload_optimizer is set but ZeRO stage is 0: nothing is offloaded "
                      "(offload needs stage 1, 2 or 3).")
    config["zero_optimization"] = zero
    return config, notes
