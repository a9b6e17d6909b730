"""One live run per work dir: a second run is refused naming the first; a killed run's lock does
not block the next one; a lock from another host needs --take-over-work-dir.

Real runs through ``visdet-mmext train``'s ``main``; the holders are real processes (a
``WorkDirLock`` held by this process, a process that takes the lock and SIGKILLs itself, a
training run SIGKILLed mid-run), waited for by polling their files and ``wait()``, never by
sleeping a guessed time.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from demo_utils import CONFIGS, ROOT, TRAIN, cli_options, state_of, subprocess_env
from visdet_mmext.checkpoint.resume import find_resume_checkpoint
from visdet_mmext.runtime.work_dir_lock import LOCK_NAME, WorkDirLock
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")


def _train(work_dir, capsys, *extra, iters=2):
    code = train_tool.main([ADAMW, "--work-dir", str(work_dir), *extra, "--cfg-options",
                            *cli_options(iters=iters)])
    out, err = capsys.readouterr()
    return code, out + err


def test_a_run_gives_its_lock_back(tmp_path, capsys):
    code, output = _train(tmp_path, capsys)
    assert code == 0, output[-3000:]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_run_is_refused_while_the_first_holds_the_work_dir(tmp_path, capsys):
    with WorkDirLock(str(tmp_path)):
        code, output = _train(tmp_path, capsys)
        assert code == 2 and "Traceback" not in output
        assert "WorkDirInUseError" in output and "another run is training into it" in output
        assert f"PID {os.getpid()} on {socket.gethostname()}" in output
        assert "--take-over-work-dir" in output
        assert not list(tmp_path.glob("*.pth")) and not list(tmp_path.glob("2*"))  # touched nothing

        code, output = _train(tmp_path, capsys, "--take-over-work-dir")
        assert code == 0, output[-3000:]
        assert f"Took over work dir {tmp_path} from PID {os.getpid()}" in output


HOLD_AND_DIE = """
import os, signal, sys
from visdet_mmext.runtime.work_dir_lock import WorkDirLock
WorkDirLock(sys.argv[1]).acquire()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_the_lock_of_a_killed_run_does_not_block_the_next(tmp_path, capsys):
    holder = subprocess.run([sys.executable, "-c", HOLD_AND_DIE, str(tmp_path)], cwd=ROOT,
                            env=subprocess_env(), timeout=300)
    assert holder.returncode == -signal.SIGKILL
    record = json.loads((tmp_path / LOCK_NAME).read_text())  # left behind by the killed process
    code, output = _train(tmp_path, capsys)
    assert code == 0, output[-3000:]
    assert f"from PID {record['pid']} on {record['host']}" in output
    assert "that run ended without giving it back" in output


def test_a_lock_taken_on_another_host_needs_the_flag(tmp_path, capsys):
    record = dict(pid=1, host="another-node", started="2026-01-01T00:00:00",
                  command="visdet-mmext train demo_muon")
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    code, output = _train(tmp_path, capsys)
    assert code == 2 and "Traceback" not in output
    assert "taken on another host" in output and "PID 1 on another-node" in output
    assert "rerun with --take-over-work-dir" in output

    code, output = _train(tmp_path, capsys, "--take-over-work-dir")
    assert code == 0, output[-3000:]
    assert "from PID 1 on another-node" in output


def test_an_unwritable_work_dir_is_named(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    code, output = _train(tmp_path / "a_file" / "work", capsys)
    assert code == 2 and "Traceback" not in output
    assert "cannot be created" in output


@pytest.mark.slow
def test_a_run_sigkilled_mid_training_blocks_nobody_and_loses_nothing(tmp_path, capsys):
    """Concurrent runs into one work dir: the second is refused while the first trains; after
    a SIGKILL of the first, the next run takes the work dir over and resumes its checkpoint."""
    config, paused = tmp_path / "pausing_adamw.py", tmp_path / "paused"
    config.write_text(f"_base_ = [{ADAMW!r}]\n"
                      "custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', "
                      "'pause_hook'], allow_failed_imports=False)\n"
                      f"custom_hooks = [dict(type='PauseAtIterHook', at=3, marker={str(paused)!r})]\n")
    work_dir = tmp_path / "work"
    first = subprocess.Popen([sys.executable, TRAIN, str(config), "--work-dir", str(work_dir),
                              "--cfg-options", *cli_options(iters=10000, checkpoint_interval=2)],
                             cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():  # it holds the lock, stopped after iteration 3
            assert first.poll() is None and time.monotonic() < deadline, "the run did not train"
            time.sleep(0.05)
        code, output = _train(work_dir, capsys, "--resume")
        assert code == 2, output[-3000:]
        assert f"PID {first.pid} on {socket.gethostname()}" in output
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    saved = list(work_dir.glob("iter_*.pth"))
    newest = find_resume_checkpoint(str(work_dir)).chosen  # a save cut by the kill is skipped
    reached = state_of(newest)["meta"]["iter"]
    code, output = _train(work_dir, capsys, "--resume", iters=reached + 2)
    assert code == 0, output[-3000:]
    assert f"from PID {first.pid}" in output and "ended without giving it back" in output
    assert f"Resuming from {newest}" in output
    assert state_of(work_dir / f"iter_{reached + 2}.pth")["meta"]["iter"] == reached + 2
    assert all(path.exists() for path in saved)  # nothing of the killed run was lost
