"""ZeRO-Offload from plain mmengine configs, through the real FlexibleRunner and DeepSpeed engines.

Every run is a subprocess (``tests/jobs/deepspeed_train.py``: one DeepSpeed engine per
process, as DeepSpeed and mmengine keep global state) training the configs in
the packaged ``deepspeed/`` configs with a tiny model swapped in. The first run on a machine JIT-builds
DeepSpeed's CPU ops (cached in ``TORCH_EXTENSIONS_DIR``).
"""
from __future__ import annotations

import os

import pytest

from deepspeed_jobs import CONFIGS, FP32, ROOT, ZERO2, ZERO3, assert_same_params, run_job

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

# -- ZeRO-2 + CPU offload, type='AdamW', single process ------------------------------------------

@pytest.fixture(scope="module")
def zero2(tmp_path_factory):
    return run_job(tmp_path_factory, "zero2", ZERO2).check()


def test_zero2_offload_adamw_trains_as_deepspeed_cpu_adam(zero2):
    result = zero2.result
    assert result["strategy"] == "visdet_mmext.deepspeed.strategy.DeepSpeedStrategy"
    assert result["basic_optimizer"] == "DeepSpeedCPUAdam"
    assert result["optimizer"] == "DeepSpeedZeroOptimizer"
    assert result["plan"].startswith("AdamW -> DeepSpeedCPUAdam(lr=0.01")
    assert "adamw_mode=True" in result["plan"]
    assert result["iter"] == 32 and result["epoch"] == 4
    assert result["config"]["gradient_clipping"] == 0.0  # mmengine's default: no clipping
    losses = result["losses"]
    assert sum(losses[-8:]) < 0.8 * sum(losses[:8]), losses
    layout = set(os.listdir(zero2.checkpoint(4)))
    assert {"mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"} <= layout
    assert "RANK=0" in zero2.log and "MASTER_ADDR=127.0.0.1" in zero2.log


def test_zero2_offload_adamw_equals_plain_adamw_without_deepspeed(zero2, tmp_path_factory):
    """lr, betas, eps and the paramwise weight-decay groups carry over to DeepSpeedCPUAdam."""
    plain = run_job(tmp_path_factory, "plain", ZERO2, "strategy=None",
                    "optim_wrapper.type=OptimWrapper").check()
    assert plain.result["basic_optimizer"] == "AdamW"
    assert_same_params(zero2.params, plain.params, **FP32)
    assert zero2.result["losses"] == pytest.approx(plain.result["losses"], rel=1e-4)


def test_zero2_offload_resumes_in_a_new_process_like_an_uninterrupted_run(zero2,
                                                                          tmp_path_factory):
    resumed = run_job(tmp_path_factory, "zero2_resumed", ZERO2, resume=zero2.checkpoint(2)).check()
    assert "Resume checkpoint from" in resumed.log
    assert resumed.result["iter"] == 32 and len(resumed.result["losses"]) == 16
    assert resumed.result["basic_optimizer"] == "DeepSpeedCPUAdam"
    assert resumed.result["lr"] == pytest.approx(zero2.result["lr"])
    assert resumed.result["losses"] == pytest.approx(zero2.result["losses"][16:], rel=1e-5)
    assert_same_params(resumed.params, zero2.params, **FP32)


# -- two processes: torchrun + gloo on 127.0.0.1 --------------------------------------------------

def test_zero2_offload_trains_and_checkpoints_in_two_processes(tmp_path_factory):
    job = run_job(tmp_path_factory, "zero2_torchrun", ZERO2, nproc=2).check()
    assert job.result["world_size"] == 2
    assert job.result["basic_optimizer"] == "DeepSpeedCPUAdam"
    assert job.result["iter"] == 16  # 64 samples split over 2 ranks, batch 8: 4 iterations/epoch
    losses = job.result["losses"]
    assert sum(losses[-4:]) < sum(losses[:4]), losses
    layout = set(os.listdir(job.checkpoint(4)))
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= layout, layout


# -- ZeRO-3 with offload_param ------------------------------------------------------------------

def test_zero3_offload_param_trains_and_resumes(tmp_path_factory):
    full = run_job(tmp_path_factory, "zero3", ZERO3).check()
    assert full.result["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
    assert full.result["basic_optimizer"] == "DeepSpeedCPUAdam"
    assert full.result["config"]["zero_optimization"]["offload_param"] == {"device": "cpu"}
    losses = full.result["losses"]
    assert sum(losses[-8:]) < 0.8 * sum(losses[:8]), losses
    resumed = run_job(tmp_path_factory, "zero3_resumed", ZERO3, resume=full.checkpoint(2)).check()
    assert resumed.result["losses"] == pytest.approx(losses[16:], rel=1e-5)
    assert_same_params(resumed.params, full.params, **FP32)


# -- the other mappings ---------------------------------------------------------------------------

def test_zero1_offload_lion_trains_as_deepspeed_cpu_lion(tmp_path_factory):
    job = run_job(tmp_path_factory, "zero1_lion", os.path.join(CONFIGS, "zero1_offload_lion.py"),
                  "optim_wrapper.optimizer.lr=0.001", "optim_wrapper.clip_grad.max_norm=5.0").check()
    assert job.result["basic_optimizer"] == "DeepSpeedCPULion"
    assert job.result["config"]["gradient_clipping"] == 5.0  # from optim_wrapper.clip_grad
    assert job.result["plan"].startswith("Lion -> DeepSpeedCPULion(lr=0.001, betas=(0.9, 0.99)")
    losses = job.result["losses"]
    assert sum(losses[-8:]) < sum(losses[:8]), losses


def test_adagrad_under_offload_runs_deepspeeds_cpu_adagrad(tmp_path_factory):
    job = run_job(tmp_path_factory, "zero2_adagrad", ZERO2, "optim_wrapper.optimizer.type=Adagrad",
                  "optim_wrapper.optimizer.lr=0.05").check()
    assert job.result["basic_optimizer"] == "DeepSpeedCPUAdagrad"
    assert job.result["config"]["optimizer"]["type"] == "Adagrad"
    losses = job.result["losses"]
    assert sum(losses[-8:]) < sum(losses[:8]), losses


def test_muon_under_zero2_offload_runs_deepspeeds_muon_with_our_routing(tmp_path_factory):
    muon = os.path.join(CONFIGS, "zero2_offload_muon.py")
    job = run_job(tmp_path_factory, "zero2_muon", muon, "optim_wrapper.optimizer.lr=0.02").check()
    assert job.result["basic_optimizer"] == "MuonWithAuxAdam"
    assert job.result["config"]["optimizer"]["type"] == "Muon"
    # DeepSpeed's own rule would put every >=2-D weight on Muon; ours keeps the stem (reads the
    # image) and the head (the output layer) on Adam, and the hidden conv and fc on Muon.
    hidden = ("conv.weight", "fc.weight")
    assert job.result["use_muon"] == {name: name in hidden for name in job.result["use_muon"]}
    # ZeRO fixed the groups at engine start: the loss graph is read, only to report
    assert "Muon routing: the loss graph agrees with the structural routing" in job.log, job.log[-3000:]
    # ... and the result is this package's Muon, trained without DeepSpeed.
    plain = run_job(tmp_path_factory, "plain_muon", muon, "optim_wrapper.optimizer.lr=0.02",
                    "strategy=None", "optim_wrapper.type=OptimWrapper").check()
    assert plain.result["basic_optimizer"] == "Muon"
    assert job.result["losses"] == pytest.approx(plain.result["losses"], rel=1e-4)
    assert_same_params(job.params, plain.params, rtol=1e-4, atol=1e-5)


# -- refusals and the opt-in ----------------------------------------------------------------------

def test_unsupported_optimizer_under_offload_fails_before_the_first_step(tmp_path_factory):
    job = run_job(tmp_path_factory, "zero2_sgd", ZERO2, "optim_wrapper.optimizer.type=SGD",
                  "optim_wrapper.optimizer.momentum=0.9")
    assert job.returncode != 0 and job.result is None
    assert "DeepSpeedConfigError" in job.log
    for fix in ("has no DeepSpeed CPU version", "'AdamW'", "allow_untested_optimizer=True",
                "remove offload_optimizer"):
        assert fix in job.log, fix
    assert "Epoch(train)" not in job.log and not any(
        name.startswith("epoch_") for name in os.listdir(job.work_dir))


def test_the_opt_in_runs_an_unsupported_optimizer_with_a_warning(tmp_path_factory):
    job = run_job(tmp_path_factory, "zero2_sgd_opt_in", ZERO2, "optim_wrapper.optimizer.type=SGD",
                  "optim_wrapper.optimizer.momentum=0.9",
                  "strategy.allow_untested_optimizer=True").check()
    assert job.result["basic_optimizer"] == "SGD"
    assert job.result["config"]["zero_force_ds_cpu_optimizer"] is False
    assert job.result["config"]["zero_allow_untested_optimizer"] is True
    assert "slower" in job.log


def test_mmengines_documented_cpu_offload_key_works(tmp_path_factory):
    """mmengine's docs write ``zero_optimization=dict(stage=3, ..., cpu_offload=...)``."""
    config = os.path.join(ROOT, "tests", "jobs", "deepspeed_doc_style.py")
    job = run_job(tmp_path_factory, "legacy", config).check()
    assert "cpu_offload=True is deprecated" in job.log and "offload_optimizer" in job.log
    assert job.result["config"]["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}
    assert "cpu_offload" not in job.result["config"]["zero_optimization"]
    assert job.result["basic_optimizer"] == "DeepSpeedCPUAdam"
    assert job.result["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
