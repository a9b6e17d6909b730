"""torchrun job: two ranks hold different Muon matrices (as under sharded parameters); each
prints the error distributed Muon raises."""
import sys

import torch

from visdet_mmext.algorithms.muon import Muon

torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank()
p = torch.nn.Parameter(torch.ones(4, 3 + rank))
p.grad = torch.ones_like(p)
try:
    Muon([p]).step()
except RuntimeError as error:
    # one write of the whole line: the ranks share stdout, and print's separate write of the
    # newline lets the other rank's line land in between
    sys.stdout.write(f"refused: {error}\n")
    sys.stdout.flush()
torch.distributed.barrier()  # before destroying the group: see tests/jobs/hf_routing_ddp.py
torch.distributed.destroy_process_group()
