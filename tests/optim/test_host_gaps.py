"""Optimizers that mmengine's Runner cannot train out of the box, trained through the real Runner."""
import pytest

from runner_utils import logged, make_runner
from toy import SparseBagClassifier, sparse_toy_data
from visdet_mmext.errors import OptimizerConfigError
from visdet_mmext.algorithms.hf_adafactor import relative_step_size


def test_hf_adafactor_relative_step_logs_its_step_size(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Adafactor")), max_iters=20)
    runner.train()
    lrs = logged(runner, "train/lr")
    assert lrs[0] == pytest.approx(1e-2)  # min(1e-2, 1/sqrt(t)) before the first step
    # logged before iteration 20, whose step is the 20th
    assert lrs[-1] == pytest.approx(relative_step_size(20, warmup_init=False))
    losses = logged(runner, "train/loss")
    assert losses[-1] < losses[0]


def test_hf_adafactor_warns_that_schedules_are_ignored(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Adafactor")), max_iters=10,
                         param_scheduler=dict(type="LinearLR", start_factor=0.1, by_epoch=False,
                                              begin=0, end=5))
    with pytest.warns(UserWarning, match="ignores lr schedules"):
        runner.train()


def test_hf_adafactor_with_lr_and_relative_step_is_refused(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Adafactor", lr=1e-3)))
    with pytest.raises(OptimizerConfigError, match="relative_step"):
        runner.train()


@pytest.mark.parametrize("max_iter", [1, 4])
def test_lbfgs_trains_through_runner(tmp_path, max_iter):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="LBFGS", lr=0.5, max_iter=max_iter,
                                                       history_size=10)), batch_size=256)
    runner.train()
    assert type(runner.optim_wrapper).__name__ == "ClosureOptimWrapper"
    losses = logged(runner, "train/loss")
    assert losses[-1] < 0.3 * losses[0]
    evaluations = runner.optim_wrapper.optimizer.state_dict()["state"][0]["func_evals"]
    # one evaluation per iteration is the training step's own; more means the closure re-ran
    assert evaluations == 30 if max_iter == 1 else evaluations > 30


def test_sparse_adam_trains_a_sparse_embedding(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="SparseAdam", lr=0.1)),
                         model=SparseBagClassifier(), data=sparse_toy_data())
    runner.train()
    losses = logged(runner, "train/loss")
    assert losses[-1] < 0.8 * losses[0]


def test_sparse_adam_refuses_dense_parameters_before_training(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="SparseAdam", lr=0.1)))
    with pytest.raises(OptimizerConfigError, match="layer.weight.*nn.Embedding\\(sparse=True\\)|"
                                                   "sparse=True.*layer.weight"):
        runner.train()
    assert runner.iter == 0


def test_dadapt_adam_maps_lr_multipliers_and_logs_effective_lr(tmp_path):
    # Full batches: on this toy's 64-sample batches D-Adaptation's d overshoots and the loss
    # diverges even without multipliers (DAdaptAdam's own behaviour, not the mapping's).
    runner = make_runner(tmp_path, dict(optimizer=dict(type="DAdaptAdam", lr=1.0),
                                        paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=0.1)})),
                         batch_size=256, max_iters=40)
    runner.train()
    groups = runner.optim_wrapper.optimizer.param_groups
    assert {g["lr"] for g in groups} == {1.0}
    assert sorted({g["layer_scale"] for g in groups}) == pytest.approx([0.1, 1.0])
    effective = logged(runner, "train/effective_lr")
    d = groups[0]["d"]
    assert d > 1e-6  # adapted away from d0
    # logged before each iteration: the last value is d of the previous step times lr (group 0)
    assert effective[-1] == pytest.approx(d * groups[0]["lr"] * groups[0]["layer_scale"], rel=0.5)
    losses = logged(runner, "train/loss")
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["DAdaptSGD", "DAdaptAdaGrad"])
def test_dadapt_without_layer_scale_refuses_lr_multipliers(tmp_path, name):
    runner = make_runner(tmp_path, dict(optimizer=dict(type=name, lr=1.0),
                                        paramwise_cfg=dict(custom_keys={"head": dict(lr_mult=0.1)})))
    with pytest.raises(OptimizerConfigError, match="same lr in every param group"):
        runner.train()


def test_closure_wrapper_refuses_gradient_accumulation(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="LBFGS", lr=0.5), accumulative_counts=2))
    with pytest.raises(ValueError, match="accumulative_counts=1"):
        runner.train()


def _log_text(runner):
    from pathlib import Path
    return "".join(p.read_text() for p in Path(runner.log_dir).glob("*.log"))


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_bare_lbfgs_on_minibatches_warns_with_settings_that_work(tmp_path, line_search):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="LBFGS", line_search_fn=line_search)),
                         max_iters=1, batch_size=32)
    runner.train()
    warned = "line_search_fn='strong_wolfe'" in _log_text(runner)
    assert warned == (line_search is None)
