"""Each optimizer that communicates by itself (OnebitAdam, OnebitLamb, ZeroOneAdam, distributed
Muon) trains a small DDP model for a few steps past the 1-bit warm-up; every rank saves its
parameters and where torchrun placed it (OUT_DIR/TAG_rank<r>.pt).

    torchrun ... multinode_job.py OUT_DIR TAG

Data and seeds follow the global rank only, so any placement of the same world size must give
the same parameters.
"""
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from visdet_mmext.algorithms.muon import Muon
from visdet_mmext.algorithms.onebit import (OnebitAdam, OnebitLamb, OnebitOptimizer, ZeroOneAdam,
                                            install_ddp_hook)

STEPS, FREEZE = 8, 3
OPTIMIZERS = {
    "OnebitAdam": lambda p: OnebitAdam(p, lr=1e-2, freeze_step=FREEZE),
    "OnebitLamb": lambda p: OnebitLamb(p, lr=1e-2, freeze_step=FREEZE),
    # interval 2 from step 5 on: local steps and synchronisations both happen
    "ZeroOneAdam": lambda p: ZeroOneAdam(p, lr=1e-2, var_freeze_step=FREEZE,
                                         local_step_scaler=1, local_step_clipper=2),
    "Muon": lambda p: Muon(p, lr=0.02, distributed=True),
}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                         nn.Linear(32, 4))


def train(name: str, rank: int) -> list[torch.Tensor]:
    ddp = nn.parallel.DistributedDataParallel(model())
    optimizer = OPTIMIZERS[name](ddp.parameters())
    if isinstance(optimizer, OnebitOptimizer):
        install_ddp_hook(ddp, optimizer)
    data = torch.Generator().manual_seed(100 + rank)
    for _ in range(STEPS):
        inputs = torch.randn(8, 16, generator=data)
        labels = torch.randint(0, 4, (8,), generator=data)
        optimizer.zero_grad()
        nn.functional.cross_entropy(ddp(inputs), labels).backward()
        optimizer.step()
    return [p.detach().clone() for p in ddp.parameters()]


def main(out_dir: str, tag: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    placement = {key: int(os.environ[key]) for key in
                 ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")}
    params = {name: train(name, rank) for name in OPTIMIZERS}
    torch.save(dict(placement=placement, params=params,
                    initial=[p.detach() for p in model().parameters()]),
               f"{out_dir}/{tag}_rank{rank}.pt")
    dist.barrier()  # before destroying the group: see tests/jobs/hf_routing_ddp.py
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
