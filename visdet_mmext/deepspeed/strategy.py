"""mmengine's ``DeepSpeedStrategy``, working with current DeepSpeed, on CPU and with ZeRO-Offload.

Registered under mmengine's own name ``DeepSpeedStrategy`` (``force=True``, right after
mmengine's module registers its version; see ``visdet_mmext.deepspeed.install``), so the
config an mmengine user writes keeps working. What it changes:

* the optimizer the config built is mapped to what ZeRO accepts (``offload.plan_optimizer``):
  ``AdamW`` under ``offload_optimizer`` trains as ``DeepSpeedCPUAdam``, and so on; optimizers
  that cannot run are refused before training with the fix named;
* legacy ``cpu_offload`` keys are translated (``config.normalize``);
* CPU-only runs: a single process without a launcher gets ``RANK``/``WORLD_SIZE``/
  ``MASTER_ADDR=127.0.0.1``/a free ``MASTER_PORT`` and gloo; ``--launcher pytorch`` (torchrun)
  initialises gloo itself instead of mmengine's ``init_dist``, which calls
  ``torch.cuda.set_device``;
* DeepSpeed >= 0.19 clips gradients at 1.0 by default; mmengine only when asked, so
  ``gradient_clipping`` defaults to 0 here. ``optim_wrapper.clip_grad=dict(max_norm=x)`` and
  ``accumulative_counts=n`` become ``gradient_clipping=x`` and ``gradient_accumulation_steps=n``;
  ``optim_wrapper`` may say ``OptimWrapper`` (becomes ``DeepSpeedOptimWrapper``); AMP wrappers
  fail with the strategy key to use.

``load_from`` may name a checkpoint file (a plain or FSDP2 run's) as well as a DeepSpeed
checkpoint: its weights load as mmengine's other strategies load them (what fits; the rest is
listed in the log).

Extra setting: ``allow_untested_optimizer=True`` runs an optimizer that ZeRO(-Offload) has no
DeepSpeed version of, through DeepSpeed's escape hatches (slower; a warning says so).
"""
from __future__ import annotations

import datetime
import logging

import torch
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper, MMDeepSpeedEngineWrapper
from mmengine._strategy.deepspeed import DeepSpeedStrategy as _MMEngineDeepSpeedStrategy
from mmengine.dist import infer_launcher
from mmengine.logging import print_log
from mmengine.optim import OptimWrapperDict
from mmengine.registry import OPTIM_WRAPPERS

from ..compat.deepspeed_muon import ROUTED
from ..errors import DeepSpeedConfigError
from ..runtime.process_group import single_process_env
from .config import normalize
from .offload import OPT_IN, plan_optimizer

#: optim_wrapper keys that DeepSpeed takes from the strategy instead (``clip_grad`` and
#: ``accumulative_counts`` are translated).
WRAPPER_KEYS_ELSEWHERE = {
    "loss_scale": "fp16=dict(enabled=True, loss_scale=...) in the strategy",
    "dtype": "bf16=dict(enabled=True) or fp16=dict(enabled=True) in the strategy",
}


def _log(message: str, level=logging.INFO) -> None:
    print_log(message, logger="current", level=level)


def on_cpu() -> bool:
    """DeepSpeed runs on its CPU accelerator (no CUDA device, or ``DS_ACCELERATOR=cpu``)."""
    from deepspeed.accelerator import get_accelerator
    return get_accelerator().device_name() == "cpu"


def _timeout(dist_cfg: dict) -> dict:
    timeout = dist_cfg.get("timeout")
    if timeout is None or isinstance(timeout, datetime.timedelta):
        return {} if timeout is None else {"timeout": timeout}
    return {"timeout": datetime.timedelta(seconds=timeout)}


class DeepSpeedStrategy(_MMEngineDeepSpeedStrategy):
    """mmengine's DeepSpeedStrategy with ZeRO-Offload mapping and CPU support.

    Args:
        allow_untested_optimizer (bool): run an optimizer that ZeRO-Offload has no DeepSpeed
            version of (or that is off DeepSpeed's tested ZeRO list) by setting
            ``zero_force_ds_cpu_optimizer=false`` and ``zero_allow_untested_optimizer=true``.
            Defaults to False: such optimizers are refused before training.
        **kwargs: everything mmengine's ``DeepSpeedStrategy`` takes.
    """

    def __init__(self, *, allow_untested_optimizer: bool = False, **kwargs):
        self.allow_untested_optimizer = bool(allow_untested_optimizer)
        config = kwargs.get("config")
        given = set(config) if isinstance(config, dict) else set()
        given |= {key for key in ("gradient_clipping", "gradient_accumulation_steps")
                  if kwargs.get(key) is not None}
        super().__init__(**kwargs)
        if isinstance(config, str):
            given |= set(self.config)  # a JSON file: whatever it sets counts as set
        self._unset = {"gradient_clipping", "gradient_accumulation_steps"} - given
        self.config, notes = normalize(self.config)
        if "gradient_clipping" in self._unset:
            # DeepSpeed >= 0.19 clips at 1.0 unless told otherwise; mmengine clips only when the
            # config asks (optim_wrapper.clip_grad, translated below).
            self.config["gradient_clipping"] = 0.0
        for note in notes:
            _log(note, logging.WARNING if "deprecated" in note else logging.INFO)
        self.optimizer_plan = None

    # -- distributed setup -------------------------------------------------------------------
    def _setup_env(self, *, launcher=None, dist_cfg=None, **kwargs):
        # Decide the launcher before any variable below is set: mmengine infers 'pytorch'
        # from WORLD_SIZE, and a single-process run must stay 'none'.
        if launcher is None:
            launcher = infer_launcher()
        dist_cfg = dict(dist_cfg or {})
        if on_cpu() and dist_cfg.get("backend", "nccl") == "nccl":
            dist_cfg["backend"] = "gloo"
        if launcher == "none" and not torch.distributed.is_initialized():
            # DeepSpeed always runs in a process group; without the variables it looks for MPI.
            added = single_process_env()
            import deepspeed
            deepspeed.init_distributed(dist_backend=dist_cfg.get("backend", "nccl"),
                                       auto_mpi_discovery=False, **_timeout(dist_cfg))
            if added:
                _log(f"DeepSpeed single process: set {', '.join(f'{k}={v}' for k, v in added.items())} "
                     f"and initialised a one-process '{dist_cfg.get('backend')}' group.")
        super()._setup_env(launcher=launcher, dist_cfg=dist_cfg, **kwargs)

    def _setup_distributed(self, launcher=None, backend="nccl", **kwargs):
        if not on_cpu():
            return super()._setup_distributed(launcher, backend, **kwargs)
        if launcher == "slurm":
            raise DeepSpeedConfigError(
                "DeepSpeed on CPU supports --launcher pytorch (torchrun) and single-process runs; "
                "mmengine's slurm launcher calls torch.cuda.set_device. Start the ranks with "
                "srun torchrun ... --launcher pytorch instead.")
        import deepspeed
        if backend == "nccl":
            backend = "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=launcher == "mpi",
                                   **_timeout(kwargs))

    # -- optimizer -----------------------------------------------------------------------------
    def build_optim_wrapper(self, optim_wrapper, model=None):
        if isinstance(optim_wrapper, dict):
            optim_wrapper = self._check_wrapper_cfg(optim_wrapper)
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        if isinstance(wrapper, OptimWrapperDict):
            raise DeepSpeedConfigError("DeepSpeedStrategy trains one optimizer; optim_wrapper built "
                                       f"several ({', '.join(wrapper.keys())}).")
        from deepspeed.runtime.zero.utils import is_zero_supported_optimizer
        plan = plan_optimizer(wrapper.optimizer, self.config, zero_tested=is_zero_supported_optimizer,
                              allow_untested=self.allow_untested_optimizer)
        for note in plan.notes:
            _log(note)
        for warning in plan.warnings:
            _log(warning, logging.WARNING)
        self.config = plan.config
        self.optimizer_plan = plan
        if plan.kind == "client":
            wrapper.optimizer = plan.build_client(wrapper.optimizer)
        return wrapper

    def _check_wrapper_cfg(self, cfg: dict) -> dict:
        cfg = cfg.copy()
        if "optimizer" not in cfg and "constructor" not in cfg:
            return cfg  # a dict of built wrappers: mmengine's own error applies
        kind = cfg.get("type", "OptimWrapper")
        cls = OPTIM_WRAPPERS.get(kind) if isinstance(kind, str) else kind
        if cls is not None and isinstance(cls, type) and issubclass(cls, DeepSpeedOptimWrapper):
            pass
        elif kind in ("OptimWrapper", None):
            cfg["type"] = "DeepSpeedOptimWrapper"
            _log("optim_wrapper type 'OptimWrapper' under DeepSpeedStrategy: using "
                 "DeepSpeedOptimWrapper (the engine runs backward and step).")
        else:
            name = kind if isinstance(kind, str) else getattr(kind, "__name__", kind)
            hint = (" Mixed precision is set in the strategy: bf16=dict(enabled=True) or "
                    "fp16=dict(enabled=True)." if "Amp" in str(name) else "")
            raise DeepSpeedConfigError(f"optim_wrapper type {name!r} does not work under "
                                       f"DeepSpeedStrategy; use type='DeepSpeedOptimWrapper'.{hint}")
        self._take_from_wrapper(cfg)
        for key, where in WRAPPER_KEYS_ELSEWHERE.items():
            if key in cfg:
                raise DeepSpeedConfigError(f"optim_wrapper.{key} is not used by DeepSpeed; set {where} "
                                           f"and remove optim_wrapper.{key}.")
        if "allow_untested_optimizer" in cfg:
            raise DeepSpeedConfigError(f"{OPT_IN} is a strategy setting: strategy=dict(type="
                                       f"'DeepSpeedStrategy', ..., {OPT_IN}=True).")
        return cfg

    def _take_from_wrapper(self, cfg: dict) -> None:
        """``clip_grad``/``accumulative_counts`` become the DeepSpeed keys that do the same."""
        written = cfg.pop("clip_grad", None)
        if written is not None:
            clip = dict(written)
            norm_type = clip.pop("norm_type", 2)
            max_norm = clip.pop("max_norm", None)
            if clip.get("type", "norm") != "norm" or float(norm_type) != 2.0 or max_norm is None or \
                    set(clip) - {"type", "error_if_nonfinite"}:
                raise DeepSpeedConfigError(
                    f"optim_wrapper.clip_grad={dict(written)!r}: DeepSpeed clips only by "
                    "the global L2 norm; write strategy=dict(..., gradient_clipping=<max_norm>).")
            self._from_wrapper("gradient_clipping", float(max_norm), "optim_wrapper.clip_grad.max_norm")
        counts = cfg.pop("accumulative_counts", None)
        if counts is not None and int(counts) != 1:
            self._from_wrapper("gradient_accumulation_steps", int(counts),
                               "optim_wrapper.accumulative_counts")

    def _from_wrapper(self, key: str, value, source: str) -> None:
        if key in self._unset:
            self.config[key] = value
            self._unset.discard(key)
            _log(f"{source}={value} -> DeepSpeed {key}={value}.")
        elif self.config.get(key) != value:
            raise DeepSpeedConfigError(f"{source}={value} disagrees with the strategy's {key}="
                                       f"{self.config.get(key)}; keep only the strategy's.")

    def _wrap_model(self, model):
        plan = self.optimizer_plan
        if not hasattr(self, "optim_wrapper") or plan is None or plan.kind == "client":
            return super()._wrap_model(model)
        import deepspeed
        for param in model.parameters():  # DeepSpeed's Muon keeps this routing (compat.deepspeed_muon)
            if id(param) in plan.muon_tags:
                setattr(param, ROUTED, plan.muon_tags[id(param)])
        engine, optimizer, *_ = deepspeed.initialize(model=model, model_parameters=plan.groups,
                                                     config=self.config)
        self.optim_wrapper.optimizer = optimizer
        return MMDeepSpeedEngineWrapper(model=engine, inputs_to_half=self._inputs_to_half)

    # -- checkpoints -----------------------------------------------------------------------------
    def load_checkpoint(self, filename: str, *, map_location="cpu", strict: bool = False,
                        revise_keys: list = [(r"^module.", "")],  # noqa: B006 (mmengine's default)
                        callback=None) -> dict:
        """``load_from``: the weights of a checkpoint file (a plain or FSDP2 run's) or of a
        DeepSpeed checkpoint, loaded as mmengine's other strategies load them (those that fit;
        the rest listed in the log). DeepSpeed itself loads only its own directories, strictly
        (another head: a traceback), and given a file loads nothing and trains from scratch.
        A ZeRO-3 checkpoint (no whole weights in it) is left to DeepSpeed."""
        from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

        from ..checkpoint.deepspeed_layout import (is_deepspeed_checkpoint,
                                                   load_deepspeed_checkpoint, sliced)
        if is_deepspeed_checkpoint(filename) and sliced(load_deepspeed_checkpoint(filename)):
            return super().load_checkpoint(filename, map_location=map_location, strict=strict,
                                           revise_keys=revise_keys, callback=callback)
        from deepspeed import zero
        _log(f"Load checkpoint from {filename} (its weights)")
        checkpoint = _load_checkpoint(filename, map_location="cpu")
        if callback is not None:
            callback(checkpoint)
        engine = self.model.model
        # ZeRO-3 holds each rank's slice of a parameter: gathered to load, then split again
        with zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=0):
            _load_checkpoint_to_model(engine.module, checkpoint, strict, revise_keys=revise_keys)
        if hasattr(engine.optimizer, "refresh_fp32_params"):  # ZeRO's fp32 master copies
            engine.optimizer.refresh_fp32_params()
        return checkpoint
