"""What the CUDA tests share: the device, and where parameters and optimizer state must live.

Tests marked ``cuda`` are skipped with "needs CUDA" on machines without one (tests/conftest.py);
``make gpu-check`` runs them.
"""
import pytest
import torch

DEVICE = torch.device("cuda")
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")


def quantise_all(name: str) -> dict:
    """Settings that make a bitsandbytes 8-bit name keep every tensor of the toys in 8 bits: it
    keeps tensors under ``min_8bit_size`` (4096 elements by default) in fp32, and the toys' are
    smaller. Empty for other names."""
    return {"min_8bit_size": 1} if "8bit" in name else {}


def assert_8bit_state(optimizer):
    """Every moment buffer is uint8 (the quantised state, with its fp32 block scales beside)."""
    moments = [(key, t) for key, t in state_tensors(optimizer) if key in ("state1", "state2")]
    assert moments and all(t.dtype == torch.uint8 for _, t in moments), \
        [(key, t.dtype) for key, t in moments]


def state_tensors(optimizer):
    """``(key, tensor)`` for every non-scalar tensor in ``optimizer.state`` (step counters of
    0 dims stay on the CPU by torch's design)."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                yield key, value


def is_paged(tensor) -> bool:
    """bitsandbytes' paged state: CUDA managed memory seen through a host tensor."""
    return bool(getattr(tensor, "is_paged", False))


def assert_on_device(optimizer):
    """Every parameter and every state tensor of ``optimizer`` is on the CUDA device (paged state
    is managed memory that pages to the device it names)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert params and all(p.device.type == DEVICE.type for p in params)
    states = list(state_tensors(optimizer))
    assert states, "the optimizer kept no state tensors"
    for key, tensor in states:
        if is_paged(tensor):
            assert tensor.page_deviceid == torch.cuda.current_device(), key
        else:
            assert tensor.device.type == DEVICE.type, f"{key} on {tensor.device}"
