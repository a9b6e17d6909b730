"""visdet-mmext train (and the checkout's tools/train.py): flags, early config errors,
train/resume, SIGKILL + --resume, DDP on CPU."""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch

from demo_utils import (CONFIGS, ROOT, TRAIN, assert_same_tensors, cli_options, state_of,
                        subprocess_env, torchrun)
from visdet_mmext.checkpoint.resume import find_resume_checkpoint
from visdet_mmext.tools import train as train_tool

ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")

pytestmark = pytest.mark.usefixtures("one_thread")


def _options(**kwargs):
    return ["--cfg-options", *cli_options(**kwargs), f"experiment_name=t{uuid.uuid4().hex[:8]}"]


def _save_resumable(path, iteration: int = 4):
    """A checkpoint with what resume reads (weights, meta, message hub), written by torch.save."""
    torch.save({"meta": {"iter": iteration, "epoch": 0}, "state_dict": {"w": torch.zeros(2)},
                "message_hub": {}}, path)


def test_flags_are_merged_into_the_config(tmp_path):
    from mmengine.config import Config

    def merged(*argv):
        args = train_tool.parse_args([ADAMW, *argv])
        return train_tool.merge_args(Config.fromfile(ADAMW), args)

    cfg = merged()
    assert cfg.work_dir == os.path.join("./work_dirs", "adamw") and cfg.launcher == "none"
    assert not cfg.resume and cfg.load_from is None
    cfg = merged("--work-dir", str(tmp_path), "--resume", "--launcher", "pytorch",
                 "--cfg-options", "optim_wrapper.optimizer.lr=0.5", "train_cfg.max_iters=7")
    assert cfg.work_dir == str(tmp_path) and cfg.resume and cfg.load_from is None
    assert cfg.launcher == "pytorch" and cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.train_cfg.max_iters == 7
    _save_resumable(tmp_path / "iter_4.pth")
    cfg = merged("--resume", str(tmp_path / "iter_4.pth"), "--amp")
    assert cfg.resume and cfg.load_from == str(tmp_path / "iter_4.pth")
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == "dynamic"


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    def find(work_dir):
        return find_resume_checkpoint(work_dir).chosen
    assert find(str(tmp_path)) is None
    _save_resumable(tmp_path / "iter_4.pth", 4)
    _save_resumable(tmp_path / "iter_8.pth", 8)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4.pth"))
    assert find(str(tmp_path)) == str(tmp_path / "iter_8.pth")  # saved, not yet recorded
    data = (tmp_path / "iter_8.pth").read_bytes()
    (tmp_path / "iter_12.pth").write_bytes(data[: len(data) // 2])  # killed while saving
    (tmp_path / "last_checkpoint").write_text("")  # killed while recording
    assert find(str(tmp_path)) == str(tmp_path / "iter_8.pth")


def test_bad_optimizer_fails_before_the_runner_is_built(tmp_path, capsys):
    code = train_tool.main([ADAMW, "--work-dir", str(tmp_path), "--cfg-options",
                            "optim_wrapper.optimizer.type=AdamX"])
    assert code == 2
    err = capsys.readouterr().err
    assert "AdamX" in err and "AdamW" in err  # names the closest valid names
    assert not any(tmp_path.iterdir())  # no runner, no log directory


def test_amp_on_cpu_is_refused_clearly(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert train_tool.main([ADAMW, "--amp", "--work-dir", str(tmp_path)]) == 2
    assert "--amp needs a GPU" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_resume_prints_checkpoint_and_log(tmp_path, capsys):
    work_dir = tmp_path / "work"
    assert train_tool.main([ADAMW, "--work-dir", str(work_dir),
                            *_options(iters=4, checkpoint_interval=2)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("visdet-mmext: ") and " optimizers available" in out.splitlines()[0]
    assert f"checkpoint: {work_dir / 'iter_4.pth'}" in out
    log = next(line.split("log:", 1)[1].strip() for line in out.splitlines() if "log:" in line)
    assert os.path.isfile(log) and "last validation: accuracy:" in out

    assert train_tool.main([ADAMW, "--work-dir", str(work_dir), "--resume",
                            *_options(iters=6, checkpoint_interval=2)]) == 0
    out = capsys.readouterr().out
    assert f"Resuming from {work_dir / 'iter_4.pth'}" in out
    assert f"checkpoint: {work_dir / 'iter_6.pth'}" in out
    assert state_of(str(work_dir / "iter_6.pth"))["meta"]["iter"] == 6


def test_config_without_custom_imports_trains_with_a_plugin_optimizer(tmp_path, capsys):
    """tools/train.py loads the providers itself: a config needs no custom_imports."""
    base = open(os.path.join(CONFIGS, "_base_", "demo.py")).read()
    assert "custom_imports" in base
    standalone = "\n".join(line for line in base.splitlines()
                           if "custom_imports" not in line and "allow_failed_imports" not in line)
    config = tmp_path / "standalone_lion.py"
    config.write_text(standalone + "\noptim_wrapper = dict(optimizer=dict(type='Lion', lr=1e-3, "
                      "weight_decay=0.5))\n")
    assert train_tool.main([str(config), "--work-dir", str(tmp_path / "work"),
                            *_options(iters=2)]) == 0
    assert "Training finished" in capsys.readouterr().out


def test_runner_type_is_honoured(tmp_path, capsys, monkeypatch):
    built = []
    build = train_tool.build_runner
    monkeypatch.setattr(train_tool, "build_runner",
                        lambda cfg: built.append(build(cfg)) or built[-1])
    assert train_tool.main([ADAMW, "--work-dir", str(tmp_path), *_options(iters=2),
                            "runner_type=FlexibleRunner"]) == 0
    assert type(built[0]).__name__ == "FlexibleRunner"
    assert "Training finished" in capsys.readouterr().out


def _run(argv, **kwargs):
    return subprocess.run([sys.executable, TRAIN, *argv], capture_output=True, text=True,
                          cwd=ROOT, env=subprocess_env(), timeout=600, **kwargs)


@pytest.mark.slow
def test_sigkill_during_training_then_resume_matches_uninterrupted(tmp_path):
    """Killed at iteration 8 (checkpoints every 5), resumed from iteration 5: the result equals
    an uninterrupted run's, bit for bit."""
    whole, killed, paused = tmp_path / "whole", tmp_path / "killed", tmp_path / "paused"
    config = tmp_path / "pausing_adamw.py"
    config.write_text(
        f"_base_ = [{ADAMW!r}]\n"
        "custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', 'pause_hook'],\n"
        "                      allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='PauseAtIterHook', at=8, marker={str(paused)!r})]\n")
    options = ["--cfg-options", *cli_options(iters=30, checkpoint_interval=5)]

    # the uninterrupted run goes alongside the one that gets killed
    uninterrupted_run = subprocess.Popen(
        [sys.executable, TRAIN, ADAMW, "--work-dir", str(whole), *options], cwd=ROOT,
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = subprocess.Popen([sys.executable, TRAIN, str(config), "--work-dir", str(killed),
                                *options], cwd=ROOT, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not paused.exists():  # poll until the run stands at iteration 8
        assert process.poll() is None, "the run ended before iteration 8"
        assert time.monotonic() < deadline, "the run did not reach iteration 8"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert (killed / "last_checkpoint").read_text().strip().endswith("iter_5.pth")

    result = _run([ADAMW, "--work-dir", str(killed), "--resume", *options])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout
    _, stderr = uninterrupted_run.communicate(timeout=600)
    assert uninterrupted_run.returncode == 0, stderr[-3000:]
    resumed, uninterrupted = state_of(killed / "iter_30.pth"), state_of(whole / "iter_30.pth")
    for part in ("state_dict", "optimizer", "param_schedulers"):
        assert_same_tensors(resumed[part], uninterrupted[part], part)


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU (gloo) path")
    result = torchrun(2, "-m", "visdet_mmext", "train", ADAMW, "--launcher", "pytorch",
                      "--work-dir", str(tmp_path), "--cfg-options", *cli_options(iters=4),
                      "log_level=INFO")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    assert result.stdout.count("Training finished") == 1  # rank 0 reports
    assert "Setting accelerator to CPU" not in result.stdout + result.stderr  # explained noise
    assert (tmp_path / "iter_4.pth").exists()
    log = next(tmp_path.glob("*/*.log")).read_text()
    assert "Distributed training: True" in log and "GPU number: 2" in log
