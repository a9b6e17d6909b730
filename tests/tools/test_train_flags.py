"""visdet-mmext train takes every flag of mmdet's and mmpretrain's tools/train.py, each with its
real effect on the Runner."""
import os
import uuid

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from demo_utils import CONFIGS, cli_options
from visdet_mmext.tools import train as train_tool

ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")

pytestmark = pytest.mark.usefixtures("one_thread")

#: mmdet 3.3.0 tools/train.py and mmpretrain 1.2.0 tools/train.py, every flag of either.
OPENMMLAB_FLAGS = ("--work-dir", "--resume", "--amp", "--auto-scale-lr", "--no-validate",
                   "--no-pin-memory", "--no-persistent-workers", "--cfg-options", "--launcher",
                   "--local_rank", "--local-rank")


def test_every_openmmlab_flag_is_accepted(capsys):
    with pytest.raises(SystemExit):
        train_tool.parse_args(["--help"])
    usage = capsys.readouterr().out
    for flag in OPENMMLAB_FLAGS:
        assert flag in usage, flag


def _trained(tmp_path, monkeypatch, *argv):
    """train's main() on the AdamW demo config (tiny); the runner it built, and its exit code."""
    built = []
    build = train_tool.build_runner
    monkeypatch.setattr(train_tool, "build_runner", lambda cfg: built.append(build(cfg)) or built[-1])
    code = train_tool.main([ADAMW, "--work-dir", str(tmp_path), *argv, "--cfg-options",
                            *cli_options(iters=2), f"experiment_name=t{uuid.uuid4().hex[:8]}"])
    return (built[0] if built else None), code


def test_auto_scale_lr_scales_by_the_batch_size(tmp_path, monkeypatch):
    runner, code = _trained(tmp_path / "scaled", monkeypatch, "--auto-scale-lr")  # batch 32 of 64
    assert code == 0
    assert runner.optim_wrapper.optimizer.param_groups[0]["initial_lr"] == pytest.approx(5e-3 / 2)
    runner, code = _trained(tmp_path / "plain", monkeypatch)
    assert runner.optim_wrapper.optimizer.param_groups[0]["initial_lr"] == pytest.approx(5e-3)


def test_auto_scale_lr_without_a_base_batch_size_names_the_fix(tmp_path, capsys):
    code = train_tool.main([ADAMW, "--work-dir", str(tmp_path), "--auto-scale-lr",
                            "--cfg-options", "auto_scale_lr=None"])
    assert code == 2
    assert "auto_scale_lr = dict(enable=False, base_batch_size=N)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_no_validate_trains_without_validation(tmp_path, monkeypatch, capsys):
    runner, code = _trained(tmp_path, monkeypatch, "--no-validate")
    assert code == 0 and runner.val_loop is None
    out = capsys.readouterr().out
    assert "Training finished" in out and "last validation" not in out


def test_no_pin_memory_and_no_persistent_workers_reach_the_dataloaders():
    def loader(*argv):
        cfg = Config.fromfile(ADAMW)
        cfg.merge_from_dict({"train_dataloader.pin_memory": True,
                             "train_dataloader.persistent_workers": True})
        cfg = train_tool.merge_args(cfg, train_tool.parse_args([ADAMW, *argv]))
        cfg.train_dataloader.dataset.update(num_train=64, num_val=8)
        return Runner.build_dataloader(cfg.train_dataloader)

    # the demo loads in the main process: persistent workers cannot exist there
    with pytest.raises(ValueError, match="persistent_workers"):
        loader()
    built = loader("--no-pin-memory", "--no-persistent-workers")
    assert built.pin_memory is False and built.persistent_workers is False
