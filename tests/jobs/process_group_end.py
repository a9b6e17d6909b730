"""Under torchrun: ended_together ends a group made inside it on every rank, leaves one the
caller made, and leaves one whose block raised. Prints each rank's findings as JSON."""
import json

import torch.distributed as dist

from visdet_mmext.runtime.process_group import ended_together

found = {}
with ended_together():
    dist.init_process_group("gloo")
    dist.all_reduce(__import__("torch").ones(1))
found["made inside"] = dist.is_initialized()
dist.init_process_group("gloo")
with ended_together():
    pass
found["the caller's"] = dist.is_initialized()
dist.destroy_process_group()
try:
    with ended_together():
        dist.init_process_group("gloo")
        raise RuntimeError("stopped")
except RuntimeError:
    found["after a raise"] = dist.is_initialized()
print(json.dumps({"rank": dist.get_rank(), **found}), flush=True)
dist.barrier()
dist.destroy_process_group()
