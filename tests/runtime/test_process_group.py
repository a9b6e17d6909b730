"""A run's process group ends on every rank at once; one the caller made stays theirs."""
import os

import pytest
import torch.distributed as dist

from demo_utils import CONFIGS, cli_options
from visdet_mmext.runtime.process_group import ended_together, single_process_env
from visdet_mmext.tools import train as train_tool

FSDP = os.path.join(CONFIGS, "fsdp", "fsdp_muon.py")
SMALL = ["model.widths=(8,16,32)", "train_dataloader.dataset.num_train=16",
         "val_dataloader.dataset.num_val=8", "train_dataloader.batch_size=8",
         "train_cfg.max_epochs=1", "train_cfg.val_interval=1"]


@pytest.fixture
def no_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_run_ends_the_group_it_made(tmp_path, no_group, capsys):
    """FSDP2 alone makes a one-process group; the run ends it (the training folder's lock
    released after it)."""
    code = train_tool.main([FSDP, "--work-dir", str(tmp_path), "--cfg-options", *SMALL])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert not dist.is_initialized()


def test_a_group_the_caller_made_stays_and_a_failed_block_leaves_its_own(no_group):
    single_process_env()
    dist.init_process_group("gloo")
    with ended_together():
        pass
    assert dist.is_initialized()  # the caller's
    dist.destroy_process_group()
    with pytest.raises(RuntimeError, match="stopped"):
        with ended_together():
            dist.init_process_group("gloo")
            raise RuntimeError("stopped")
    assert dist.is_initialized()  # no barrier that other ranks might never reach
    dist.destroy_process_group()
