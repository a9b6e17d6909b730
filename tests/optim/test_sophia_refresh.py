"""Sophia's Hessian refresh through the real Runner (SophiaOptimWrapper, picked by the catalog).

A tensor hook on the first layer's weight counts gradient computations per iteration and a
forward pre-hook counts forwards: every update_period-th step (the first included) costs one
extra backward and no extra forward, the others nothing. The estimate is in the checkpoint,
resuming across a refresh is exact, and a model that does not say where its logits are, or
another wrapper type, is refused before training.
"""
import copy

import pytest
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper

import visdet_mmext  # noqa: F401  (registers the optimizers and wrappers)
from demo_utils import assert_same_tensors, state_of
from runner_utils import make_runner
from toy import ToyMLP
from visdet_mmext.errors import OptimizerConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

K = 3
OPTIMIZERS = {"SophiaG": dict(type="SophiaG", lr=2e-2, update_period=K),
              "SophiaH": dict(type="SophiaH", lr=1.0, update_period=K)}
HESSIAN = {"SophiaG": "hessian", "SophiaH": "hessian_moment"}


class Counter(Hook):
    """Gradients of ``layer.weight`` computed, and forwards run, in each training iteration."""

    priority = "LOW"  # before CheckpointHook: the optimizer state of the iteration just done

    def __init__(self):
        self.per_iteration, self.states, self._grads, self._forwards = [], {}, 0, 0

    def before_run(self, runner):
        runner.model.layer.weight.register_hook(lambda grad: self._count("_grads"))
        runner.model.register_forward_pre_hook(lambda module, args: self._count("_forwards"))

    def _count(self, name):
        setattr(self, name, getattr(self, name) + 1)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.per_iteration.append((self._grads, self._forwards))
        self._grads = self._forwards = 0
        self.states[runner.iter + 1] = copy.deepcopy(runner.optim_wrapper.optimizer.state_dict())


def _run(work_dir, name, max_iters, accumulative_counts=1, **extra):
    counter = Counter()
    wrapper = dict(optimizer=OPTIMIZERS[name], accumulative_counts=accumulative_counts)
    runner = make_runner(work_dir, wrapper, max_iters=max_iters, checkpoint_interval=4,
                         custom_hooks=[counter], **extra)
    runner.train()
    return runner, counter


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_refresh_every_k_steps_costs_one_backward(tmp_path, name):
    runner, counter = _run(tmp_path, name, max_iters=7)
    assert type(runner.optim_wrapper).__name__ == "SophiaOptimWrapper"
    refreshes = [it % K == 0 for it in range(7)]
    assert counter.per_iteration == [(2 if refresh else 1, 1) for refresh in refreshes]
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_refresh_with_gradient_accumulation(tmp_path, name):
    """Two micro-batches per step: SophiaG estimates on the last one of a refreshing step,
    SophiaH keeps the graph of both and takes its product once, at the step."""
    runner, counter = _run(tmp_path, name, max_iters=8, accumulative_counts=2)
    assert [grads for grads, _ in counter.per_iteration] == [1, 2, 1, 1, 1, 1, 1, 2]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_hessian_in_the_checkpoint_and_resume_across_a_refresh(tmp_path, name):
    uninterrupted, counter = _run(tmp_path / "a", name, max_iters=8)
    checkpoint = state_of(str(tmp_path / "a" / "iter_4.pth"))
    saved = checkpoint["optimizer"]["state"]
    assert saved and all(entry[HESSIAN[name]].abs().sum() > 0 for entry in saved.values())
    assert_same_tensors(saved, counter.states[4]["state"], "optimizer state at iteration 4")
    resumed, resumed_counter = _run(tmp_path / "b", name, max_iters=8,
                                    load_from=str(tmp_path / "a" / "iter_4.pth"), resume=True)
    assert [grads for grads, _ in resumed_counter.per_iteration] == [1, 1, 2, 1]  # refresh at 6
    assert_same_tensors(resumed.model.state_dict(), uninterrupted.model.state_dict())
    assert_same_tensors(resumed.optim_wrapper.optimizer.state_dict()["state"],
                        uninterrupted.optim_wrapper.optimizer.state_dict()["state"])


def test_logits_module_named_in_the_config(tmp_path):
    """ToyMLP has a `head` but no `logits_module` attribute: the config names it."""
    wrapper = dict(type="SophiaOptimWrapper", logits_module="head", optimizer=OPTIMIZERS["SophiaG"])
    runner = make_runner(tmp_path, wrapper, model=ToyMLP(), max_iters=4)
    runner.train()
    assert runner.optim_wrapper.optimizer.state_dict()["param_groups"][0]["hessian_step"] == 3


@pytest.mark.parametrize("wrapper, match", [
    (dict(optimizer=OPTIMIZERS["SophiaG"]), "logits_module"),
    (dict(type="SophiaOptimWrapper", logits_module="nonexistent", optimizer=OPTIMIZERS["SophiaG"]),
     "not a module"),
    (dict(type="ClosureOptimWrapper", optimizer=OPTIMIZERS["SophiaH"]), "SophiaOptimWrapper"),
])
def test_refused_before_training(wrapper, match):
    with pytest.raises(OptimizerConfigError, match=match):
        build_optim_wrapper(ToyMLP(), wrapper)

