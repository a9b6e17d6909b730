"""A DeepSpeed checkpoint file that one rank cannot write stops every rank with one sentence.

Each rank writes its own ZeRO file. Here one rank's disk fills mid-save (its writes past 48 KiB
fail with EFBIG, tests/jobs/file_size_limit_hook.py) under torchrun: without the shared outcome
the other rank waits in DeepSpeed's last barrier and dies with gloo's "Connection closed"
traceback; without asking the OS, torch's writer says only "unexpected pos ..." (a traceback).
"""
import os

import pytest

from demo_utils import CONFIGS, TRAIN, exit_codes, torchrun

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

SMALL = ["model.widths=(8,16,32)", "train_dataloader.dataset.num_train=64",
         "val_dataloader.dataset.num_val=32", "train_dataloader.batch_size=8",
         "train_cfg.max_epochs=2", "train_cfg.val_interval=2"]


@pytest.mark.parametrize("ranks", [2, 1])
def test_a_rank_whose_disk_fills_stops_every_rank_with_one_sentence(tmp_path, ranks):
    full = ranks - 1  # the last rank's disk fills
    config = tmp_path / "zero2_full_disk.py"
    config.write_text(
        f"_base_ = [{os.path.join(CONFIGS, 'deepspeed', 'zero2_offload_adamw.py')!r}]\n"
        "custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', "
        "'file_size_limit_hook'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='FileSizeLimitHook', rank={full}, limit=49152)]\n")
    work_dir = tmp_path / "work"
    done = torchrun(ranks, TRAIN, str(config), "--work-dir", str(work_dir), "--launcher",
                    "pytorch", "--cfg-options", *SMALL, timeout=600)
    checkpoint = work_dir / "epoch_1.pth"
    reason = "File too large" if ranks == 1 else (
        f"File too large, writing zero_pp_rank_{full}_mp_rank_00_optim_states.pt on rank {full}")
    sentence = (f"CheckpointSaveError: Could not save checkpoint {checkpoint} ({reason}), so "
                "training stopped at epoch 1")
    assert done.stderr.count(sentence) == ranks, done.stderr[-5000:]  # one per rank
    assert done.stderr.count("no earlier checkpoint of this run was saved") == ranks
    assert "[rank" not in done.stderr and "Connection closed" not in done.stderr
    # the first rank to stop exits 2; torchrun ends any other, which may not have exited yet
    first, codes = exit_codes(done.stderr)
    assert first == ["2"], done.stderr[-5000:]
    assert set(codes) <= {"2", "-15"}
    assert not checkpoint.exists()  # what the failed save began is removed
