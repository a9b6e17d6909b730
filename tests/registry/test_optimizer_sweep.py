"""Every available catalog optimizer, built from a config dict through mmengine.

For each name: it trains the toy problem through ``model.train_step`` (mmengine's real
training step) by a tuned margin, and its state_dict round-trips: save after k steps,
load into a freshly built optimizer, continue, and match an uninterrupted run exactly (DeepSpeed's
C++ optimizers to 1e-6: they keep beta**step as a running product, rebuilt by a power on load).
"""
import copy
import io

import pytest
import torch
from mmengine.optim import build_optim_wrapper

import visdet_mmext
from sweep_settings import STEPS, sweep_settings
from toy import toy_problem
from visdet_mmext.catalog import CATALOG

USABLE = visdet_mmext.REPORT.usable_names()


def _marks(name):
    spec = CATALOG.get(name)
    if spec is not None and spec.provider == "deepspeed":
        return [pytest.mark.deepspeed, pytest.mark.slow]  # first use JIT-builds DeepSpeed's op
    return []


NAMES = [pytest.param(name, marks=_marks(name)) for name in USABLE]


def _build(name, model):
    settings, _ = sweep_settings(name)
    return build_optim_wrapper(model, dict(optimizer=dict(type=name, **settings)))


def test_every_catalog_name_is_reported():
    missing = [spec.name for spec in CATALOG.values()
               if visdet_mmext.REPORT.availability(spec.name) is None]
    assert not missing


@pytest.mark.parametrize("name", NAMES)
def test_trains_toy_problem(name):
    model, data = toy_problem(name)
    wrapper = _build(name, model)
    losses = [float(model.train_step(data, wrapper)["loss"]) for _ in range(STEPS)]
    _, max_ratio = sweep_settings(name)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] <= max_ratio * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"


def _serialize(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    model, data = toy_problem(name)
    wrapper = _build(name, model)
    for _ in range(5):
        model.train_step(data, wrapper)
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = _serialize(wrapper.state_dict())
    for _ in range(5):
        model.train_step(data, wrapper)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    resumed_model, _ = toy_problem(name, seed=1)  # different init: everything must come from the files
    resumed_model.load_state_dict(saved_model)
    resumed = _build(name, resumed_model)
    resumed.load_state_dict(saved_optimizer)
    for _ in range(5):
        resumed_model.train_step(data, resumed)
    spec = CATALOG.get(name)
    atol = 1e-6 if spec is not None and spec.provider == "deepspeed" else 0
    for expected, actual in zip(uninterrupted, resumed_model.parameters()):
        torch.testing.assert_close(actual, expected, rtol=0, atol=atol)
