"""torchrun job: each Hugging Face model of tests/helpers/hf_models.py under DDP (gloo), one
update through the OptimWrapper with a different batch per rank; and a toy whose two ranks'
losses read different predictors. Each rank prints one JSON line per model: the side of every
tensor with >= 2 dims after the step, and a checksum of the parameters."""
import json
import os
import sys

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "helpers"))
import hf_models  # noqa: E402
import visdet_mmext  # noqa: E402,F401
from mmengine.optim import build_optim_wrapper  # noqa: E402

MUON = dict(optimizer=dict(type="Muon", lr=0.02, weight_decay=0.01),
            constructor="VisdetOptimWrapperConstructor")


class TwoHeads(nn.Module):
    """Rank 0's loss reads head_a only, rank 1's head_b only: only the ranks together see both.
    The heads are as wide as the hidden layer, so structure alone calls them hidden."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(6, 16)
        self.hidden = nn.Linear(16, 16)
        self.head_a = nn.Linear(16, 16)
        self.head_b = nn.Linear(16, 16)

    def forward(self, x, use_b: bool):
        h = torch.relu(self.hidden(torch.relu(self.stem(x))))
        return (self.head_b(h) if use_b else self.head_a(h)).square().mean()


def report(name, model, optimizer):
    sides = {n: "Muon" if g["use_muon"] else "AdamW" for g in optimizer.param_groups
             for n, p in zip(g["param_names"], g["params"]) if p.ndim >= 2}
    checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
    line = json.dumps(dict(rank=torch.distributed.get_rank(), model=name, sides=sides,
                           checksum=checksum))
    sys.stdout.write(line + "\n")  # one write per line: the ranks share stdout
    sys.stdout.flush()


def main():
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    torch.set_num_threads(1)
    for name in sys.argv[1:] or hf_models.HF_MODELS:
        model = hf_models.build(name)  # the same weights on every rank (seeded)
        wrapped = DistributedDataParallel(model, find_unused_parameters=True)
        wrapper = build_optim_wrapper(wrapped, MUON)
        batch = hf_models.HF_MODELS[name][1](seed=100 + rank)
        wrapper.update_params(hf_models.loss(wrapped, batch))
        report(name, model, wrapper.optimizer)
    torch.manual_seed(0)
    toy = TwoHeads()
    wrapped = DistributedDataParallel(toy, find_unused_parameters=True)
    wrapper = build_optim_wrapper(wrapped, MUON)
    wrapper.update_params(wrapped(torch.randn(4, 6, generator=torch.Generator().manual_seed(rank)),
                                  use_b=rank == 1))
    report("two_heads", toy, wrapper.optimizer)
    # torch 2.13's gloo group, destroyed with the last DDP model, joins its worker threads while
    # holding the GIL; a worker still releasing the last broadcast's tensors needs the GIL: a
    # deadlock. The barrier lets the workers finish first (it waits without the GIL).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
