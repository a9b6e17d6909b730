"""Schedule-free training through the real Runner.

ScheduleFreeHook joins the Runner by itself (a config's own keeps its settings); validation and
every checkpoint see exactly the weights the optimizer's own ``eval()`` gives (a deep copy of
model and optimizer, switched by the schedulefree package itself); BatchNorm statistics at
validation are the exact average over the recompute batches at those weights; resuming from a
checkpoint continues bit for bit; a decaying lr schedule draws a warning, a warm-up does not.
"""
import copy
import logging

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

import visdet_mmext  # noqa: F401  (registers the optimizers and ScheduleFreeHook)
from demo_utils import assert_same_tensors, state_of
from runner_utils import DictDataset, make_runner
from toy import ToyBNClassifier, toy_data

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIM = dict(optimizer=dict(type="AdamWScheduleFree", lr=1e-2, warmup_steps=2))
BN_BATCHES = 3


class Accuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results += [sample["correct"] for sample in data_samples]

    def compute_metrics(self, results):
        return dict(accuracy=100.0 * sum(results) / len(results))


def _validation():
    return dict(val_dataloader=dict(dataset=DictDataset(toy_data(n=128, seed=1)), batch_size=64,
                                    sampler=dict(type="DefaultSampler", shuffle=False),
                                    collate_fn=dict(type="default_collate"), num_workers=0),
                val_cfg=dict(), val_evaluator=[Accuracy()])


class Probe(Hook):
    """Before the checkpoint hook (LOW < VERY_LOW) and after ScheduleFreeHook (ABOVE_NORMAL):
    what eval() would give at each iteration, and what validation actually sees."""

    priority = "LOW"

    def __init__(self):
        self.expected, self.trained, self.at_validation, self.norm_inputs = {}, {}, {}, []

    def before_run(self, runner):
        def capture(module, args):
            if module.training and not torch.is_grad_enabled():  # the recompute's forwards
                self.norm_inputs.append(args[0].detach().double())
        runner.model.norm.register_forward_pre_hook(capture)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model, optimizer = copy.deepcopy((runner.model, runner.optim_wrapper.optimizer))
        optimizer.eval()  # the schedulefree package's own switch, on a copy
        self.expected[runner.iter + 1] = copy.deepcopy(model.state_dict())
        self.trained[runner.iter + 1] = copy.deepcopy(runner.model.state_dict())

    def before_val_epoch(self, runner):
        self.at_validation[runner.iter] = copy.deepcopy(runner.model.state_dict())


def _run(tmp_path, **extra):
    probe = Probe()
    runner = make_runner(tmp_path, OPTIM, model=ToyBNClassifier(), max_iters=8,
                         checkpoint_interval=4, val_interval=4,
                         custom_hooks=[dict(type="ScheduleFreeHook", bn_batches=BN_BATCHES), probe],
                         **_validation(), **extra)
    runner.train()
    return runner, probe


def _weights(state):
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def test_validation_and_checkpoints_hold_the_averaged_weights(tmp_path):
    runner, probe = _run(tmp_path)
    hooks = [h for h in runner.hooks if type(h).__name__ == "ScheduleFreeHook"]
    assert len(hooks) == 1 and hooks[0].bn_batches == BN_BATCHES  # the config's own, kept
    for it in (4, 8):
        assert not torch.equal(probe.trained[it]["layer.weight"], probe.expected[it]["layer.weight"])
        assert_same_tensors(_weights(probe.at_validation[it]), _weights(probe.expected[it]),
                            f"validation at {it}")
        checkpoint = state_of(str(tmp_path / f"iter_{it}.pth"))
        assert_same_tensors(_weights(checkpoint["state_dict"]), _weights(probe.expected[it]),
                            f"checkpoint {it}")
        assert not checkpoint["optimizer"]["param_groups"][0]["train_mode"]
        assert_same_tensors(checkpoint["state_dict"]["norm.running_mean"],
                            probe.at_validation[it]["norm.running_mean"])
    # BatchNorm at validation: the exact average over the recompute batches, taken at x
    assert len(probe.norm_inputs) == 2 * BN_BATCHES  # once per set of weights (4 and 8)
    for index, it in enumerate((4, 8)):
        batches = probe.norm_inputs[index * BN_BATCHES:(index + 1) * BN_BATCHES]
        mean = torch.stack([b.mean(0) for b in batches]).mean(0)
        var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
        torch.testing.assert_close(probe.at_validation[it]["norm.running_mean"].double(), mean)
        torch.testing.assert_close(probe.at_validation[it]["norm.running_var"].double(), var)
    # after training the model holds the averaged weights too
    assert_same_tensors(_weights(runner.model.state_dict()), _weights(probe.expected[8]))


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    uninterrupted, _ = _run(tmp_path / "a")
    resumed, _ = _run(tmp_path / "b", load_from=str(tmp_path / "a" / "iter_4.pth"), resume=True)
    assert resumed.iter == 8
    assert_same_tensors(resumed.model.state_dict(), uninterrupted.model.state_dict())
    assert_same_tensors(resumed.optim_wrapper.optimizer.state_dict()["state"],
                        uninterrupted.optim_wrapper.optimizer.state_dict()["state"])


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("schedule, warned", [
    ([dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=2),
      dict(type="CosineAnnealingLR", eta_min_ratio=0.01, by_epoch=False, begin=2, end=3)], True),
    ([dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=2)], False),
])
def test_a_decaying_schedule_draws_a_warning(tmp_path, schedule, warned):
    runner = make_runner(tmp_path, OPTIM, max_iters=3, param_scheduler=schedule)
    records = _Records()
    runner.logger.addHandler(records)
    runner.train()
    assert any(type(h).__name__ == "ScheduleFreeHook" for h in runner.hooks)  # added by itself
    found = [m for m in records.messages if "schedule-free" in m]
    assert bool(found) == warned, records.messages
    if warned:
        assert "and CosineAnnealingLR changes" in found[0]  # the warm-up is not blamed
