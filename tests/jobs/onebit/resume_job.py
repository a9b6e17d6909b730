"""tools/train.py on the demo configs shrunk to seconds, for tests/algorithms/onebit/test_onebit_runs.py:

* twins: each 1-bit config kept in its warm-up for the whole run, next to its baseline (adam.py,
  lamb.py on its per-tensor path) with the same settings;
* exact resume: each 1-bit config with a checkpoint every iteration, resumed from one inside the
  warm-up and from one inside the compression stage (0/1 Adam: inside a local-step interval);
* refusals that need a 2-process world (AMP, a model that is not DDP, FSDP, no DDP hook).

Checkpoints stay under OUT_DIR; bytes per iteration and messages go to OUT_DIR/results.json.
"""
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from demo_utils import cli_options
from train_runs import derived_config, train
from visdet_mmext.algorithms.onebit import OnebitAdam
from visdet_mmext.algorithms.onebit.traffic import register_counting_backend
from visdet_mmext.errors import OptimizerConfigError
from visdet_mmext.optim.onebit_setup import connect_onebit

ITERS = 14
FREEZE = 4  # compression from step 5
RESUME_FROM = (3, 10)  # inside the warm-up; inside the compression (0/1 Adam: mid-interval)
TINY = [*cli_options(iters=ITERS, validate=False, num_train=256, batch_size=16),
        "model.widths=[8,16,32]"]
EVERY_ITER = [*cli_options(iters=ITERS, validate=False, num_train=256, batch_size=16,
                           checkpoint_interval=1), "model.widths=[8,16,32]"]
BASELINES = {
    "adam.py": "",
    # LAMB's per-tensor path: its C kernel and foreach path round differently (1e-7 per step),
    # which 14 steps of training amplify to 1e-3
    "lamb.py": "optim_wrapper = dict(optimizer=dict(fast=False, foreach=False))\n",
}
TWINS = {  # whole run in the warm-up (0/1 Adam: every step a variance step)
    "onebit_adam.py": "optim_wrapper = dict(optimizer=dict(freeze_step=100))\n",
    "onebit_lamb.py": "optim_wrapper = dict(optimizer=dict(freeze_step=100, min_coeff=0.0, "
                      "max_coeff=1e30))\n",  # LAMB's trust ratio is not clipped
    "zero_one_adam.py": "optim_wrapper = dict(optimizer=dict(var_freeze_step=100, "
                        "var_update_scaler=100))\n",
}
SHORT_WARMUP = {
    "onebit_adam.py": f"optim_wrapper = dict(optimizer=dict(freeze_step={FREEZE}))\n",
    "onebit_lamb.py": f"optim_wrapper = dict(optimizer=dict(freeze_step={FREEZE}))\n",
    "zero_one_adam.py": f"optim_wrapper = dict(optimizer=dict(var_freeze_step={FREEZE}, "
                        "local_step_scaler=1, local_step_clipper=4))\n",
}


def refusal(function) -> str:
    try:
        function()
    except (OptimizerConfigError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def refusals(out_dir: str, rank: int) -> dict:
    messages = {}
    # (on a CPU machine the AMP wrapper itself is refused earlier, for want of a GPU)
    amp_model = nn.parallel.DistributedDataParallel(nn.Linear(4, 4))
    messages["amp"] = refusal(lambda: connect_onebit(amp_model, OnebitAdam(amp_model.parameters()),
                                                     {"type": "AmpOptimWrapper"}))
    model = nn.Linear(4, 4)
    messages["not_ddp"] = refusal(lambda: connect_onebit(model, OnebitAdam(model.parameters()), {}))
    from torch.distributed.fsdp import FullyShardedDataParallel
    sharded = FullyShardedDataParallel(nn.Linear(4, 4), device_id=torch.device("cpu"))
    messages["fsdp"] = refusal(lambda: connect_onebit(sharded, OnebitAdam(sharded.parameters()),
                                                      {}))
    ddp = nn.parallel.DistributedDataParallel(nn.Linear(4, 4))
    unhooked = OnebitAdam(ddp.parameters())
    ddp(torch.ones(2, 4)).sum().backward()
    messages["no_hook"] = refusal(unhooked.step)
    return messages


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(register_counting_backend())
    rank = dist.get_rank()
    results = {"sent_per_iter": {}, "codes": {}}

    def run(name, config, lines, options, resume=None):
        code, _, sent = train(derived_config(f"optimizers/{config}", out_dir, rank, lines),
                              os.path.join(out_dir, name), *options, resume=resume)
        results["codes"][name], results["sent_per_iter"][name] = code, sent

    for baseline, lines in BASELINES.items():
        run(f"baseline_{baseline[:-3]}", baseline, lines, TINY)
    for config, lines in TWINS.items():
        run(f"twin_{config[:-3]}", config, lines, TINY)
    for config, lines in SHORT_WARMUP.items():
        name = config[:-3]
        run(f"whole_{name}", config, lines, EVERY_ITER)
        for start in RESUME_FROM:
            checkpoint = os.path.join(out_dir, f"whole_{name}", f"iter_{start}.pth")
            run(f"from{start}_{name}", config, lines, EVERY_ITER, resume=checkpoint)
    results["refusals"] = refusals(out_dir, rank)
    if rank == 0:
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
