"""Every catalog optimizer that runs on CUDA, on CUDA: built from a config dict through mmengine,
it trains the toy problem (``model.train_step``) by its tuned margin with parameters and state on
the device, and its state_dict round-trips through a file back onto the device."""
import copy
import io

import pytest
import torch
from mmengine.optim import build_optim_wrapper

import visdet_mmext
from cuda_utils import DEVICE, assert_8bit_state, assert_on_device, quantise_all, state_tensors
from sweep_settings import STEPS, sweep_settings
from toy import toy_problem
from visdet_mmext.catalog import CATALOG
from visdet_mmext.registry.availability import AVAILABLE, REMOVED

pytestmark = pytest.mark.cuda

def _marks(spec):
    # DeepSpeed's first use JIT-builds its op (make gpu-check builds them before the tests)
    return [pytest.mark.deepspeed, pytest.mark.slow] if spec.provider == "deepspeed" else []


ON_CUDA = [pytest.param(spec.name, marks=_marks(spec)) for spec in CATALOG.values()
           if "cuda" in spec.devices]


def usable_on_cuda(name):
    info = visdet_mmext.REPORT.availability(name)
    if info.status == REMOVED:
        pytest.skip(info.reason)
    assert info.usable, f"{name}: {info.status}: {info.reason}"


def build(name, seed=0):
    model, data = toy_problem(name, seed=seed)
    model.to(DEVICE)  # mmengine's data preprocessor moves each batch after it
    settings, _ = sweep_settings(name)
    settings = dict(settings, **quantise_all(name))  # 8-bit names: every tensor really 8-bit
    return model, data, build_optim_wrapper(model, dict(optimizer=dict(type=name, **settings)))


def through_a_file(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True, map_location="cpu")


def test_every_provider_is_installed():
    """The GPU check carries every provider's package (tools/gpu_wheels.py): no row is missing."""
    missing = {spec.name: visdet_mmext.REPORT.availability(spec.name).reason
               for spec in CATALOG.values()
               if visdet_mmext.REPORT.availability(spec.name).status not in (AVAILABLE, REMOVED)}
    assert not missing


@pytest.mark.parametrize("name", ON_CUDA)
def test_trains_on_cuda(name):
    usable_on_cuda(name)
    model, data, wrapper = build(name)
    losses = [float(model.train_step(data, wrapper)["loss"]) for _ in range(STEPS)]
    _, max_ratio = sweep_settings(name)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] <= max_ratio * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert_on_device(wrapper.optimizer)
    if quantise_all(name):
        assert_8bit_state(wrapper.optimizer)


@pytest.mark.parametrize("name", ON_CUDA)
def test_state_dict_round_trip_on_cuda(name):
    usable_on_cuda(name)
    model, data, wrapper = build(name)
    for _ in range(5):
        model.train_step(data, wrapper)
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = through_a_file(wrapper.state_dict())  # a checkpoint loaded to the CPU
    for _ in range(5):
        model.train_step(data, wrapper)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    resumed_model, _, resumed = build(name, seed=1)  # everything must come from the files
    resumed_model.load_state_dict(saved_model)
    resumed.load_state_dict(saved_optimizer)
    assert {key for key, _ in state_tensors(resumed.optimizer)} == \
        {key for key, _ in state_tensors(wrapper.optimizer)}
    assert_on_device(resumed.optimizer)  # the loaded state went back to the parameters' device
    for _ in range(5):
        resumed_model.train_step(data, resumed)
    # CUDA kernels may reduce in another order between launches (block-wise absmax, DeepSpeed's
    # multi-tensor apply): a state that did not load would differ by ~lr, far more than this
    for expected, actual in zip(uninterrupted, resumed_model.parameters()):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)
