"""bitsandbytes on CUDA: 8-bit state is uint8 on the device, paged state is CUDA managed memory,
and paging changes nothing in the arithmetic."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from cuda_utils import DEVICE, is_paged
from visdet_mmext.catalog import CATALOG

pytestmark = pytest.mark.cuda

BNB = CATALOG.rows_of("bitsandbytes")
EIGHT_BIT = [spec.name for spec in BNB if "8bit" in spec.name and "Paged" not in spec.name]
PAGED = [spec.name for spec in BNB if spec.attribute.startswith("Paged")]
#: bitsandbytes pages a state tensor only from 1e5 elements on: 512 x 256 is paged, 256 x 4 not
BIG, SMALL = (256, 512), (4, 256)


def unpaged(name: str) -> str:
    """The catalog name of the same class without paging (PagedLion -> bnb_Lion)."""
    attribute = CATALOG[name].attribute.removeprefix("Paged")
    return next(spec.name for spec in BNB if spec.attribute == attribute)


def settings(name: str) -> dict:
    return {"lr": 1e-3, "momentum": 0.9} if "SGD" in name or "LARS" in name else {"lr": 1e-3}


def model_and_wrapper(name: str):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(BIG[1], BIG[0]), nn.ReLU(), nn.Linear(SMALL[1], SMALL[0]))
    model.to(DEVICE)
    return model, build_optim_wrapper(model, dict(optimizer=dict(type=name, **settings(name))))


def steps(model, wrapper, count: int):
    generator = torch.Generator().manual_seed(1)
    for _ in range(count):
        x = torch.randn(32, BIG[1], generator=generator).to(DEVICE)
        wrapper.update_params(model(x).pow(2).mean())
    torch.cuda.synchronize()


@pytest.mark.parametrize("name", EIGHT_BIT)
def test_8bit_state_is_uint8_on_the_device(name):
    model, wrapper = model_and_wrapper(name)
    steps(model, wrapper, 1)
    big, small = wrapper.optimizer.state[model[0].weight], wrapper.optimizer.state[model[2].weight]
    assert big["state1"].dtype == torch.uint8 and big["state1"].device.type == DEVICE.type
    assert big["absmax1"].device.type == DEVICE.type  # one fp32 scale per block, on the device
    assert big["absmax1"].numel() * 256 >= big["state1"].numel()
    assert small["state1"].dtype == torch.float32 and small["state1"].device.type == DEVICE.type


@pytest.mark.parametrize("name", PAGED)
def test_paged_state_is_managed_memory_and_steps_like_the_unpaged_class(name):
    model, wrapper = model_and_wrapper(name)
    allocated = torch.cuda.memory_allocated()
    steps(model, wrapper, 3)
    optimizer = wrapper.optimizer
    big, small = optimizer.state[model[0].weight], optimizer.state[model[2].weight]
    states = [big[key] for key in ("state1", "state2") if key in big]
    for state in states:
        assert is_paged(state) and state.page_deviceid == torch.cuda.current_device()
        assert any(state is tensor for tensor in optimizer.page_mng.paged_tensors)
        # managed memory is outside torch's caching allocator, seen through a host tensor
        assert state.device.type == "cpu"
        assert state.dtype == (torch.uint8 if "8bit" in name else torch.float32)
    assert not is_paged(small["state1"]) and small["state1"].device.type == DEVICE.type
    paged_bytes = sum(s.numel() * s.element_size() for s in states)
    assert torch.cuda.memory_allocated() - allocated < paged_bytes / 2

    twin, twin_wrapper = model_and_wrapper(unpaged(name))
    steps(twin, twin_wrapper, 3)
    twin_state = twin_wrapper.optimizer.state[twin[0].weight]["state1"]
    assert not is_paged(twin_state) and twin_state.device.type == DEVICE.type
    for paged_param, param in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(paged_param, param)
