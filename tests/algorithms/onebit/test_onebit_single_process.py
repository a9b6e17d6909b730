"""One process: no process group, no communication; the stages still run."""
import torch

from subprocess_utils import run_json
from visdet_mmext.algorithms.onebit import OnebitAdam, OnebitLamb, ZeroOneAdam


def test_one_process_trains_without_communication():
    """No process group at all: warm-up, then frozen variance (no compression for one rank). In
    a fresh interpreter: an earlier test in this worker may have left a runner's group."""
    found = run_json("""
        import json, torch
        from visdet_mmext.algorithms.onebit import OnebitAdam
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 2)
        optimizer = OnebitAdam(model.parameters(), lr=0.1, freeze_step=2)
        inputs, targets = torch.randn(32, 8), torch.randint(0, 2, (32,))
        for _ in range(4):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
        print(json.dumps(dict(group=torch.distributed.is_initialized(), errors=optimizer.errors,
                              step=optimizer.global_step,
                              ranks=optimizer.state_dict()["onebit"]["ranks"])))
    """)
    assert found == dict(group=False, errors={}, step=4, ranks=[{"errors": {}, "params": {}}])


def test_coordinates_without_a_warmup_gradient_stay_put_after_the_freeze():
    """Their frozen variance is 0: a momentum there would step by m / eps (DeepSpeed's
    exp_avg_mask case: unused embedding rows), so it stays 0."""
    for make in (lambda p: OnebitAdam(p, lr=0.01, freeze_step=3),
                 lambda p: OnebitLamb(p, lr=0.01, freeze_step=3),
                 lambda p: ZeroOneAdam(p, lr=0.01, var_freeze_step=3, local_step_scaler=1)):
        embedding = torch.nn.Embedding(8, 4)
        start = embedding.weight.detach().clone()
        optimizer = make(embedding.parameters())
        for step in range(8):
            rows = torch.tensor([0, 1, 2] if step < 3 else [0, 1, 2, 7])  # row 7 appears late
            optimizer.zero_grad()
            embedding(rows).pow(2).sum().backward()
            optimizer.step()
        moved = (embedding.weight - start).abs().amax(dim=1)
        assert moved[7] == 0, type(optimizer).__name__
        assert moved[:3].min() > 0


def test_lamb_warmup_is_the_packages_lamb_to_the_bit():
    """Unclipped trust ratio: the warm-up is LAMB's per-tensor path, bit for bit (its C kernel
    and foreach path round differently, which training amplifies: the 2-process twin test
    compares against that path too)."""
    from visdet_mmext.algorithms.lamb import LAMB
    generator = torch.Generator().manual_seed(0)
    shapes = [(8, 3, 3, 3), (16,), (10, 16)]
    start = [torch.randn(s, generator=generator) for s in shapes]
    grads = [[torch.randn(s, generator=generator) * 10.0 ** -k for s in shapes] for k in range(6)]
    settings = dict(lr=2e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    finals = []
    for make in (lambda p: OnebitLamb(p, freeze_step=100, min_coeff=0.0, max_coeff=1e30,
                                      **settings),
                 lambda p: LAMB(p, fast=False, foreach=False, **settings)):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        optimizer = make(params)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.step()
        finals.append([p.detach() for p in params])
    for ours, theirs in zip(*finals):
        assert torch.equal(ours, theirs)
