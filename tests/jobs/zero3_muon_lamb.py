"""What ZeRO stage 3 makes of Muon and LAMB, against the same optimizer unsharded.

Run by torchrun (2 gloo processes) from tests/deepspeed/test_zero3_muon_lamb.py. Each optimizer is
built as the package builds it, mapped by ``plan_optimizer`` as ``DeepSpeedStrategy`` maps it
(Muon -> DeepSpeed's Muon with this package's routing; LAMB only with
``allow_untested_optimizer``) and handed to ``deepspeed.initialize`` at stage 3. Each rank trains
on its half of every batch; the unsharded reference on the whole batch. Rank 0 writes the
relative parameter difference after STEPS steps per optimizer.
"""
from __future__ import annotations

import json
import sys

import torch
from torch import nn

STEPS = 5


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 48), nn.ReLU(),
                         nn.Linear(48, 4))


def batches():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 16, generator=generator), torch.randint(0, 4, (16,), generator=generator))
            for _ in range(STEPS)]


def reference_run(make):
    model = net()
    optimizer = make(model.parameters())
    for inputs, targets in batches():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def zero3_run(make, allow_untested: bool):
    import deepspeed
    from deepspeed.runtime.zero.utils import is_zero_supported_optimizer

    from visdet_mmext.compat.deepspeed_muon import ROUTED
    from visdet_mmext.deepspeed.offload import plan_optimizer

    model = net()
    config = {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1,
              "gradient_clipping": 0.0, "zero_optimization": {"stage": 3}}
    plan = plan_optimizer(make(model.parameters()), config, zero_tested=is_zero_supported_optimizer,
                          allow_untested=allow_untested)
    if plan.kind == "config":  # DeepSpeed builds it (Muon), with this package's routing
        for param in model.parameters():
            setattr(param, ROUTED, plan.muon_tags[id(param)])
        engine, *_ = deepspeed.initialize(model=model, model_parameters=plan.groups,
                                          config=plan.config)
    else:
        engine, *_ = deepspeed.initialize(model=model, optimizer=make(model.parameters()),
                                          config=plan.config)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    for inputs, targets in batches():
        inputs, targets = inputs.chunk(world)[rank], targets.chunk(world)[rank]
        loss = nn.functional.cross_entropy(engine(inputs), targets)
        engine.backward(loss)
        engine.step()
    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        return [p.detach().clone() for p in params], plan


def relative(got, expected) -> float:
    return max(((a.double() - b.double()).norm() / b.double().norm()).item()
               for a, b in zip(got, expected))


def main():
    import deepspeed

    import visdet_mmext  # noqa: F401  (its DeepSpeed fixes)
    from visdet_mmext.algorithms.lamb import LAMB
    from visdet_mmext.algorithms.muon import Muon
    from visdet_mmext.errors import DeepSpeedConfigError

    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
    torch.set_num_threads(1)
    results = {}
    cases = {"Muon": (lambda ps: Muon(ps, lr=0.02, distributed=False), False),
             "LAMB": (lambda ps: LAMB(ps, lr=1e-2, weight_decay=0.01), False),
             "LAMB allow_untested_optimizer": (lambda ps: LAMB(ps, lr=1e-2, weight_decay=0.01),
                                               True)}
    for name, (make, allow_untested) in cases.items():
        try:
            got, plan = zero3_run(make, allow_untested)
        except DeepSpeedConfigError as error:
            results[name] = {"refused": str(error)}
            continue
        results[name] = {"error": relative(got, reference_run(make)), "warnings": plan.warnings,
                         "notes": plan.notes}
    if torch.distributed.get_rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
