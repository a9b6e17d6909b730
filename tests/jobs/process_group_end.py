"""Under torchrun, one case of ended_together per launch (a process initialises its group once:
a second group in one torchrun process can meet the first one's keys in torchrun's store).
Prints the rank and whether the group is still there, as JSON."""
import json
import sys

import torch
import torch.distributed as dist

from visdet_mmext.runtime.process_group import ended_together

case = sys.argv[1]
if case == "made inside":
    with ended_together():
        dist.init_process_group("gloo")
        dist.all_reduce(torch.ones(1))
        rank = dist.get_rank()
elif case == "the caller's":
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    with ended_together():
        dist.all_reduce(torch.ones(1))
else:  # "after a raise"
    try:
        with ended_together():
            dist.init_process_group("gloo")
            rank = dist.get_rank()
            raise RuntimeError("stopped")
    except RuntimeError:
        pass
# one write per line: the ranks print at once
sys.stdout.write(json.dumps({"rank": rank, "group": dist.is_initialized()}) + "\n")
sys.stdout.flush()
if dist.is_initialized():
    dist.barrier()
    dist.destroy_process_group()
