"""bitsandbytes 8-bit optimizers keep real uint8 state for large tensors (on CPU too)."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

import visdet_mmext

EIGHT_BIT = [name for name in visdet_mmext.REPORT.usable_names() if "8bit" in name]


def test_there_are_8bit_optimizers_here():
    assert {"AdamW8bit", "Lion8bit", "PagedAdamW8bit", "SGD8bit"} <= set(EIGHT_BIT)


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_large_tensor_state_is_uint8_small_stays_fp32(name):
    model = nn.Sequential(nn.Linear(128, 64), nn.Linear(64, 4))  # 8192 and 256 elements
    settings = {"lr": 1e-3, "momentum": 0.9} if "SGD" in name or "LARS" in name else {"lr": 1e-3}
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type=name, **settings)))
    model(torch.randn(8, 128)).pow(2).mean().backward()
    wrapper.step()
    big, small = wrapper.optimizer.state[model[0].weight], wrapper.optimizer.state[model[1].weight]
    assert big["state1"].dtype == torch.uint8  # 1 byte per element ...
    assert big["absmax1"].shape[-1] == 8192 // 256  # ... plus one fp32 scale per 256-element block
    assert small["state1"].dtype == torch.float32  # under min_8bit_size=4096


@pytest.mark.parametrize("name", ["AdEMAMix32bit", "PagedAdEMAMix32bit"])
def test_cuda_only_kernels_are_reported_and_refused_before_training(name):
    from visdet_mmext.errors import OptimizerConfigError
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the kernel runs")
    assert visdet_mmext.REPORT.availability(name).status == "needs CUDA"
    with pytest.raises(OptimizerConfigError, match=f"{name}.*needs CUDA"):
        build_optim_wrapper(nn.Linear(4, 2), dict(optimizer=dict(type=name, lr=1e-3)))
