"""Damaged checkpoints are caught before use: CRC-32 of every record, truncation, empty files.

Real checkpoints from a real Runner, damaged the way disks and killed saves damage them: a byte
flipped inside a tensor's data with the zip structure intact (torch's reader never checks the
CRCs), a file cut short, an empty file. Then ``visdet-mmext train --resume`` falls back to the newest
intact checkpoint, and an explicit damaged path stops before training (exit code 2).
"""
import os

import pytest
import torch

import visdet_mmext.demo  # noqa: F401
from damage import flip_byte
from demo_utils import CONFIGS, cli_options
from visdet_mmext.checkpoint import integrity
from visdet_mmext.errors import CorruptCheckpointError
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")


@pytest.fixture
def trained(adamw_run):
    return adamw_run


def copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_bit_flip_loads_silently_with_plain_torch(trained, tmp_path):
    """The problem is real: torch.load accepts the damaged file."""
    path = copy(trained / "iter_4.pth", tmp_path / "iter_4.pth")
    flip_byte(path)
    assert torch.load(path, weights_only=False)  # trusted here: our own test file


def test_bit_flip_is_caught(trained, tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    path = copy(trained / "iter_4.pth", tmp_path / "iter_4.pth")
    assert integrity.problem(path) is None
    flip_byte(path)
    assert "fails its CRC-32 check" in integrity.problem(path)
    with pytest.raises(CorruptCheckpointError, match="damaged"):
        _load_checkpoint(str(path), map_location="cpu")


def test_truncated_and_empty_files_are_caught(trained, tmp_path):
    data = (trained / "iter_4.pth").read_bytes()
    for size, expected in ((len(data) - 100, "truncated"), (len(data) // 2, "truncated"),
                           (0, "empty")):
        path = tmp_path / f"cut_{size}.pth"
        path.write_bytes(data[:size])
        assert expected in integrity.problem(path), size


def test_legacy_format_has_no_checksums_and_still_loads(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    assert integrity.problem(path) is None
    from mmengine.runner.checkpoint import _load_checkpoint
    assert torch.equal(_load_checkpoint(str(path))["w"], torch.ones(3))


def test_a_file_changed_after_verification_is_checked_again(trained, tmp_path):
    path = copy(trained / "iter_4.pth", tmp_path / "iter_4.pth")
    assert integrity.problem(path) is None
    flip_byte(path)
    os.utime(path, ns=(1, 1))  # a different mtime: a new identity, verified again
    assert integrity.problem(path) is not None


def _work_dir_with(trained, tmp_path, damage):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    for name in ("iter_2.pth", "iter_4.pth"):
        copy(trained / name, work_dir / name)
    (work_dir / "last_checkpoint").write_text(str(work_dir / "iter_4.pth"))
    for name in damage:
        flip_byte(work_dir / name)
    return work_dir


def test_resume_falls_back_to_the_newest_intact_checkpoint(trained, tmp_path, capsys):
    work_dir = _work_dir_with(trained, tmp_path, damage=["iter_4.pth"])
    code = train_tool.main([ADAMW, "--work-dir", str(work_dir), "--resume", "--cfg-options",
                            *cli_options(iters=6, checkpoint_interval=6)])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert f"Skipped {work_dir / 'iter_4.pth'}: " in err and "CRC-32" in err
    assert f"Resuming from {work_dir / 'iter_2.pth'}" in out
    assert torch.load(work_dir / "iter_6.pth", weights_only=False)["meta"]["iter"] == 6


@pytest.mark.parametrize("case", ["explicit damaged path", "nothing intact"])
def test_damaged_checkpoints_stop_before_training(trained, tmp_path, capsys, case):
    work_dir = _work_dir_with(trained, tmp_path, damage=["iter_2.pth", "iter_4.pth"])
    resume = ["--resume", str(work_dir / "iter_4.pth")] if case.startswith("explicit") else ["--resume"]
    code = train_tool.main([ADAMW, "--work-dir", str(work_dir), *resume, "--cfg-options",
                            *cli_options(iters=12)])
    out, err = capsys.readouterr()
    assert code == 2
    expected = "CorruptCheckpointError" if case.startswith("explicit") else \
        "CheckpointError: --resume: no usable checkpoint"
    assert expected in err and "Traceback" not in out + err
    assert "Iter(train)" not in out + err
    assert not (work_dir / "iter_12.pth").exists()
