"""CpuThreadsHook: torch threads from the cores other processes leave free, set for the run."""
import logging
import os

import pytest
import torch
from mmengine.hooks import Hook

from runner_utils import make_runner
from visdet_mmext.runtime import CpuThreadsHook, threads_for
from visdet_mmext.runtime.cpu_threads import other_processes_load, usable_cores


def test_threads_are_the_free_share_of_the_cores():
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, 0.2) == 2  # background noise
    assert threads_for(2, 0.4) == 1  # a second thread would share a core 40 % busy
    assert threads_for(2, 1.2) == 1  # one core taken: a second thread would wait at barriers
    assert threads_for(2, 5.0) == 1  # never fewer than one
    assert threads_for(8, 0.0, local_processes=4) == 2
    assert threads_for(8, 4.0, local_processes=4) == 1
    assert threads_for(2, 0.0, local_processes=4) == 1


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc")
def test_other_processes_load_is_a_number_of_cores():
    load = other_processes_load(0.05)
    assert 0.0 <= load <= usable_cores() + 0.5


class ThreadsSeen(Hook):
    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen.append(torch.get_num_threads())


def _trained(tmp_path, threads, monkeypatch, omp=None):
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    spy = ThreadsSeen()
    runner = make_runner(tmp_path, dict(optimizer=dict(type="SGD", lr=0.1)), max_iters=2,
                         custom_hooks=[dict(type="CpuThreadsHook", threads=threads)],
                         log_level=logging.INFO)
    runner.register_hook(spy)
    runner.train()
    log = open(os.path.join(runner.log_dir, f"{runner.timestamp}.log")).read()
    return spy.seen, next(line for line in log.splitlines() if "CPU threads:" in line)


def test_the_runner_trains_with_the_chosen_threads_and_gets_its_own_back(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    seen, line = _trained(tmp_path / "one", 1, monkeypatch)
    assert seen == [1, 1] and "CPU threads: 1 (CpuThreadsHook)" in line
    assert torch.get_num_threads() == before
    seen, line = _trained(tmp_path / "auto", "auto", monkeypatch)
    assert 1 <= seen[0] <= usable_cores() and f"CPU threads: {seen[0]} (" in line
    assert "usable cores" in line and "OMP_NUM_THREADS=N" in line
    seen, line = _trained(tmp_path / "env", "auto", monkeypatch, omp="1")
    assert seen == [before, before] and "(OMP_NUM_THREADS=1)" in line  # the user's choice wins


def test_bad_setting_is_refused():
    with pytest.raises(ValueError, match="positive int or 'auto'"):
        CpuThreadsHook(threads=0)
