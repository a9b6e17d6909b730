"""Sophia and schedule-free training in mmengine's distributed runs (torchrun,
tools/train.py --launcher pytorch, gloo, 2 processes; per-rank records from tests/jobs/).

SophiaG: each rank draws labels from its own logits, so its sampled gradients differ; the
estimate is of the global batch (the ranks' mean gradient, every rank's samples counted), the
same on every rank, and the parameters stay identical, as plain DDP's do. Without the average,
the ranks' estimates and then their parameters drift apart. SophiaH (Hessian-vector products
through the backward's graph, which DDP's all-reduce does not keep) is refused before training.

Schedule-free: DDP keeps the BatchNorm statistics per rank (mmengine's default); the averaged
weights, and the statistics recomputed for them from the same training batches on every rank,
are identical on every rank, so every rank validates, and the checkpoint holds, one model.
"""
import os
import re

import pytest
import torch

from demo_utils import CONFIGS, TRAIN, cli_options, torchrun

pytestmark = pytest.mark.slow

BETA2 = 0.99  # configs/optimizers/sophia_g.py
BATCH = 32


def _torchrun(*argv: str, log_dir=None):
    return torchrun(2, TRAIN, *argv, "--launcher", "pytorch", log_dir=log_dir)


def _train_recorded(tmp_path, base: str, job: str, hook: str, iters: int, extra: str = ""):
    """Train the packaged config ``base`` with the recording ``hook`` from tests/jobs/``job``;
    the ranks' records."""
    records, config = tmp_path / "records", tmp_path / f"{job}.py"
    config.write_text(
        f"_base_ = [{os.path.join(CONFIGS, 'optimizers', base)!r}]\n{extra}"
        f"custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', {job!r}], "
        "allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type={hook!r}, out={str(records)!r})]\n")
    result = _torchrun(str(config), "--work-dir", str(tmp_path / "work"), "--cfg-options",
                       *cli_options(iters=iters, batch_size=BATCH))
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return [torch.load(records / f"rank{r}.pt") for r in range(2)]


def test_sophia_g_estimates_the_global_batch_and_keeps_the_ranks_equal(tmp_path):
    ranks = _train_recorded(tmp_path, "sophia_g.py", "sophia_rank_recorder", "SophiaRankRecorder",
                            iters=7, extra="optim_wrapper = dict(optimizer=dict(update_period=3))\n")
    for record in ranks:
        assert len(record["local"]) == len(record["received"]) == 3  # steps 1, 4, 7
        assert [samples for samples, _ in record["received"]] == [2 * BATCH] * 3
    # the ranks drew different labels from different data: their own gradients differ
    first = [r["local"][0] for r in ranks]
    assert any(not torch.equal(a, b) for a, b in zip(*first) if a is not None)
    mean = [None if a is None else (a.double() + b.double()) / 2 for a, b in zip(*first)]
    for record in ranks:
        for expected, received, hessian in zip(mean, record["received"][0][1], record["hessian"]):
            assert expected is not None  # the demo model has a gradient for every parameter
            assert torch.allclose(received.double(), expected, rtol=1e-6, atol=1e-9)
            # h = (1 - beta2) * B * g^2 at the first refresh, B the global batch
            oracle = (1 - BETA2) * 2 * BATCH * expected ** 2
            assert torch.allclose(hessian.double(), oracle, rtol=1e-5, atol=1e-12)
    assert len(ranks[0]["params"]) == 7
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_sophia_h_is_refused_before_training(tmp_path):
    result = _torchrun(os.path.join(CONFIGS, "optimizers", "sophia_h.py"), "--work-dir",
                       str(tmp_path / "work"), "--cfg-options", *cli_options(iters=3),
                       log_dir=tmp_path / "logs")
    assert result.returncode != 0
    # torchrun's report: the first rank to stop exited 2; it then stops the other one, which may
    # have exited 2 as well or be ended by SIGTERM (-15) first
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", result.stderr)
    assert "2" in codes and set(codes) <= {"2", "-15"}, result.stderr[-3000:]
    outputs = [(folder / "stdout.log").read_text() + (folder / "stderr.log").read_text()
               for folder in (tmp_path / "logs").glob("*/attempt_0/[01]")]
    assert len(outputs) == 2
    assert any("use SophiaG (its estimate is averaged over the ranks)" in o for o in outputs)
    for output in outputs:
        assert "Traceback" not in output
        assert "Iter(train)" not in output


def test_schedule_free_ranks_hold_one_averaged_model(tmp_path):
    ranks = _train_recorded(tmp_path, "adamw_schedule_free.py", "rank_state_recorder",
                            "RankStateRecorder", iters=6)
    buffers = [k for k in ranks[0]["after_train"] if "running_" in k]
    assert buffers
    # while training, each rank's BatchNorm statistics come from its own shard of the data
    assert any(not torch.equal(ranks[0]["last_iteration"][k], ranks[1]["last_iteration"][k])
               for k in buffers)
    # after the switch: the averaged weights and their recomputed statistics, one model
    for key, value in ranks[0]["after_train"].items():
        assert torch.equal(value, ranks[1]["after_train"][key]), key
    weights = [k for k in ranks[0]["after_train"] if k.endswith("weight")]
    assert any(not torch.equal(ranks[0]["after_train"][k], ranks[0]["last_iteration"][k])
               for k in weights)  # x, not the training iterate y
