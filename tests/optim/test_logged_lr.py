"""The logged lr is the step size the coming step applies (real Runner, real schedules).

Oracles: for Muon, the lr each side's groups hold; for Hugging Face Adafactor's relative step,
transformers' formula (``Adafactor._get_lr``: ``min(1e-2, 1/sqrt(t))`` times
``max(eps2, RMS(param))``) recomputed here in float64 from the parameters before each step.
"""
import math
import warnings

import pytest
import torch
from mmengine.hooks import Hook

import visdet_mmext  # noqa: F401  (the catalog, the wrappers)
from runner_utils import logged, make_runner
from toy import ToyMLP

SCHEDULE = dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=10)


def test_muon_logs_each_sides_lr_through_the_schedule(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Muon", lr=0.05, weight_decay=0.01,
                                                       adamw_lr=5e-3),
                                        constructor="VisdetOptimWrapperConstructor"),
                         model=ToyMLP(), max_iters=12, param_scheduler=SCHEDULE)
    held = _GroupLrs()
    runner.register_hook(held)
    runner.train()
    assert type(runner.optim_wrapper).__name__ == "MuonOptimWrapper"
    muon, adamw = logged(runner, "train/lr"), logged(runner, "train/adamw_lr")
    assert muon == pytest.approx(held.lrs[True]) and adamw == pytest.approx(held.lrs[False])
    assert muon[0] == pytest.approx(0.1 * 0.05) and muon[-1] == pytest.approx(0.05)  # scheduled
    assert adamw == pytest.approx([0.1 * lr for lr in muon])


class _GroupLrs(Hook):
    """The lr of the first Muon-side and the first AdamW-side group before each iteration."""

    def __init__(self):
        self.lrs = {True: [], False: []}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        groups = runner.optim_wrapper.optimizer.param_groups
        for side in (True, False):
            self.lrs[side].append(next(g["lr"] for g in groups if g["use_muon"] is side))


class _ParamsBeforeStep(Hook):
    """The parameters of each group right before each training step."""

    def __init__(self):
        self.snapshots = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.snapshots.append([[p.detach().double().clone() for p in g["params"]]
                               for g in runner.optim_wrapper.optimizer.param_groups])


def _transformers_step_size(params, step, eps2=1e-3):
    relative = min(1e-2, 1.0 / math.sqrt(step))
    return sum(max(eps2, float(p.pow(2).mean().sqrt())) * relative for p in params) / len(params)


def test_hf_adafactor_logs_the_step_it_applies_despite_a_schedule(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Adafactor")), max_iters=12,
                         param_scheduler=SCHEDULE)
    snapshots = _ParamsBeforeStep()
    runner.register_hook(snapshots)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ignores lr schedules")  # its own test
        runner.train()
    assert type(runner.optim_wrapper).__name__ == "AdafactorOptimWrapper"
    lrs, sizes = logged(runner, "train/lr"), logged(runner, "train/step_size")
    # the schedule scales group['lr'] by 0.1 at first; the step ignores it, and so does the log
    assert lrs == pytest.approx([min(1e-2, 1 / math.sqrt(t)) for t in range(1, 13)])
    expected = [_transformers_step_size(snapshot[0], t) for t, snapshot in
                enumerate(snapshots.snapshots, 1)]
    assert sizes == pytest.approx(expected, rel=1e-5)
    assert "train/base_lr" not in runner.message_hub.log_scalars  # a placeholder, not logged


def test_hf_adafactor_numeric_lr_is_logged_as_scheduled(tmp_path):
    runner = make_runner(tmp_path, dict(optimizer=dict(type="Adafactor", lr=1e-3,
                                                       relative_step=False,
                                                       scale_parameter=False)),
                         max_iters=4, param_scheduler=SCHEDULE)
    runner.train()
    lrs = logged(runner, "train/lr")  # the schedule's warm-up from 0.1 x lr, as for any optimizer
    assert lrs[0] == pytest.approx(1e-4) and all(a < b for a, b in zip(lrs, lrs[1:]))
    assert "train/step_size" not in runner.message_hub.log_scalars


@pytest.fixture(autouse=True)
def _threads(one_thread):
    torch.manual_seed(0)
