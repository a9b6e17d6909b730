"""ZeRO on CUDA through the real FlexibleRunner: ZeRO-2 with the optimizer offloaded and ZeRO-3
with parameters offloaded, NCCL process groups, one device and (where there are two) two."""
import os

import pytest

from cuda_utils import two_gpus
from deepspeed_jobs import ZERO2, ZERO3, assert_same_params, run_job

pytestmark = [pytest.mark.cuda, pytest.mark.deepspeed, pytest.mark.slow]

#: two GPU runs of the same arithmetic: cuDNN's backward convolutions may add in another order
GPU_FP32 = dict(rtol=1e-4, atol=1e-5)


def check_on_cuda(job, world_size=1):
    result = job.result
    assert result["backend"] == "nccl" and result["world_size"] == world_size
    assert result["device"] == "cuda:0"  # rank 0's
    losses = result["losses"]
    quarter = len(losses) // 4  # one epoch; with two ranks, half the iterations
    factor = 0.8 if world_size == 1 else 1.0
    assert sum(losses[-quarter:]) < factor * sum(losses[:quarter]), losses


def test_zero2_offload_on_one_gpu_equals_plain_adamw(tmp_path_factory):
    zero2 = run_job(tmp_path_factory, "cuda_zero2", ZERO2).check()
    check_on_cuda(zero2)
    assert zero2.result["basic_optimizer"] == "DeepSpeedCPUAdam"  # steps the offloaded state
    assert zero2.result["optimizer"] == "DeepSpeedZeroOptimizer"
    plain = run_job(tmp_path_factory, "cuda_plain", ZERO2, "strategy=None",
                    "optim_wrapper.type=OptimWrapper").check()
    assert plain.result["basic_optimizer"] == "AdamW" and plain.result["device"] == "cuda:0"
    assert zero2.result["losses"] == pytest.approx(plain.result["losses"], rel=1e-3)
    assert_same_params(zero2.params, plain.params, **GPU_FP32)


def test_zero3_offload_param_on_one_gpu_trains_and_resumes(tmp_path_factory):
    full = run_job(tmp_path_factory, "cuda_zero3", ZERO3).check()
    check_on_cuda(full)
    assert full.result["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
    resumed = run_job(tmp_path_factory, "cuda_zero3_resumed", ZERO3,
                      resume=full.checkpoint(2)).check()
    assert resumed.result["losses"] == pytest.approx(full.result["losses"][16:], rel=1e-3)
    assert_same_params(resumed.params, full.params, **GPU_FP32)


@two_gpus
@pytest.mark.parametrize("config", [ZERO2, ZERO3], ids=["zero2_offload", "zero3_offload_param"])
def test_two_gpus_train_and_checkpoint_every_rank(tmp_path_factory, config):
    job = run_job(tmp_path_factory, "cuda_two", config, nproc=2).check()
    check_on_cuda(job, world_size=2)
    layout = set(os.listdir(job.checkpoint(4)))
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= layout, layout
