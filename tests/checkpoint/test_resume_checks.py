"""--resume continues only this model's run, from a checkpoint that can be resumed.

Through ``visdet-mmext train``'s ``main`` on real checkpoints of a real run: another model's
checkpoint stops with ``CheckpointMismatchError`` naming the first differences; a checkpoint whose
own iteration is not its file name's is reported; ``--resume`` without a path skips every unusable
newest entry (damaged, a directory, a FIFO, a dangling link, a weights-only export, an empty or
dangling ``last_checkpoint``) with one line each and takes the newest usable one; the advice in
each message is run as written and works.
"""
import os
import shutil

import pytest
import torch

import visdet_mmext.demo  # noqa: F401
from demo_utils import CONFIGS, cli_options, state_of
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")


@pytest.fixture
def trained(adamw_run):
    return adamw_run


def _train(capsys, work_dir, *extra, config=ADAMW, iters=6, options=()):
    code = train_tool.main([str(config), "--work-dir", str(work_dir), *extra, "--cfg-options",
                            *cli_options(iters=iters, checkpoint_interval=2), *options])
    out, err = capsys.readouterr()
    logs = "".join(p.read_text() for p in work_dir.rglob("*.log")) if work_dir.exists() else ""
    return code, out + err, logs


def _config(tmp_path, lines: str):
    path = tmp_path / "other_model.py"
    path.write_text(f"_base_ = [{ADAMW!r}]\n{lines}\n")
    return path


def _weights_only(source, target):
    torch.save({"state_dict": state_of(source)["state_dict"]}, target)
    return target


@pytest.mark.parametrize("lines, first", [
    ("model = dict(num_classes=7)", "head.weight: checkpoint (4, 128), model (7, 128)"),
    ("model = dict(_delete_=True, type='DemoTransformer', num_classes=4, embed_dim=16, depth=1, "
     "num_heads=2)", ": in the model (16, 3, 4, 4), not in the checkpoint"),
], ids=["another head", "another model"])
def test_another_models_checkpoint_stops_and_the_advice_works(trained, tmp_path, capsys, lines,
                                                              first):
    config = _config(tmp_path, lines)
    checkpoint = trained / "iter_2.pth"
    code, output, _ = _train(capsys, tmp_path / "work", "--resume", str(checkpoint), config=config)
    assert code == 2 and "Traceback" not in output and "Iter(train)" not in output
    assert f"CheckpointMismatchError: Checkpoint {checkpoint} was not saved from this model" in output
    assert first in output and "First differences" in output
    assert not list((tmp_path / "work").glob("iter_*.pth"))
    advice = f"--cfg-options load_from={checkpoint} (and no --resume)"
    assert advice in output
    code, output, _ = _train(capsys, tmp_path / "advised", config=config, iters=2,
                             options=[f"load_from={checkpoint}"])
    assert code == 0, output[-3000:]


def test_a_renamed_checkpoint_is_reported(trained, tmp_path, capsys):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    shutil.copy(trained / "iter_2.pth", work_dir / "iter_40.pth")
    code, output, logs = _train(capsys, work_dir, "--resume", str(work_dir / "iter_40.pth"),
                                options=["log_level=INFO"])
    assert code == 0, output[-3000:]
    assert ("iter_40.pth is named for iteration 40, but the checkpoint holds iteration 2 (its "
            "meta.iter): the run resumes at iteration 2") in logs
    assert state_of(work_dir / "iter_6.pth")["meta"]["iter"] == 6


def test_a_weights_only_checkpoint_is_not_resumed_and_the_advice_works(trained, tmp_path, capsys):
    export = _weights_only(trained / "iter_4.pth", tmp_path / "clean.pth")
    code, output, _ = _train(capsys, tmp_path / "work", "--resume", str(export))
    assert code == 2 and "Traceback" not in output and "KeyError" not in output
    assert "it holds no training state (meta, message_hub missing)" in output
    assert f"--cfg-options load_from={export} (and no --resume)" in output
    code, output, _ = _train(capsys, tmp_path / "work", iters=2, options=[f"load_from={export}"])
    assert code == 0, output[-3000:]


def test_the_runner_api_refuses_a_weights_only_checkpoint_too(trained, tmp_path):
    from mmengine.runner import Runner

    from demo_utils import tiny_cfg
    from visdet_mmext.errors import CheckpointError
    cfg = tiny_cfg("optimizers/adamw.py", tmp_path / "work", iters=2)
    cfg.resume, cfg.load_from = True, str(_weights_only(trained / "iter_4.pth", tmp_path / "w.pth"))
    with pytest.raises(CheckpointError, match="holds no training state"):
        Runner.from_cfg(cfg).train()


def _hostile_work_dir(trained, tmp_path):
    """iter_2 and iter_4 intact; every newer entry unusable in its own way."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    for name in ("iter_2.pth", "iter_4.pth"):
        shutil.copy(trained / name, work_dir / name)
    (work_dir / "iter_100.pth").mkdir()
    _weights_only(trained / "iter_4.pth", work_dir / "iter_90.pth")
    data = (trained / "iter_4.pth").read_bytes()
    (work_dir / "iter_80.pth").write_bytes(data[: len(data) // 2])
    os.mkfifo(work_dir / "iter_70.pth")
    os.symlink(tmp_path / "moved_away.pth", work_dir / "iter_60.pth")
    (work_dir / "iter_50.pth").write_bytes(b"")
    elsewhere = tmp_path / "a_folder"
    elsewhere.mkdir()
    (work_dir / "last_checkpoint").write_text(str(elsewhere))
    return work_dir


UNUSABLE = {
    "a_folder": "a directory, not a checkpoint file",
    "iter_100.pth": "a directory, not a checkpoint file",
    "iter_90.pth": "it holds no training state",
    "iter_80.pth": "truncated",
    "iter_70.pth": "not a regular file",
    "iter_60.pth": "moved_away.pth, which does not exist",
    "iter_50.pth": "the file is empty",
}


def test_automatic_resume_skips_each_unusable_entry_and_takes_the_newest_usable(trained, tmp_path,
                                                                                 capsys):
    work_dir = _hostile_work_dir(trained, tmp_path)
    code, output, _ = _train(capsys, work_dir, "--resume")
    assert code == 0, output[-3000:]
    skipped = [line for line in output.splitlines() if line.startswith("Skipped ")]
    assert len(skipped) == len(UNUSABLE), skipped
    for name, reason in UNUSABLE.items():
        assert any(name in line and reason in line for line in skipped), (name, skipped)
    assert f"Resuming from {work_dir / 'iter_4.pth'} (the newest usable checkpoint in the work dir)" \
        in output
    assert state_of(work_dir / "iter_6.pth")["meta"]["iter"] == 6


def test_automatic_resume_with_nothing_usable_stops_naming_what_it_found(trained, tmp_path, capsys):
    work_dir = _hostile_work_dir(trained, tmp_path)
    for name in ("iter_2.pth", "iter_4.pth"):
        (work_dir / name).unlink()
    code, output, _ = _train(capsys, work_dir, "--resume")
    assert code == 2 and "Traceback" not in output and "Iter(train)" not in output
    assert f"no usable checkpoint in {work_dir}: {len(UNUSABLE)} found, none usable" in output
    assert f"--work-dir {work_dir}_restart" in output
    assert (work_dir / "iter_90.pth").exists() and (work_dir / "iter_100.pth").is_dir()


def test_an_empty_record_and_no_checkpoint_trains_from_the_start(tmp_path, capsys):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "last_checkpoint").write_text("")
    code, output, _ = _train(capsys, work_dir, "--resume", iters=2)
    assert code == 0, output[-3000:]
    assert "last_checkpoint: empty" in output and "training from the start" in output


def test_a_checkpoint_outside_the_work_dir_is_said_to_be_named_by_the_record(trained, tmp_path,
                                                                          capsys):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "last_checkpoint").write_text(str(trained / "iter_4.pth"))
    code, output, _ = _train(capsys, work_dir, "--resume")
    assert code == 0, output[-3000:]
    assert f"Resuming from {trained / 'iter_4.pth'} (named by {work_dir / 'last_checkpoint'})" \
        in output
    assert "in the work dir" not in output.split("Resuming from", 1)[1].splitlines()[0]


def test_a_dangling_record_is_skipped(trained, tmp_path, capsys):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    shutil.copy(trained / "iter_4.pth", work_dir / "iter_4.pth")
    (work_dir / "last_checkpoint").write_text(str(tmp_path / "gone" / "iter_9.pth"))
    code, output, _ = _train(capsys, work_dir, "--resume")
    assert code == 0, output[-3000:]
    assert f"Skipped {tmp_path / 'gone' / 'iter_9.pth'}: no such file or directory" in output
    assert f"Resuming from {work_dir / 'iter_4.pth'}" in output


def test_the_configs_own_resume_setting_takes_the_same_path(trained, tmp_path, capsys):
    """resume=True in the config (no --resume) with only an empty record: no mmengine traceback."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "last_checkpoint").write_text("")
    code, output, _ = _train(capsys, work_dir, iters=2, options=["resume=True"])
    assert code == 0, output[-3000:]
    assert "training from the start" in output
