"""Distributed Muon: the ranks share the Newton-Schulz work, the parameters stay single-process.

Through the real chain: torchrun, tools/train.py --launcher pytorch (gloo, mmengine's
MMDistributedDataParallel), the package constructor's routing, a recording hook
(tests/jobs/muon_step_recorder.py). The recorded averaged gradients are then replayed in this
process by a Muon with distributed=False.
"""
import os

import pytest
import torch

from demo_utils import (CONFIGS, ROOT, TRAIN, assert_same_tensors, cli_options, state_of,
                        torchrun)
from visdet_mmext.algorithms.muon import Muon
from visdet_mmext.algorithms.muon.distributed import assign, ns_flops

DEMO = os.path.join(CONFIGS, "demo", "demo_transformer_muon.py")


def test_shares_balance_flops_and_depend_only_on_the_shapes():
    shapes = [(512, 4608)] * 3 + [(512, 2048)] * 5 + [(1000, 2048), (256, 2304), (64, 64)]
    costs = [ns_flops(rows, cols, 5) for rows, cols in shapes]
    assert assign(costs, 1) == [0] * len(costs)
    for world in (2, 3, 4):
        owners = assign(costs, world)
        assert owners == assign(list(costs), world)
        loads = [sum(c for c, o in zip(costs, owners) if o == r) for r in range(world)]
        # greedy largest-first: no rank exceeds the even share by more than one matrix
        assert max(loads) <= sum(costs) / world + max(costs)
        assert min(loads) > 0
    assert ns_flops(4, 32, 5) == ns_flops(32, 4, 5) == 5 * (4 * 4 * 4 * 32 + 2 * 4 ** 3)


def _torchrun(nproc: int, *argv: str) -> None:
    result = torchrun(nproc, TRAIN, *argv, "--launcher", "pytorch")
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])


def _config(tmp_path, record_dir) -> str:
    config = tmp_path / f"{record_dir.name}_muon.py"
    # two blocks: every attention/MLP shape twice, so shares hold same-shaped batches
    config.write_text(
        f"_base_ = [{DEMO!r}]\n"
        "model = dict(embed_dim=16, depth=2, num_heads=2)\n"
        "custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', "
        "'muon_step_recorder'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='MuonStepRecorder', out={str(record_dir)!r})]\n")
    return str(config)


def _replay(record: dict) -> tuple[float, list[float]]:
    """Max relative parameter difference of a one-process Muon on the recorded gradients, and
    its Newton-Schulz FLOPs per step."""
    params = [torch.nn.Parameter(t.clone()) for t in record["initial"]]
    remaining = iter(params)
    groups = [{k: v for k, v in g.items() if k != "size"} | {
        "params": [next(remaining) for _ in range(g["size"])]} for g in record["steps"][0]["groups"]]
    optimizer = Muon(groups, distributed=False)
    worst, flops = 0.0, []
    for step in record["steps"]:
        for group, settings in zip(optimizer.param_groups, step["groups"]):
            group.update({k: v for k, v in settings.items() if k != "size"})
        for p, grad in zip(params, step["grads"]):
            p.grad = grad
        optimizer.step()
        flops.append(optimizer.last_step_ns_flops)
        for mine, theirs in zip(params, step["params"]):
            error = (theirs.double() - mine.detach().double()).norm() / mine.detach().double().norm()
            worst = max(worst, error.item())
    return worst, flops


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 4])
def test_runner_ddp_muon_equals_one_process_on_the_same_gradients(tmp_path, nproc):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU (gloo) path")
    records, work = tmp_path / "records", tmp_path / "work"
    options = cli_options(iters=4, checkpoint_interval=2, validate=False)
    _torchrun(nproc, _config(tmp_path, records), "--work-dir", str(work), "--cfg-options", *options)
    ranks = [torch.load(records / f"rank{r}.pt") for r in range(nproc)]
    for other in ranks[1:]:  # every rank applied every update: identical parameters
        for a, b in zip(ranks[0]["steps"], other["steps"]):
            assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    worst, flops = _replay(ranks[0])
    assert worst <= 1e-6
    for step, total in enumerate(flops):
        shares = [r["steps"][step]["ns_flops"] for r in ranks]
        assert sum(shares) == pytest.approx(total)  # each matrix orthogonalised once
        assert max(shares) < 0.75 * total  # the work is split, not repeated
    if nproc == 2:  # resume from the middle: the same checkpoint as the uninterrupted run
        resumed = tmp_path / "resumed"
        _torchrun(nproc, _config(tmp_path, tmp_path / "resumed_records"), "--work-dir",
                  str(resumed), "--resume", str(work / "iter_2.pth"), "--cfg-options", *options)
        whole, again = state_of(work / "iter_4.pth"), state_of(resumed / "iter_4.pth")
        for part in ("state_dict", "optimizer"):
            assert_same_tensors(again[part], whole[part], part)


@pytest.mark.slow
def test_ranks_with_different_matrices_are_refused():
    result = torchrun(2, os.path.join(ROOT, "tests", "jobs", "muon_mismatched_ranks.py"))
    assert result.returncode == 0, result.stderr[-3000:]
    refused = [line for line in result.stdout.splitlines() if line.startswith("refused:")]
    assert len(refused) == 2
    assert all("distributed=False" in m and "different Muon matrices" in m for m in refused)
