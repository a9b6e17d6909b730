"""Muon for any model: orthogonalised momentum for matrices, AdamW for everything else.

One optimizer, one flag per param group (``use_muon``), so mmengine's schedulers, gradient
clipping and checkpoints see a single optimizer.

Muon groups (``lr, momentum, nesterov, weight_decay, ns_steps, adjust_lr``), per parameter::

    B <- momentum * B + (1 - momentum) * g              # state "momentum_buffer"
    U <- (1 - momentum) * g + momentum * B  if nesterov else B
    O <- NewtonSchulz5(U viewed as rows x cols)         # conv kernels: out x (in*kh*kw)
    p <- p * (1 - lr * weight_decay) - lr * scale * O

with ``scale`` computed on the flattened matrix: ``original`` sqrt(max(1, rows/cols)) (Keller
Jordan, lr ~0.02) or ``match_rms_adamw`` 0.2*sqrt(max(rows, cols)) (Moonlight, AdamW-sized lr).
This is ``torch.optim.Muon``'s formula, extended to >2-D tensors. Newton-Schulz runs in
``ns_dtype``: bf16 on CUDA, fp32 on CPU.

AdamW groups (``lr, betas, eps, weight_decay``) run torch's AdamW update (decoupled decay, bias
correction; states ``step``, ``exp_avg``, ``exp_avg_sq``).

Groups carry ``use_muon``. A group without it is split by shape (``hybrid.split_by_shape``:
>= 2 dims to Muon, the rest to AdamW with the ``adamw_*`` settings), so
``optimizer=dict(type='Muon')`` with mmengine's default constructor trains any model; routing
embeddings, stems and heads to AdamW is the package constructor's job.

Paths: single-tensor (a per-matrix loop), foreach (foreach momentum; Newton-Schulz products of
same-shaped matrices batched across param groups: on CPU only small ones, see
``BATCH_MAX_NUMEL``), fast (additionally the compiled AdamW kernel; on CUDA small matrices of
different shapes share zero-padded batches). Under data parallelism the ranks share the
Newton-Schulz work, and under FSDP2 each sharded matrix is gathered to the one rank that
orthogonalises it (``distributed``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from .. import dispatch, shards
from . import distributed, sharded
from .._adam import adam_state, adamw_foreach, adamw_tensor, bias_corrections
from .hybrid import adamw_settings, split_by_shape
from .newton_schulz import PAD_MAX_NUMEL, orthogonalize, orthogonalize_many

ADJUST_LR = ("original", "match_rms_adamw")
#: Devices where the fast path zero-pads small matrices of different shapes into shared batches:
#: launch-bound GPUs gain, FLOP-bound CPUs would only lose.
PAD_DEVICE_TYPES = ("cuda",)
#: Devices where every same-shaped group of matrices runs as one batched GEMM. Elsewhere (CPU)
#: only matrices below ``BATCH_MAX_NUMEL`` are batched: a CPU GEMM is efficient from ~64K
#: elements on, and batching larger ones ran 3-11 % slower than one matrix at a time (MKL fp32,
#: ResNet-50 shapes; docs/benchmarks.md).
BATCH_ALL_DEVICE_TYPES = ("cuda",)
BATCH_MAX_NUMEL = 1 << 16


def matrix_shape(p: Tensor) -> tuple[int, int]:
    """The matrix Muon orthogonalises for ``p``: (shape[0], prod(shape[1:]))."""
    return p.shape[0], math.prod(p.shape[1:])


def lr_scale(adjust_lr: str, rows: int, cols: int) -> float:
    """Shape factor on the Muon lr, for the flattened matrix."""
    if adjust_lr == "original":
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    raise ValueError(f"adjust_lr must be one of {ADJUST_LR}, got {adjust_lr!r}")


_ADAMW = dispatch.Kernel(adamw_tensor, "AdamW (Muon's AdamW side)", compile_s=11.0, cached_s=2.5,
                         saved_ns=2.3, chunk=4, elementwise=True)


class Muon(Optimizer):
    """Hybrid Muon + AdamW (see the module docstring for the update).

    Args:
        params: tensors or param-group dicts. Groups with ``use_muon`` are taken as they are;
            others are split by dimension (>= 2-D: Muon, rest: AdamW).
        lr, momentum, nesterov, weight_decay, ns_steps, adjust_lr: Muon group defaults.
        adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay: the AdamW side's settings
            (defaults: :func:`~visdet_mmext.algorithms.muon.hybrid.adamw_settings`).
        ns_dtype: Newton-Schulz dtype; None: bf16 on CUDA, fp32 elsewhere.
        distributed: when torch.distributed is initialised with several processes, each rank
            orthogonalises a FLOP-balanced share of the matrices and broadcasts the results
            (:mod:`~visdet_mmext.algorithms.muon.distributed`); FSDP2-sharded matrices are
            gathered to the rank that orthogonalises them and the update's slices sent back
            (:mod:`~visdet_mmext.algorithms.muon.sharded`). The parameters stay those of a
            single process on the same averaged gradients. False: every rank computes every
            matrix (for ranks that do not share parameters and gradients).
        maximize, foreach, fast: see :class:`visdet_mmext.algorithms.lion.Lion`.
    """

    def __init__(self, params: Iterable, lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 5,
                 adjust_lr: str = "original", adamw_lr: float | None = None,
                 adamw_betas: tuple[float, float] | None = None, adamw_eps: float | None = None,
                 adamw_weight_decay: float | None = None, *, ns_dtype: torch.dtype | None = None,
                 distributed: bool = True, maximize: bool = False, foreach: bool | None = None,
                 fast: bool | None = None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Invalid momentum: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay: {weight_decay}")
        _check_ns_steps(ns_steps)
        lr_scale(adjust_lr, 1, 1)  # validates the name
        self.adamw = adamw_settings(lr, weight_decay, adjust_lr, adamw_lr, adamw_betas, adamw_eps,
                                    adamw_weight_decay)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        ns_steps=ns_steps, adjust_lr=adjust_lr, betas=self.adamw["betas"],
                        eps=self.adamw["eps"], ns_dtype=ns_dtype, distributed=distributed,
                        maximize=maximize, foreach=foreach, fast=fast)
        super().__init__(params, defaults)
        #: Newton-Schulz FLOPs this process spent in the last step (its share when distributed).
        self.last_step_ns_flops = 0.0

    def __getstate__(self):  # copies and pickles keep the AdamW side's settings
        return {**super().__getstate__(), "adamw": self.adamw}

    def add_param_group(self, param_group: dict) -> None:
        group = dict(param_group)
        group["params"] = _as_list(group["params"])
        if "use_muon" not in group:
            for part in split_by_shape(group, self.defaults["lr"], self.defaults["weight_decay"],
                                       self.adamw):
                self.add_param_group(part)
            return
        if group["use_muon"]:
            _check_muon_group(group, self.defaults)
        else:
            for key in ("lr", "betas", "eps", "weight_decay"):
                group.setdefault(key, self.adamw[key])
        super().add_param_group(group)

    def _ns_dtype(self, device: torch.device) -> torch.dtype:
        if self.defaults["ns_dtype"] is not None:
            return self.defaults["ns_dtype"]
        return torch.bfloat16 if device.type == "cuda" else torch.float32

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = dispatch.closure_loss(closure)
        adamw_works, muon_items = [], []
        for group in self.param_groups:
            if group["use_muon"]:
                _check_muon_group(group, self.defaults)
                for p in group["params"]:
                    if p.grad is None or p.numel() == 0:
                        continue
                    grad = dispatch.check_grad("Muon", p, group["maximize"])
                    state = self.state[p]
                    if not state:
                        state["momentum_buffer"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                    muon_items.append((p, grad, state["momentum_buffer"], group))
            else:
                self._collect_adamw(group, adamw_works)
        dispatch.run(_ADAMW, adamw_foreach, adamw_works, self.defaults["fast"],
                     self.defaults["foreach"])
        if muon_items:
            self._muon_update(muon_items)
        return loss

    def _collect_adamw(self, group: dict, works: list) -> None:
        beta1, beta2 = (float(b) for b in group["betas"])
        base = (float(group["lr"]), float(group["weight_decay"]), beta1, beta2,
                float(group["eps"]))
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = dispatch.check_grad("Muon (AdamW side)", p, group["maximize"])
            state = adam_state(self.state[p], p)
            state["step"] += 1
            hp = base + bias_corrections(state["step"], beta1, beta2, True)
            works.append(((p, grad, state["exp_avg"], state["exp_avg_sq"]), hp))

    def _muon_update(self, items: list) -> None:
        rank, world = distributed.world_of(self.defaults.get("distributed", True))
        if world == 1:  # (DTensors too: each gathered whole, on every rank)
            self.last_step_ns_flops = sum(
                distributed.ns_flops(*matrix_shape(p), group["ns_steps"]) for p, *_, group in items)
            self._apply_all(items)
            return
        layouts = [sharded.layout(p) for p, *_ in items]
        plain = [shards.plain(p) for p, *_ in items]
        distributed.check_same_matrices(
            [(*matrix_shape(item[0]), item[3]["ns_steps"], where is not None, is_plain)
             for item, where, is_plain in zip(items, layouts, plain)], items[0][0].device)
        self.last_step_ns_flops = 0.0
        # data-parallel replicas: a share each, broadcast
        self._muon_update_shared([item for item, ok in zip(items, plain) if ok], rank, world)
        by_mesh: dict[int, list] = {}  # FSDP2 shards: gathered to one rank per matrix
        for item, where in zip(items, layouts):
            if where is not None:
                by_mesh.setdefault(id(where.group), []).append((item, where))
        for members in by_mesh.values():
            self._muon_update_sharded([item for item, _ in members], [w.dim for _, w in members],
                                      members[0][1])
        # anything else (other DTensor layouts, tensor subclasses): every rank computes it
        rest = [item for item, where, ok in zip(items, layouts, plain) if where is None and not ok]
        self.last_step_ns_flops += sum(
            distributed.ns_flops(*matrix_shape(p), group["ns_steps"]) for p, *_, group in rest)
        self._apply_all(rest)

    def _apply_all(self, items: list) -> None:
        for (p, _, _, group), ortho, (rows, cols) in self._orthogonalized(items):
            _apply(p, ortho, group, rows, cols)

    def _ns_buckets(self, entries: list, main: str) -> list[list[int]]:
        """Indices of ``entries`` ``(tensor, group)`` whose Newton-Schulz runs as one batch."""
        if not entries:  # (a rank that owns none of the sharded matrices)
            return []
        pad = self._ns_path(entries[0][0].device)[1]
        buckets: dict[tuple, list[int]] = {}
        for index, (p, group) in enumerate(entries):
            rows, cols = sorted(matrix_shape(p))
            alone = None  # batched with its shape
            if pad and rows * cols <= PAD_MAX_NUMEL:
                rows, cols = 0, 0  # all small matrices: one padded call, sub-batched inside
            elif p.device.type not in BATCH_ALL_DEVICE_TYPES and rows * cols >= BATCH_MAX_NUMEL:
                alone = index
            key = (p.device, rows, cols, group["ns_steps"], self._ns_dtype(p.device), alone)
            buckets.setdefault(key, []).append(index)
        return list(buckets.values())

    def _newton_schulz(self, updates: list, groups: list, main: str, pad: bool) -> list:
        """Orthogonalised ``updates`` (tensors of their parameters' shapes, one bucket of
        :meth:`_ns_buckets`), as matrices."""
        group, device = groups[0], updates[0].device
        matrices = [u.reshape(matrix_shape(u)) for u in updates]
        if main == dispatch.SINGLE:
            return [orthogonalize(m, group["ns_steps"], self._ns_dtype(device)) for m in matrices]
        return orthogonalize_many(matrices, group["ns_steps"], self._ns_dtype(device), pad=pad)

    def _orthogonalized(self, items: list):
        """``(item, orthogonalised update, matrix shape)`` per item: momentum, then Newton-Schulz
        along the chosen path (a DTensor's update gathered whole first). Yielded batch by batch,
        so a batch's temporaries are freed before the next is computed."""
        if not items:
            return
        main, pad = self._ns_path(items[0][0].device)
        if main == dispatch.SINGLE:
            for item in items:  # the per-matrix loop
                p, grad, buf, group = item
                update = shards.whole(_momentum_single(grad, buf, group))
                yield item, self._newton_schulz([update], [group], main, pad)[0], matrix_shape(p)
            return
        for bucket in self._ns_buckets([(item[0], item[3]) for item in items], main):
            chosen = [items[i] for i in bucket]
            updates = [shards.whole(u) for u in _momentum_foreach(chosen)]
            orthos = self._newton_schulz(updates, [it[3] for it in chosen], main, pad)
            yield from zip(chosen, orthos, [matrix_shape(p) for p, *_ in chosen])

    def _ns_path(self, device: torch.device) -> tuple[str, bool]:
        """The path (single, foreach or compiled) and whether small matrices are zero-padded
        into shared batches."""
        main, _ = dispatch.choose_path(self.defaults["fast"], self.defaults["foreach"], device)
        return main, main == dispatch.COMPILED and device.type in PAD_DEVICE_TYPES

    def _muon_update_shared(self, items: list, rank: int, world: int) -> None:
        """Each rank orthogonalises its share (``distributed.assign``), then broadcasts it; every
        rank applies every update, in the same dtype as a single process would."""
        if not items:
            return
        shapes = [matrix_shape(p) for p, *_ in items]
        costs = [distributed.ns_flops(*shape, item[3]["ns_steps"])
                 for shape, item in zip(shapes, items)]
        owners = distributed.assign(costs, world)
        self.last_step_ns_flops += sum(c for c, owner in zip(costs, owners) if owner == rank)
        # the momentum of matrices another rank orthogonalises (the owner computes its update)
        _momentum_foreach([item for item, owner in zip(items, owners) if owner != rank],
                          buffers_only=True)
        # (device, Newton-Schulz dtype) -> one flat buffer per rank, laid out by the plan
        layouts: dict[tuple, list[list[int]]] = {}
        for i, owner in enumerate(owners):
            device = items[i][0].device
            ranks = layouts.setdefault((device, self._ns_dtype(device)), [[] for _ in range(world)])
            ranks[owner].append(i)
        shares = {}
        for key, ranks in layouts.items():
            members = ranks[rank]
            sizes = [math.prod(shapes[i]) for i in members]
            flat = torch.empty(sum(sizes), dtype=key[1], device=key[0])
            views = dict(zip(members, flat.split(sizes)))
            position = {id(items[i][0]): i for i in members}
            # this rank's share first, so every rank computes at the same time
            if members:
                for (p, *_), ortho, shape in self._orthogonalized([items[i] for i in members]):
                    views[position[id(p)]].view(shape).copy_(ortho)
            shares[key] = flat
        for (device, ns_dtype), ranks in layouts.items():
            for src, members in enumerate(ranks):
                if not members:  # more ranks than matrices
                    continue
                sizes = [math.prod(shapes[i]) for i in members]
                flat = shares[device, ns_dtype] if src == rank else \
                    torch.empty(sum(sizes), dtype=ns_dtype, device=device)
                distributed.broadcast_from(flat, src)
                for i, update in zip(members, flat.split(sizes)):
                    p, _, _, group = items[i]
                    _apply(p, update.view(shapes[i]), group, *shapes[i])

    def _muon_update_sharded(self, items: list, dims: list[int], where: sharded.Layout) -> None:
        """FSDP2 shards (one mesh): momentum on the local slices, each matrix orthogonalised by
        one rank of the mesh (FLOP-balanced), the update's slices sent back (``sharded``)."""
        local = [(p.to_local(), grad.to_local(), buf.to_local(), group)
                 for p, grad, buf, group in items]
        shapes = [tuple(p.shape) for p, *_ in items]
        costs = [distributed.ns_flops(*matrix_shape(p), group["ns_steps"])
                 for p, *_, group in items]
        owners = distributed.assign(costs, where.world)
        self.last_step_ns_flops += sum(c for c, owner in zip(costs, owners) if owner == where.rank)
        device = local[0][0].device
        ns_dtype = self._ns_dtype(device)
        main, pad = self._ns_path(device)
        updates = [u.to(ns_dtype) for u in (
            [_momentum_single(grad, buf, group) for _, grad, buf, group in local]
            if main == dispatch.SINGLE else _momentum_foreach(local))]
        wholes = sharded.gather_to_owners(updates, shapes, dims, owners, where)
        del updates
        mine = sorted(wholes)
        results = {}
        for bucket in self._ns_buckets([(wholes[i], items[i][3]) for i in mine], main):
            chosen = [mine[j] for j in bucket]
            orthos = self._newton_schulz([wholes[i] for i in chosen],
                                         [items[i][3] for i in chosen], main, pad)
            results.update({i: o.reshape(shapes[i]) for i, o in zip(chosen, orthos)})
        del wholes
        slices = sharded.scatter_from_owners(results, shapes, dims, owners, where, ns_dtype, device)
        for (p, _, _, group), update, item in zip(local, slices, items):
            _apply(p, update, group, *matrix_shape(item[0]))


def _momentum_single(grad: Tensor, buf: Tensor, group: dict) -> Tensor:
    momentum = group["momentum"]
    buf.lerp_(grad, 1 - momentum)
    return grad.lerp(buf, momentum) if group["nesterov"] else buf


def _momentum_foreach(items: list, buffers_only: bool = False) -> list[Tensor]:
    """Momentum (and Nesterov look-ahead) for items sharing a device, via foreach per setting;
    ``buffers_only``: only the momentum buffers (another rank computes the update)."""
    out: list[Tensor] = [None] * len(items)  # type: ignore[list-item]
    by_setting: dict[tuple, list[int]] = {}
    for i, (p, _, _, group) in enumerate(items):
        by_setting.setdefault((float(group["momentum"]), bool(group["nesterov"]), p.dtype),
                              []).append(i)
    for (momentum, nesterov, _), idx in by_setting.items():
        grads = [items[i][1] for i in idx]
        bufs = [items[i][2] for i in idx]
        torch._foreach_lerp_(bufs, grads, 1 - momentum)
        if buffers_only:
            continue
        updates = torch._foreach_lerp(grads, bufs, momentum) if nesterov else bufs
        for i, u in zip(idx, updates):
            out[i] = u
    return out


def _apply(p: Tensor, ortho: Tensor, group: dict, rows: int, cols: int) -> None:
    """The update of ``p`` (this rank's slice, when ``p`` is a DTensor and ``ortho`` whole)."""
    lr = float(group["lr"])
    if shards.is_dtensor(p) and not shards.is_dtensor(ortho):
        ortho = shards.shard_like(ortho.reshape(p.shape), p)
    if group["weight_decay"] != 0:
        p.mul_(1 - lr * float(group["weight_decay"]))
    p.add_(ortho.reshape(p.shape), alpha=-lr * lr_scale(group["adjust_lr"], rows, cols))


def _as_list(params) -> list:
    if isinstance(params, Tensor):
        return [params]
    if isinstance(params, set):
        raise TypeError("optimizer parameters need to be organized in ordered collections, "
                        "but the ordering of tensors in sets will change between runs.")
    return list(params)


def _check_ns_steps(ns_steps: int) -> None:
    # 0 steps would skip the orthogonalisation, i.e. not be Muon at all
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or not 1 <= ns_steps < 100:
        raise ValueError(f"ns_steps must be an int in [1, 100), got {ns_steps!r}")


def _check_muon_group(group: dict, defaults: dict) -> None:
    lr_scale(group.get("adjust_lr", defaults["adjust_lr"]), 1, 1)
    _check_ns_steps(group.get("ns_steps", defaults["ns_steps"]))
    for item in group["params"]:
        p = item[1] if isinstance(item, tuple) else item  # a tensor or a (name, tensor) pair
        if p.ndim < 2:
            name = f" ({item[0]})" if isinstance(item, tuple) else ""
            raise ValueError(
                f"Muon: a use_muon=True param group holds a tensor of shape "
                f"{tuple(p.shape)}{name}; "
                "Muon needs >= 2 dims (put it in a use_muon=False group, which runs AdamW)")
