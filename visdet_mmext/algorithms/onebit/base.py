"""What OnebitAdam, OnebitLamb and ZeroOneAdam share: the process group, the compressed average
with its error buffers, the DDP hook contract, and checkpoints that hold every rank's state.

Gradients: in a distributed run the model is a ``DistributedDataParallel`` whose communication
hook (:func:`~.ddp_hook.install_ddp_hook`) asks :attr:`averages_next_gradients` before each
backward: True -> DDP averages the gradients as usual, False -> each rank keeps its own and the
optimizer communicates (compressed) itself. With one process nothing is communicated and the
average of one rank is the identity (no compression).

Checkpoints: the state that differs between ranks (error buffers, and 0/1 Adam's local momenta)
is collected on rank 0 by :meth:`~OnebitOptimizer.gather_rank_state`, which every rank calls
right before a save (mmengine's ``Runner.save_checkpoint`` runs ``state_dict()`` on rank 0 only;
``visdet_mmext.optim.onebit_setup`` makes it gather first). ``state_dict()`` never communicates:
it stores every rank's entry when they were gathered at this step, else its own only.
``load_state_dict`` takes this rank's entry, so a resumed run continues exactly; without them
(another world size, or a save that did not gather) the error buffers start from zero, the local
state of rank 0 is used, and a warning says so.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from ..dispatch import closure_loss
from .compression import ChunkLayout, compressed_allreduce

ERROR_KEYS = ("worker_error", "server_error")


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def check_adam_settings(name: str, lr, betas, eps, weight_decay) -> None:
    require(lr >= 0, f"{name}: lr={lr} must be >= 0")
    require(len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas),
            f"{name}: betas={betas} must be two numbers in [0, 1)")
    require(eps >= 0, f"{name}: eps={eps} must be >= 0")
    require(weight_decay >= 0, f"{name}: weight_decay={weight_decay} must be >= 0")


def check_step_count(name: str, key: str, value, minimum: int, why: str) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            f"{name}: {key}={value!r} must be an integer >= {minimum} ({why}). {_STEP_HINT}")


_STEP_HINT = ("The papers warm up for about 15-25% of training (DeepSpeed's BERT runs: "
              "freeze_step=23000 of 118000 steps).")


class OnebitOptimizer(Optimizer):
    """Base class; subclasses implement :meth:`update` and :attr:`averages_next_gradients`.

    Args:
        process_group: the group to average over; default the one the DDP hook reports, else the
            default group.
    """

    #: per-parameter state that differs between ranks (saved for every rank)
    rank_local_keys: tuple[str, ...] = ()

    def __init__(self, params: Iterable, defaults: dict, process_group=None):
        super().__init__(params, defaults)
        self.process_group = process_group
        self.ddp_hook_installed = False
        self.onebit: dict = {"step": 0}  # saved with the state dict; subclasses add their counters
        self._layout: ChunkLayout | None = None
        self._layout_params: list[Tensor] = []
        self._flat: Tensor | None = None  # the exchange buffer (see compressed_average)
        self._views: list[Tensor] = []
        self.errors: dict[str, Tensor] = {}
        self._gathered: list[dict] | None = None  # every rank's local state, on rank 0
        self.unseen: dict = {}  # param -> where the frozen variance is 0 (adam.mask_unseen)

    # -- the group ------------------------------------------------------------------------
    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.process_group) if self.distributed else 1

    @property
    def rank(self) -> int:
        return dist.get_rank(self.process_group) if self.distributed else 0

    @property
    def global_step(self) -> int:
        """Steps taken so far (the next step is ``global_step + 1``)."""
        return self.onebit["step"]

    @property
    def averages_next_gradients(self) -> bool:
        """Whether the gradients of the next step must arrive averaged over the ranks."""
        raise NotImplementedError

    # -- the step ------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = closure_loss(closure)
        if self.world_size > 1 and not self.ddp_hook_installed:
            raise RuntimeError(
                f"{type(self).__name__} runs on {self.world_size} processes, but the model's "
                "DistributedDataParallel has not got its communication hook, so gradients would be "
                "all-reduced twice or not at all. Call visdet_mmext.algorithms.onebit."
                "install_ddp_hook(ddp_model, optimizer) before training (mmengine's Runner does "
                "it through the package's optimizer constructor).")
        self._gathered = None
        self.update(self.global_step + 1)
        self.onebit["step"] += 1
        return loss

    def update(self, t: int) -> None:
        """Step number ``t`` (1-based) on the current gradients."""
        raise NotImplementedError

    def trained_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def local_gradients(self, group: dict):
        """(parameter, gradient) for the group's trainable parameters that have a gradient."""
        for p in group["params"]:
            if p.grad is not None and p.requires_grad:
                yield p, self.grad_or_zero(p)

    def grad_or_zero(self, p: Tensor) -> Tensor:
        """The gradient; a parameter without one counts as zero (every rank averages alike)."""
        if p.grad is None:
            return torch.zeros_like(p)
        if p.grad.is_sparse:
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        return p.grad

    # -- the compressed average ---------------------------------------------------------
    def compressed_average(self, key: str) -> None:
        """Average ``self.state[p][key]`` of every trained parameter over the ranks, 1-bit
        compressed, in place.

        These tensors become views of one flat exchange buffer (copied in once; again after a
        load or wherever a state tensor was replaced), so the exchange never copies per tensor.
        """
        if self.world_size == 1:
            return
        views = self.exchange_views()
        for p, view in zip(self._layout_params, views):  # identity checks only
            state = self.state[p]
            if state[key] is not view:
                view.copy_(state[key])
                state[key] = view
        layout = self._layout
        if not self.errors:
            self.errors = {"worker_error": torch.zeros(layout.world, layout.width,
                                                       device=layout.device),
                           "server_error": torch.zeros(layout.width, device=layout.device)}
        if (self.errors["worker_error"].shape != (layout.world, layout.width)
                or self.errors["server_error"].shape != (layout.width,)):
            raise ValueError(f"{type(self).__name__}: the loaded error buffers do not fit this "
                             "model's parameters (was the checkpoint saved for another model?)")
        compressed_allreduce(self._flat, self.errors["worker_error"],
                             self.errors["server_error"], layout, self.process_group)

    def exchange_views(self) -> list[Tensor]:
        """Each trained parameter's slot (shaped like it, float32) in the flat exchange buffer,
        in :meth:`trained_params` order; the layout follows the parameters of the first call."""
        params = self.trained_params()
        if self._layout is None:
            self._layout_params = params
            self._layout = ChunkLayout([p.numel() for p in params], self.world_size,
                                       params[0].device)
            self._flat = torch.zeros(self._layout.flat_numel, device=params[0].device)
            self._views = [view.view(p.shape) for view, p in
                           zip(self._layout.views(self._flat), params)]
        elif [id(p) for p in params] != [id(p) for p in self._layout_params]:
            raise RuntimeError(f"{type(self).__name__}: the set of trained parameters changed "
                               "during the compression stage; its error buffers follow the set "
                               "it started with")
        return self._views

    # -- checkpoints ----------------------------------------------------------------------
    def _split_local(self, state: dict) -> dict:
        """Move the rank-local entries out of ``state`` (a ``state_dict()``); return them."""
        local = {"errors": dict(self.errors), "params": {}}
        for index, entry in list(state["state"].items()):
            moved = {key: entry[key] for key in self.rank_local_keys if key in entry}
            if moved:
                local["params"][index] = moved
                state["state"][index] = {k: v for k, v in entry.items() if k not in moved}
        return local

    def gather_rank_state(self) -> None:
        """Collective: collect every rank's local state on rank 0 for the next ``state_dict()``."""
        if self.world_size == 1:
            return
        local = self._split_local(super().state_dict())
        tensors = [local["errors"].get(key) for key in ERROR_KEYS]
        tensors += [t for _, entry in sorted(local["params"].items())
                    for _, t in sorted(entry.items())]
        root = dist.get_global_rank(self.process_group, 0) if self.process_group else 0
        gathered = []
        for tensor in tensors:
            if tensor is None:  # the compression stage has not started: no error buffers yet
                gathered.append(None)
                continue
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)] \
                if self.rank == 0 else None
            dist.gather(tensor.contiguous(), parts, dst=root, group=self.process_group)
            gathered.append(parts)
        if self.rank != 0:
            return
        self._gathered = []
        for r in range(self.world_size):
            values = iter(None if parts is None else parts[r] for parts in gathered)
            errors = {key: value for key in ERROR_KEYS if (value := next(values)) is not None}
            params = {i: {key: next(values) for key in sorted(entry)}
                      for i, entry in sorted(local["params"].items())}
            self._gathered.append({"errors": errors, "params": params})

    def state_dict(self) -> dict:
        state = super().state_dict()
        local = self._split_local(state)
        ranks = self._gathered if self._gathered is not None else [local]
        state["onebit"] = {**self.onebit, "world_size": self.world_size, "ranks": ranks}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        if "onebit" not in state_dict:
            raise ValueError(f"not a {type(self).__name__} state dict (no 'onebit' entry): it was "
                             "saved by another optimizer")
        onebit = dict(state_dict["onebit"])
        saved_world, ranks = onebit.pop("world_size"), onebit.pop("ranks")
        exact = saved_world == self.world_size == len(ranks)
        if not exact:
            why = (f"was saved by {saved_world} process(es) and is loaded by {self.world_size}"
                   if saved_world != self.world_size else
                   "holds one rank's state only (the save did not gather every rank's)")
            warnings.warn(f"{type(self).__name__}: the checkpoint {why}; the compression error "
                          "buffers restart from zero and every rank takes rank 0's momenta "
                          "(training continues, not bit-exactly)")
        own = ranks[self.rank] if exact else ranks[0]
        state_dict = dict(state_dict, state={k: dict(v) for k, v in state_dict["state"].items()})
        for index, entry in own["params"].items():
            state_dict["state"].setdefault(index, {}).update(entry)
        super().load_state_dict(state_dict)
        self.onebit = onebit
        self._layout, self._layout_params, self.unseen = None, [], {}
        self._flat, self._views = None, []
        device = next((p.device for p in self.trained_params()), torch.device("cpu"))
        self.errors = {key: value.to(device=device, dtype=torch.float32)
                       for key, value in own["errors"].items()} if exact else {}
