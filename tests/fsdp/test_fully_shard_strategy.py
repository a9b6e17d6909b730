"""FullyShardStrategy: a config trains FSDP2-sharded through mmengine's real FlexibleRunner.

``visdet-mmext train fsdp_muon`` (tools/train.py) under torchrun, 2 gloo processes: the package
constructor's Muon routing on DTensor parameters, a checkpoint per epoch, and a resumed run that
ends exactly where the uninterrupted one does. The same on one CUDA device for ``make gpu-check``.
"""
import os
import subprocess
import sys

import pytest
import torch

from demo_utils import (CONFIGS, ROOT, TRAIN, assert_same_tensors, exit_codes, state_of,
                        subprocess_env, torchrun)
from visdet_mmext.tools import train as train_tool

#: a small net and a short run (4 iterations of 2 x 8 images per epoch)
SMALL = ["model.widths=(8,16,32)", "train_dataloader.dataset.num_train=64",
         "val_dataloader.dataset.num_val=32", "train_dataloader.batch_size=8",
         "train_cfg.max_epochs=2", "train_cfg.val_interval=2", "default_hooks.logger.interval=2",
         "default_hooks.checkpoint.max_keep_ckpts=-1"]


def _train(work_dir, *extra, options=(), nproc: int):
    argv = ["fsdp_muon", "--work-dir", str(work_dir), *extra, "--cfg-options", *SMALL, *options]
    if nproc > 1:
        done = torchrun(nproc, TRAIN, *argv, "--launcher", "pytorch", timeout=600)
    else:
        env = subprocess_env()
        for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(key, None)  # no launcher: the strategy forms a one-process group
        done = subprocess.run([sys.executable, TRAIN, *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return done.stdout + done.stderr


def _trains_and_resumes_exactly(tmp_path, nproc: int, device: str, options=()):
    log = _train(tmp_path / "full", options=options, nproc=nproc)
    assert f"over {nproc} process(es) on {device}" in log
    assert "Muon routing: Muon: 6 tensors" in log  # the package constructor routed DTensors
    assert "Muon routing: the loss graph agrees with the structural routing" in log  # read
    _train(tmp_path / "resumed", "--resume", str(tmp_path / "full" / "epoch_1.pth"),
           options=options, nproc=nproc)
    full = state_of(str(tmp_path / "full" / "epoch_2.pth"))
    resumed = state_of(str(tmp_path / "resumed" / "epoch_2.pth"))
    assert_same_tensors(full["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(full["optimizer"], resumed["optimizer"], "optimizer")
    return full


@pytest.mark.slow
def test_config_trains_sharded_through_the_runner_and_resumes_exactly(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU (gloo) path")
    full = _trains_and_resumes_exactly(tmp_path, 2, "cpu")
    # whole tensors, as a single-process checkpoint holds them
    from visdet_mmext.demo.models import DemoConvNet
    expected = {k: tuple(v.shape) for k, v in DemoConvNet(widths=(8, 16, 32)).state_dict().items()}
    assert {k: tuple(v.shape) for k, v in full["state_dict"].items()} == expected
    momentum = [s["momentum_buffer"] for s in full["optimizer"]["state"].values()
                if "momentum_buffer" in s]
    assert momentum and all(type(t) is torch.Tensor for t in momentum)
    # and a run without a launcher (a one-process group, the blocks as units) resumes from it
    log = _train(tmp_path / "one", "--resume", str(tmp_path / "full" / "epoch_1.pth"),
                 options=["strategy.shard_modules=[ResBlock]",
                          "strategy.reshard_after_forward=False"], nproc=1)
    assert "FullyShardStrategy: 3 FSDP2 units over 1 process(es) on cpu" in log


@pytest.mark.cuda
def test_config_trains_sharded_on_cuda_and_resumes_exactly(tmp_path):
    # cuDNN's fastest kernels need not repeat their sums: the deterministic ones are chosen
    _trains_and_resumes_exactly(tmp_path, 1, "cuda", options=["randomness.deterministic=True"])


def test_sharded_run_with_an_optimizer_that_cannot_be_exact_exits_2(tmp_path, capsys):
    config = tmp_path / "fsdp_adamw8bit.py"
    config.write_text(f"_base_ = [{os.path.join(CONFIGS, 'fsdp', 'fsdp_muon.py')!r}]\n"
                      "optim_wrapper = dict(_delete_=True, optimizer=dict(type='AdamW8bit'))\n")
    code = train_tool.main([str(config), "--work-dir", str(tmp_path / "work"), "--cfg-options",
                            *SMALL])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "AdamW8bit cannot train FSDP2-sharded parameters exactly" in err
    assert "Fix: use AdamW, Lion, LAMB or Muon" in err and "Traceback" not in out + err
    assert not os.path.exists(tmp_path / "work" / "epoch_1.pth")


@pytest.mark.slow
def test_a_failed_save_stops_every_rank_with_one_sentence(tmp_path):
    """Rank 0 alone writes; without its outcome shared, the other rank would wait for it in the
    next collective and die of a closed connection (or torchrun's SIGTERM)."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "epoch_1.pth").mkdir()  # FSDP2 saves a file here
    done = torchrun(2, TRAIN, "fsdp_muon", "--work-dir", str(work_dir), "--cfg-options", *SMALL,
                    "--launcher", "pytorch", timeout=600)
    sentence = (f"CheckpointSaveError: Could not save checkpoint {work_dir / 'epoch_1.pth'} (Is a "
                "directory), so training stopped at epoch 1")
    assert done.returncode != 0
    assert done.stderr.count(sentence) == 2, done.stderr[-5000:]  # one per rank
    # The first rank to stop exits 2; torchrun then ends the other, which may have exited 2 as
    # well or be ended by SIGTERM (-15) after printing its sentence
    first, codes = exit_codes(done.stderr)
    assert first == ["2"], done.stderr[-5000:]
    assert len(codes) == 2 and set(codes) <= {"2", "-15"}, done.stderr[-5000:]
    assert "[rank1]" not in done.stderr and "Connection closed" not in done.stderr
    assert (work_dir / "epoch_1.pth").is_dir()  # left as it was
