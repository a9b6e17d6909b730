"""Prodigy with lr multipliers (which prodigyopt itself refuses) and its real step size logged."""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from prodigyopt import Prodigy

import visdet_mmext  # noqa: F401  (registers the optimizers and wrappers)
from runner_utils import logged, make_runner
from toy import ToyClassifier, toy_data

pytestmark = pytest.mark.usefixtures("one_thread")

MULTIPLIERS = dict(custom_keys={"head": dict(lr_mult=0.5)})


def test_prodigy_alone_refuses_different_group_lrs():
    model = ToyClassifier()
    optimizer = Prodigy([{"params": model.layer.parameters(), "lr": 1.0},
                         {"params": model.head.parameters(), "lr": 0.5}])
    model.train_step(toy_data(), build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0))))
    with pytest.raises(RuntimeError, match="different lr"):
        optimizer.step()


def test_lr_mult_scales_that_groups_step():
    data, plain_model = toy_data(), ToyClassifier()
    scaled_model = copy.deepcopy(plain_model)
    optimizer = dict(type="Prodigy", lr=1.0, d0=1e-2)  # moves far above float32 rounding
    plain = build_optim_wrapper(plain_model, dict(optimizer=optimizer))
    scaled = build_optim_wrapper(scaled_model, dict(optimizer=optimizer, paramwise_cfg=MULTIPLIERS))
    assert type(scaled).__name__ == "ProdigyOptimWrapper"
    assert sorted(g["layer_scale"] for g in scaled.optimizer.param_groups) == [0.5, 0.5, 1.0, 1.0]
    before = copy.deepcopy(plain_model.state_dict())
    plain_model.train_step(data, plain)
    scaled_model.train_step(data, scaled)
    for name, start in before.items():
        plain_move = plain_model.state_dict()[name] - start
        scaled_move = scaled_model.state_dict()[name] - start
        factor = 0.5 if name.startswith("head") else 1.0
        assert plain_move.abs().sum() > 0
        torch.testing.assert_close(scaled_move, factor * plain_move, rtol=1e-4, atol=1e-7)


def test_trains_through_the_runner_and_logs_its_step_size(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Prodigy", lr=1.0),
                                        paramwise_cfg=MULTIPLIERS), max_iters=20)
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    assert runner.optim_wrapper.get_lr()["effective_lr"] == [
        g["d"] * g["lr"] * g["layer_scale"] for g in groups]
    effective = logged(runner, "train/effective_lr")
    assert effective[0] == pytest.approx(1e-6 * groups[0]["layer_scale"])  # d0 before the first step
    assert effective[-1] > 100 * effective[0]  # d adapted
    losses = logged(runner, "train/loss")
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0]  # 0.61 here: d starts from 1e-6
