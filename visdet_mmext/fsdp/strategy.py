"""``FullyShardStrategy``: mmengine's FlexibleRunner training a model sharded by FSDP2.

mmengine's own ``FSDPStrategy`` wraps the model in FSDP1, which hands the optimizer flat 1-D
parameters (Muon, LAMB and every other per-parameter rule see no whole tensor) and needs CUDA.
This strategy shards with torch's ``fully_shard`` instead: every parameter stays a parameter of its
own shape, a DTensor holding this rank's slice, on CPU (gloo) and CUDA (NCCL)::

    runner_type = 'FlexibleRunner'
    strategy = dict(type='FullyShardStrategy')

* Sharding units: ``fully_shard`` on every module with parameters of its own (or on the module
  classes named in ``shard_modules``), then on the root.
* The optimizer is built after sharding, by any constructor (the package's Muon routing
  included). An optimizer whose catalog row says it cannot step shards exactly is refused before
  anything is built (``visdet-mmext list`` shows which).
* Checkpoints hold whole tensors, in the layout of a single-process or DDP checkpoint (parameters
  and optimizer state gathered from the shards, written by rank 0), so they resume on any number of
  processes, with or without sharding. Loading goes through the package's weights-only loader.
* A run without a launcher forms a one-process group (gloo on CPU).

User guide: ``docs/sharding.md``.
"""
from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Callable

import torch
from mmengine.dist import broadcast_object_list, get_rank, get_world_size, infer_launcher
from mmengine.optim import OptimWrapperDict
from mmengine._strategy import DDPStrategy

from ..algorithms import shards
from ..errors import OptimizerConfigError, RunnerConfigError
from ..optim.validation import check_sharded_cfg
from ..runtime.process_group import single_process_env


class FullyShardStrategy(DDPStrategy):
    """Shard the model with FSDP2 (``torch.distributed.fsdp.fully_shard``).

    Args:
        shard_modules (list[str], optional): class names of the modules to shard as units (e.g.
            the blocks of a backbone). Default: every module with parameters of its own.
        reshard_after_forward (bool): free the gathered parameters after the forward (less
            memory, one more all-gather in the backward). Defaults to True.
        **kwargs: what ``DDPStrategy`` takes (``sync_bn``, ...).
    """

    def __init__(self, *, shard_modules: list[str] | None = None,
                 reshard_after_forward: bool = True, **kwargs):
        if shard_modules is not None and (isinstance(shard_modules, str) or not all(
                isinstance(name, str) for name in shard_modules)):
            raise RunnerConfigError(f"FullyShardStrategy shard_modules={shard_modules!r} must "
                                       "be a list of module class names, e.g. ['ResLayer'].")
        kwargs.pop("model_wrapper", None)  # fully_shard is the wrapper
        super().__init__(**kwargs)
        self.shard_modules = None if shard_modules is None else tuple(shard_modules)
        self.reshard_after_forward = bool(reshard_after_forward)

    # -- process group -----------------------------------------------------------------------
    def _setup_env(self, *, launcher=None, dist_cfg=None, **kwargs):
        # Decide the launcher before the variables below are set (mmengine infers 'pytorch'
        # from WORLD_SIZE): a run without one trains in a one-process group.
        if launcher is None:
            launcher = infer_launcher()
        dist_cfg = dict(dist_cfg or {})
        if launcher == "none":
            self._init_group(dist_cfg.get("backend", "nccl"), dist_cfg.get("timeout"),
                             single_process=True)
        super()._setup_env(launcher=launcher, dist_cfg=dist_cfg, **kwargs)

    def _setup_distributed(self, launcher="pytorch", backend="nccl", **kwargs):
        if launcher != "pytorch" and not torch.cuda.is_available():
            raise RunnerConfigError(
                f"FullyShardStrategy on CPU supports --launcher pytorch (torchrun) and runs "
                f"without a launcher; mmengine's {launcher} launcher calls torch.cuda.set_device. "
                "Start the ranks with torchrun ... --launcher pytorch instead.")
        if launcher != "pytorch":
            return super()._setup_distributed(launcher, backend, **kwargs)
        self._init_group(backend, kwargs.get("timeout"))

    @staticmethod
    def _init_group(backend: str, timeout=None, *, single_process: bool = False) -> None:
        """torch.distributed's default group (gloo without CUDA), from torchrun's variables;
        mmengine's init_dist would call torch.cuda.set_device on CPU too."""
        if torch.distributed.is_initialized():
            return
        if single_process:
            single_process_env()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        else:
            backend = "gloo"
        if timeout is not None and not isinstance(timeout, datetime.timedelta):
            timeout = datetime.timedelta(seconds=timeout)
        torch.distributed.init_process_group(backend, **({"timeout": timeout} if timeout else {}))

    # -- model and optimizer -------------------------------------------------------------------
    def prepare(self, model, *, optim_wrapper=None, **kwargs):
        check_sharded_cfg(optim_wrapper)  # before the model is sharded or any optimizer built
        return super().prepare(model, optim_wrapper=optim_wrapper, **kwargs)

    def _wrap_model(self, model):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if isinstance(model, FSDPModule):
            return model
        device = torch.device("cuda", torch.cuda.current_device()) \
            if torch.cuda.is_available() else torch.device("cpu")
        model = self.convert_model(model.to(device))
        mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
        options = dict(mesh=mesh, reshard_after_forward=self.reshard_after_forward)
        units = [module for module in model.modules() if module is not model and (
            type(module).__name__ in self.shard_modules if self.shard_modules is not None
            else any(True for _ in module.parameters(recurse=False)))]
        if self.shard_modules is not None and not units:
            raise RunnerConfigError(
                f"FullyShardStrategy shard_modules={list(self.shard_modules)}: no module of "
                f"{type(model).__name__} has one of these class names.")
        for module in reversed(units):  # inner units first, as fully_shard expects
            fully_shard(module, **options)
        fully_shard(model, **options)
        self.logger.info(f"FullyShardStrategy: {len(units) + 1} FSDP2 units over "
                         f"{mesh.size()} process(es) on {device.type}.")
        return model

    def build_optim_wrapper(self, optim_wrapper, model=None):
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        if isinstance(wrapper, OptimWrapperDict):
            raise OptimizerConfigError("FullyShardStrategy trains one optimizer; optim_wrapper "
                                       f"built several ({', '.join(wrapper.keys())}).")
        return wrapper

    # -- checkpoints: whole tensors, a single-process checkpoint's layout -------------------------
    def model_state_dict(self) -> dict:  # (gathering needs every rank: a collective)
        return {key: _cpu_whole(value) for key, value in self.model.state_dict().items()}

    def optim_state_dict(self) -> dict:
        state = self.optim_wrapper.state_dict()  # the optimizer's, plus e.g. the AMP loss scaler
        state["state"] = {index: {key: _cpu_whole(value) for key, value in values.items()}
                          for index, values in state["state"].items()}
        return state

    def load_model_state_dict(self, state_dict: dict, *, strict: bool = False,
                              revise_keys: list = [(r"^module.", "")]) -> None:  # noqa: B006
        for pattern, replacement in revise_keys:
            state_dict = {re.sub(pattern, replacement, key): value
                          for key, value in state_dict.items()}
        current = self.model.state_dict()
        sharded = {key: _like(current[key], value) if key in current else value
                   for key, value in state_dict.items()}
        missing, unexpected = self.model.load_state_dict(sharded, strict=strict)
        if missing or unexpected:
            self.logger.warning(f"The checkpoint does not match the model: missing keys "
                                f"{missing}, unexpected keys {unexpected}.")

    def load_optim_state_dict(self, state_dict: dict) -> None:
        optimizer = self.optim_wrapper.optimizer
        if hasattr(optimizer, "traced_routing"):  # the checkpoint's order, before reading by it
            optimizer.traced_routing.adopt(state_dict)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        state_dict = dict(state_dict)
        # (indices past this optimizer's parameters: its load_state_dict names the mismatch)
        state_dict["state"] = {
            index: {key: _like(params[index], value) for key, value in values.items()}
            if isinstance(index, int) and index < len(params) else values
            for index, values in state_dict.get("state", {}).items()}
        self.optim_wrapper.load_state_dict(state_dict)

    def save_checkpoint(self, filename: str, *, save_optimizer: bool = True,
                        save_param_scheduler: bool = True, extra_ckpt: dict | None = None,
                        callback: Callable | None = None) -> None:
        """Every rank gathers (the shards need every rank); rank 0 writes."""
        import mmengine
        from mmengine.runner.checkpoint import save_checkpoint
        from mmengine.utils import get_git_hash

        checkpoint = {"state_dict": self.model_state_dict()}
        if save_optimizer and hasattr(self, "optim_wrapper"):
            checkpoint["optimizer"] = self.optim_state_dict()
        if save_param_scheduler and hasattr(self, "param_schedulers"):
            checkpoint["param_schedulers"] = self.scheduler_state_dict()
        extra_ckpt = dict(extra_ckpt or {})
        extra_ckpt.setdefault("meta", {}).update(
            seed=self.seed, time=time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            mmengine=mmengine.__version__ + get_git_hash())
        checkpoint.update(extra_ckpt)
        if callback is not None:
            callback(checkpoint)
        failure = None
        if get_rank() == 0:
            try:
                save_checkpoint(checkpoint, filename)
            except Exception as error:  # noqa: BLE001 - raised below, on every rank
                failure = error
        # rank 0 alone writes: every rank learns whether it could, so that a failed save stops
        # them all alike (the others would wait for rank 0 in their next collective, then crash)
        if get_world_size() > 1:
            shared = [failure if failure is None else _picklable(failure)]
            broadcast_object_list(shared, src=0)
            failure = failure or shared[0]
        if failure is not None:
            raise failure


def _picklable(error: Exception) -> Exception:
    """``error`` as the other ranks can receive it (an exception that does not pickle becomes
    a RuntimeError with its words)."""
    import pickle
    try:
        pickle.dumps(error)
        return error
    except Exception:  # noqa: BLE001 - whatever pickling raises, the words still travel
        return RuntimeError(f"{type(error).__name__}: {error}")


def _cpu_whole(value):
    return shards.whole(value).cpu() if shards.is_dtensor(value) else value


def _like(reference, value):
    """``value`` (a whole tensor) cut the way ``reference`` (a DTensor) is sharded. Anything else
    is returned as it is: a plain reference, or a value of another shape (a state's step
    counter; for a parameter, load_state_dict's own size check reports it)."""
    if not shards.is_dtensor(reference) or not shards.plain(value) or \
            tuple(value.shape) != tuple(reference.shape):
        return value
    return shards.shard_like(value, reference)
