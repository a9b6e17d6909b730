"""Every available catalog optimizer on FSDP2 shards against the same optimizer unsharded.

Run by torchrun (gloo, CPU) from tests/algorithms/test_fsdp_optimizers.py: one pair of processes
for every check, so the suite pays one launch. Each rank trains a model sharded with
``fully_shard`` on its half of each batch, and in the same process the unsharded model on the
whole batch (FSDP averages the halves' gradients, so both see the same gradients); after STEPS
steps the gathered parameters are compared. Rank 0 writes what happened per case to a JSON file.
The same launch runs Muon's routing read from the loss graph under FSDP2, through mmengine's
FlexibleRunner (tests/jobs/fsdp_traced_routing.py; its checkpoints go beside the JSON file).

The model has uneven dimensions (5, 33 and 7 rows over 2 ranks), a conv kernel, 1-D parameters,
a linear sharded along its columns (``Shard(1)``), so Muon's gather and scatter see every layout
FSDP2 makes, and two matrices of one shape (batched Newton-Schulz).
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import traceback

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "helpers"))
import fsdp_traced_routing  # noqa: E402
STEPS = 5


class ShardNet(nn.Module):
    """``matrices``: 2-D weights only (for optimizers that step nothing else)."""

    def __init__(self, features=16, classes=7, matrices=False):
        super().__init__()
        bias = not matrices
        self.stem = nn.Identity() if matrices else nn.Conv1d(1, 5, 3, padding=1)
        self.hidden = nn.Linear((1 if matrices else 5) * features, 33, bias=bias)
        self.norm = nn.Identity() if matrices else nn.LayerNorm(33)
        self.mid = nn.Linear(33, 34, bias=bias)
        self.wide = nn.Linear(34, 34, bias=False)  # sharded along its columns (FSDP2: evenly)
        self.twin = nn.Linear(34, 34, bias=False)  # wide's shape: batched with it
        self.head = nn.Linear(34, classes, bias=bias)

    def forward(self, inputs, targets):
        x = torch.relu(self.stem(inputs[:, None])).flatten(1)
        x = torch.relu(self.mid(self.norm(torch.relu(self.hidden(x)))))
        x = torch.relu(self.twin(torch.relu(self.wide(x))))
        return nn.functional.cross_entropy(self.head(x), targets)


def data(seed=0, n=16, features=16, classes=7):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, features, generator=generator)
    return inputs, torch.randint(0, classes, (n,), generator=generator)


def shard(model: nn.Module, only: tuple[str, ...] | None = None) -> nn.Module:
    """``fully_shard`` each layer (``only``: just those), ``wide`` along dim 1, then the root."""
    for name, module in model.named_children():
        if any(True for _ in module.parameters(recurse=False)) and (only is None or name in only):
            fully_shard(module, shard_placement_fn=(lambda p: Shard(1)) if name == "wide" else None)
    if only is None:
        fully_shard(model)
    return model


def full(p) -> torch.Tensor:
    return (p.full_tensor() if isinstance(p, DTensor) else p).detach().double()


def relative_error(model, reference) -> float:
    worst = 0.0
    for a, b in zip(model.parameters(), reference.parameters()):
        a, b = full(a), full(b)
        worst = max(worst, ((a - b).norm() / b.norm().clamp(min=1e-30)).item())
    return worst


def backward(model, optimizer, inputs, targets) -> None:
    """The loss's backward, as mmengine's train_step runs it for an optim wrapper."""
    if hasattr(optimizer, "optim_context"):
        with optimizer.optim_context(model):
            loss = model(inputs, targets)
        optimizer.backward(loss)
    else:
        model(inputs, targets).backward()


def step(optimizer) -> None:
    optimizer.step()
    optimizer.zero_grad()


def batches():
    return [data(seed) for seed in range(STEPS)]


def compare(make_optimizer, *, make_reference=None, only=None, matrices=False,
            same_gradients=False) -> dict:
    """STEPS steps of the sharded model (this rank's half of each batch) and of the reference
    (the whole batch), each with the optimizer or optim wrapper its factory makes.

    ``only``: shard just these layers; the others are plain replicas whose gradients are
    averaged over the ranks (what DDP would do). ``same_gradients``: the sharded model steps
    its slices of the reference's gradients instead of FSDP's (the optimizers' own difference,
    without the order in which FSDP averages the halves).
    """
    from torch.distributed.tensor import distribute_tensor
    torch.manual_seed(0)
    reference = ShardNet(matrices=matrices)
    torch.manual_seed(0)
    model = shard(ShardNet(matrices=matrices), only)
    optimizer = make_optimizer(model)
    reference_optimizer = (make_reference or make_optimizer)(reference)
    rank, world = dist.get_rank(), dist.get_world_size()
    for inputs, targets in batches():
        backward(reference, reference_optimizer, inputs, targets)
        backward(model, optimizer, inputs.chunk(world)[rank], targets.chunk(world)[rank])
        for p, q in zip(model.parameters(), reference.parameters()):
            if same_gradients:
                p.grad = distribute_tensor(q.grad, p.device_mesh, p.placements)
            elif not isinstance(p, DTensor) and p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world
        step(reference_optimizer)
        step(optimizer)
    result = {"error": relative_error(model, reference)}
    flops = getattr(getattr(optimizer, "optimizer", optimizer), "last_step_ns_flops", None)
    if flops is not None:
        result["ns_flops"] = flops
    return result


def one_matrix() -> dict:
    """One sharded matrix over two ranks: the rank that owns none still takes part."""
    from visdet_mmext.algorithms.muon import Muon
    torch.manual_seed(0)
    reference = nn.Linear(16, 7, bias=False)
    torch.manual_seed(0)
    model = fully_shard(nn.Linear(16, 7, bias=False))
    optimizer, reference_optimizer = Muon(model.parameters()), Muon(reference.parameters(),
                                                                    distributed=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    for inputs, _ in batches():
        for net, opt, x in ((model, optimizer, inputs.chunk(world)[rank]),
                            (reference, reference_optimizer, inputs)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    return {"error": relative_error(model, reference), "ns_flops": optimizer.last_step_ns_flops}


def native_cases() -> dict:
    from visdet_mmext.algorithms.lamb import LAMB
    from visdet_mmext.algorithms.lion import Lion
    from visdet_mmext.algorithms.muon import Muon

    def muon(**kw):
        return lambda m: Muon(m.parameters(), **kw)

    cases = {
        "Lion": (lambda m: Lion(m.parameters()), None),
        "Lion fast=False": (lambda m: Lion(m.parameters(), fast=False), None),
        "Lion foreach=False": (lambda m: Lion(m.parameters(), fast=False, foreach=False), None),
        "LAMB": (lambda m: LAMB(m.parameters()), None),
        "LAMB foreach=False": (lambda m: LAMB(m.parameters(), foreach=False), None),
        "AdamW": (lambda m: torch.optim.AdamW(m.parameters()), None),
        # single-process Muon: every matrix orthogonalised here, on the whole batch's gradients
        "Muon": (muon(), muon(distributed=False)),
        "Muon fast=False": (muon(fast=False), muon(distributed=False)),
        "Muon foreach=False": (muon(fast=False, foreach=False), muon(distributed=False)),
        "Muon distributed=False": (muon(distributed=False), muon(distributed=False)),
    }
    out = {}
    for name, (make, make_reference) in cases.items():
        out[name] = compare(make, make_reference=make_reference)
    out["Muon same gradients"] = compare(muon(), make_reference=muon(distributed=False),
                                         same_gradients=True)
    out["Muon one matrix"] = one_matrix()
    # mixed: only some layers sharded, the rest plain replicas with averaged gradients
    out["Muon mixed"] = compare(muon(), make_reference=muon(distributed=False),
                                only=("hidden", "wide", "head"))
    out["Lion mixed"] = compare(lambda m: Lion(m.parameters()), only=("hidden", "wide", "head"))
    return out


def catalog_cases(names) -> dict:
    """Each name through the package constructor: trained and compared (on the same gradients:
    some optimizers, e.g. RMSprop's first steps, magnify the last bits FSDP's averaging order
    leaves in tiny gradients), or refused (by the config check the tools and the strategy run,
    and by the constructor on the sharded model)."""
    from mmengine.optim import build_optim_wrapper

    from sweep_settings import sweep_settings
    from toy import MATRICES_ONLY
    from visdet_mmext.catalog import CATALOG
    from visdet_mmext.errors import OptimizerConfigError
    from visdet_mmext.optim.validation import check_sharded

    out = {}
    for name in names:
        spec = CATALOG[name]
        settings, _ = sweep_settings(name)
        cfg = dict(optimizer=dict(type=name, **settings))
        if spec.fsdp_impossible is not None:
            out[name] = record = {}
            for where, attempt in (("config", lambda: check_sharded(name)),
                                   ("constructor", lambda: build_optim_wrapper(shard(ShardNet()),
                                                                               cfg))):
                if where == "constructor" and spec.provider == "deepspeed":
                    continue  # (building its op first would take minutes)
                try:
                    attempt()
                    record[where] = None
                except OptimizerConfigError as error:
                    record[where] = str(error)
            continue
        try:
            out[name] = compare(lambda model: build_optim_wrapper(model, cfg),
                                matrices=name in MATRICES_ONLY, same_gradients=True)
        except Exception as error:  # noqa: BLE001 - recorded and reported by the test
            out[name] = {"failed": f"{type(error).__name__}: {error}",
                         "traceback": traceback.format_exc()[-3000:]}
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--names", nargs="*", default=None,
                        help="catalog names (default: every usable one)")
    parser.add_argument("--parts", nargs="*", default=("native", "catalog", "routing"))
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    import visdet_mmext
    names = args.names if args.names is not None else visdet_mmext.REPORT.usable_names()
    parts = {"native": native_cases, "catalog": lambda: catalog_cases(names),
             "routing": lambda: fsdp_traced_routing.run(osp.join(osp.dirname(args.out), "routing"))}
    results = {part: parts[part]() for part in args.parts}
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()  # before destroying the group: see tests/jobs/hf_routing_ddp.py
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
