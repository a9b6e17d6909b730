"""OnebitAdam, OnebitLamb and ZeroOneAdam trained by tools/train.py --launcher pytorch on two
gloo processes (tests/jobs/onebit/resume_job.py, about a minute): warm-up equals the baseline, exact
resume from the warm-up and from the compression stage, bytes per step, and the refusals."""
import json

import pytest
import torch

from demo_utils import assert_same_tensors, state_of
from onebit_launch import torchrun

ITERS, FREEZE = 14, 4  # as in the job
ONEBIT = ("onebit_adam", "onebit_lamb", "zero_one_adam")
BASELINE = {"onebit_adam": "adam", "onebit_lamb": "lamb", "zero_one_adam": "adam"}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("onebit_runs")
    torchrun("resume_job.py", 2, out)
    results = json.loads((out / "results.json").read_text())
    assert set(results["codes"].values()) == {0}, results["codes"]
    return out, results


def final(out, run):
    return state_of(str(out / run / f"iter_{ITERS}.pth"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ONEBIT)
def test_warmup_equals_the_baseline_on_averaged_gradients(job, name):
    """Kept in the warm-up, each is its baseline (torch's Adam; this package's LAMB) under DDP."""
    out, _ = job
    ours, theirs = final(out, f"twin_{name}")["state_dict"], \
        final(out, f"baseline_{BASELINE[name]}")["state_dict"]
    for key, expected in theirs.items():
        if expected.is_floating_point():
            error = (ours[key] - expected).abs().max() / expected.abs().max().clamp(min=1e-30)
            assert error <= 1e-6, (key, float(error))


@pytest.mark.slow
@pytest.mark.parametrize("name", ONEBIT)
def test_resume_from_warmup_and_from_compression_is_exact(job, name):
    out, _ = job
    whole = final(out, f"whole_{name}")
    for start in (3, 10):
        resumed = final(out, f"from{start}_{name}")
        for part in ("state_dict", "optimizer", "param_schedulers"):
            assert_same_tensors(resumed[part], whole[part], f"from {start}: {part}")
    # the compression-stage checkpoint really holds two different ranks' state
    saved = state_of(str(out / f"whole_{name}" / "iter_10.pth"))["optimizer"]
    first, second = saved["onebit"]["ranks"]
    assert saved["onebit"]["world_size"] == 2 and saved["onebit"]["step"] == 10
    assert not torch.equal(first["errors"]["worker_error"], second["errors"]["worker_error"])
    if name == "zero_one_adam":  # inside a local-step interval: the ranks' momenta differ
        assert "anchor" in saved["state"][0]
        assert not torch.equal(first["params"][0]["exp_avg"], second["params"][0]["exp_avg"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ONEBIT)
def test_bytes_per_step_after_warmup_are_at_most_a_sixteenth_of_ddp(job, name):
    _, results = job
    sent = results["sent_per_iter"]
    ddp = max(sent[f"baseline_{BASELINE[name]}"])  # DDP's fp32 gradient all-reduce
    warmup, compressed = sent[f"whole_{name}"][:FREEZE], sent[f"whole_{name}"][FREEZE:]
    assert warmup == sent[f"baseline_{BASELINE[name]}"][:FREEZE]  # warm-up: DDP averages
    assert 0 < max(compressed) <= ddp / 16, (compressed, ddp)
    if name == "zero_one_adam":
        assert 0 in compressed  # local steps send nothing


@pytest.mark.slow
def test_setups_that_cannot_work_are_refused_with_the_fix(job):
    refusals = job[1]["refusals"]
    assert "loss-scale overflow" in refusals["amp"]
    assert "Fix: train in fp32" in refusals["amp"]
    assert "not a DistributedDataParallel" in refusals["not_ddp"] and "Fix:" in refusals["not_ddp"]
    assert "sharded by FSDP" in refusals["fsdp"] and "Fix:" in refusals["fsdp"]
    assert "install_ddp_hook" in refusals["no_hook"]
