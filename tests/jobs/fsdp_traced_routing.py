"""Muon routing read from the loss graph under FSDP2, through mmengine's real FlexibleRunner.

Called by tests/jobs/fsdp_optimizers.py on its ranks (one launch for both): RefPointNet
(tests/helpers/routing_models.py), whose structural routing the loss graph corrects, trains 3
iterations under ``FullyShardStrategy`` (this rank's half of each batch, a checkpoint per
iteration); a second run resumes from the first iteration's checkpoint. Then a hand-sharded net
whose forward computes with copies FSDP2 does not record: the routing must refuse to guess.
Returns, on every rank, what each rank saw (the test reads rank 0's file).
"""
from __future__ import annotations

import logging
import os.path as osp
import uuid

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from routing_models import RefPointNet, ref_point_data
from runner_utils import DictDataset

ITERS = 3
BATCH = 4  # per rank
MUON = dict(optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01),
            constructor="VisdetOptimWrapperConstructor")


def sides(optimizer) -> dict[str, str]:
    return {name: "Muon" if group["use_muon"] else "AdamW" for group in optimizer.param_groups
            for name, p in zip(group["param_names"], group["params"]) if p.ndim >= 2}


class Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def _train(work_dir: str, **extra) -> dict:
    from mmengine.logging import MMLogger
    from mmengine.runner import FlexibleRunner

    torch.manual_seed(0)
    runner = FlexibleRunner(
        model=RefPointNet(), work_dir=work_dir, strategy=dict(type="FullyShardStrategy"),
        train_dataloader=dict(dataset=DictDataset(ref_point_data(n=ITERS * BATCH * 2)),
                              batch_size=BATCH, num_workers=0,
                              sampler=dict(type="InfiniteSampler", shuffle=False),
                              collate_fn=dict(type="default_collate")),
        train_cfg=dict(by_epoch=False, max_iters=ITERS, val_interval=1000),
        optim_wrapper=MUON,
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
        randomness=dict(seed=0), default_scope="mmengine", log_level="INFO",
        experiment_name=f"fsdp_routing_{uuid.uuid4().hex[:8]}", **extra)
    messages = Messages()
    MMLogger.get_current_instance().addHandler(messages)
    runner.train()
    MMLogger.get_current_instance().removeHandler(messages)
    return {"sides": sides(runner.optim_wrapper.optimizer),
            "messages": [m for m in messages.lines if "Muon routing" in m]}


class CopyingLinear(nn.Module):
    """A hand-made sharding wrapper FSDP2 knows nothing of: its weight is a DTensor of this
    rank's rows, and its forward computes with a whole copy that is a leaf of its own (as
    FSDP2's gathered copies are), recorded nowhere the routing can read."""

    def __init__(self, rows, cols):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor
        super().__init__()
        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        self.weight = nn.Parameter(distribute_tensor(torch.randn(rows, cols) / cols ** 0.5, mesh,
                                                     [Shard(0)]))
        self.copy = None

    def forward(self, x):
        if self.copy is None:
            self.copy = nn.Parameter(self.weight.full_tensor().detach())
        return F.linear(x, self.copy)


def _unrecorded_copies() -> dict:
    """A walk that cannot see the head's weight reads past the head's product and calls
    ``hidden`` a final predictor; the structural routing must stay instead, with a warning
    that names why."""
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper

    torch.manual_seed(0)
    model = nn.Sequential()
    model.stem, model.hidden = nn.Linear(6, 16), nn.Linear(16, 16)
    model.head = CopyingLinear(3, 16)
    messages = Messages()
    MMLogger.get_current_instance().addHandler(messages)
    wrapper = build_optim_wrapper(model, MUON)
    x = torch.relu(model.hidden(torch.relu(model.stem(torch.randn(4, 6)))))
    wrapper.backward(model.head(x).square().mean())
    MMLogger.get_current_instance().removeHandler(messages)
    return {"sides": sides(wrapper.optimizer),
            "messages": [m for m in messages.lines if "Muon routing" in m]}


def run(work_dir: str) -> dict:
    full = _train(osp.join(work_dir, "full"))
    resumed = _train(osp.join(work_dir, "resumed"), resume=True,
                     load_from=osp.join(work_dir, "full", "iter_1.pth"))
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, {"full": full, "resumed": resumed,
                                   "unrecorded": _unrecorded_copies()})
    return {"work_dir": work_dir, "ranks": ranks}
