"""A checkpoint that cannot be written stops the run with one sentence and exit code 2.

Real failures of the real file system under a real run: a directory where the checkpoint goes
(IsADirectoryError), a full disk (the checkpoint's path leads to /dev/full: ENOSPC), a read-only
folder. The message says what failed, where, and which checkpoint is still intact; nothing the
run had saved is touched.
"""
import os

import pytest

from demo_utils import CONFIGS, cli_options, state_of
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")


def _train(work_dir, capsys, *options):
    flags = [option for option in options if option.startswith("--")]
    settings = [option for option in options if not option.startswith("--")]
    code = train_tool.main([ADAMW, "--work-dir", str(work_dir), *flags, "--cfg-options",
                            *cli_options(iters=4, checkpoint_interval=2), *settings])
    out, err = capsys.readouterr()
    return code, out + err


def test_a_directory_where_the_first_checkpoint_goes(tmp_path, capsys):
    (tmp_path / "iter_2.pth").mkdir()
    code, output = _train(tmp_path, capsys)
    assert code == 2 and "Traceback" not in output
    assert (f"CheckpointSaveError: Could not save checkpoint {tmp_path / 'iter_2.pth'} (Is a "
            "directory), so training stopped at iteration 2; no earlier checkpoint of this run "
            "was saved.") in output
    assert "continue with --resume and the same --work-dir" in output
    assert (tmp_path / "iter_2.pth").is_dir()


def test_a_full_disk_names_the_intact_checkpoint(tmp_path, capsys):
    os.symlink("/dev/full", tmp_path / "iter_4.pth")  # writes there fail with ENOSPC
    code, output = _train(tmp_path, capsys)
    assert code == 2 and "Traceback" not in output
    assert (f"Could not save checkpoint {tmp_path / 'iter_4.pth'} (No space left on device), so "
            f"training stopped at iteration 4; the newest usable checkpoint, "
            f"{tmp_path / 'iter_2.pth'}, is intact.") in output
    assert state_of(tmp_path / "iter_2.pth")["meta"]["iter"] == 2
    assert os.readlink(tmp_path / "iter_4.pth") == "/dev/full"  # left as it was

    (tmp_path / "iter_4.pth").unlink()  # the cause fixed, the advice followed
    code, output = _train(tmp_path, capsys, "--resume")
    assert code == 0, output[-3000:]
    assert f"Resuming from {tmp_path / 'iter_2.pth'}" in output
    assert state_of(tmp_path / "iter_4.pth")["meta"]["iter"] == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_checkpoint_folder(tmp_path, capsys):
    out_dir = tmp_path / "checkpoints"
    (out_dir / "work").mkdir(parents=True)
    (out_dir / "work").chmod(0o555)
    try:
        code, output = _train(tmp_path / "work", capsys, f"default_hooks.checkpoint.out_dir={out_dir}")
    finally:
        (out_dir / "work").chmod(0o755)
    assert code == 2 and "Traceback" not in output
    assert "(Permission denied), so training stopped at iteration 2" in output


@pytest.fixture
def file_size_limit():
    """Writes past 256 KiB fail with EFBIG ("File too large") in this process, as on a disk that
    fills mid-save (logs stay far below it)."""
    import resource
    import signal
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_save_cut_off_midway_removes_its_partial_file(tmp_path, capsys, file_size_limit):
    code, output = _train(tmp_path, capsys)
    assert code == 2 and "Traceback" not in output
    assert (f"Could not save checkpoint {tmp_path / 'iter_2.pth'} (File too large), so training "
            "stopped at iteration 2 (the partial file was removed)") in output
    assert not (tmp_path / "iter_2.pth").exists()
