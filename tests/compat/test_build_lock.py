"""A DeepSpeed JIT build killed midway must not make every later build wait forever.

torch's build lock has no timeout; CI once timed out waiting on a ``cpu_lion/lock`` that a
killed run had left in the shared ``TORCH_EXTENSIONS_DIR``.
"""
import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from subprocess_utils import REPO
from visdet_mmext.compat.deepspeed_build_lock import clear_stale_build_lock
from visdet_mmext.deepspeed.ops import extensions_root

HOLD_LOCK = textwrap.dedent("""
    import os, sys
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL)  # what torch's FileBaton does
    print("held", flush=True)
    sys.stdin.read()  # holds the lock until killed, however long the test takes
""")


def test_a_lock_held_by_a_live_build_is_kept_and_a_dead_ones_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    lock = tmp_path / "cpu_adam" / "lock"
    lock.parent.mkdir()
    builder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "held"
        assert not clear_stale_build_lock("cpu_adam")
        assert lock.exists()
    finally:
        builder.kill()
        builder.wait()
    assert lock.exists()  # the killed "build" left it behind, as a real one does
    assert clear_stale_build_lock("cpu_adam")
    assert not lock.exists()
    assert not clear_stale_build_lock("cpu_adam")  # nothing left to remove


@pytest.mark.deepspeed
@pytest.mark.slow
def test_a_real_build_goes_through_a_stale_lock():
    """Leave the lock a killed build leaves, then build and step DeepSpeed's CPU Adagrad.

    Without the fix the build waits on the lock forever, so the test waits for the event that
    ends that wait (the lock's removal, logged before the build starts), not for a time."""
    lock = extensions_root() / "cpu_adagrad" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import logging, sys
        logging.basicConfig(stream=sys.stdout)
        import torch
        import visdet_mmext
        from mmengine.registry import OPTIMIZERS
        param = torch.nn.Parameter(torch.ones(64))
        optimizer = OPTIMIZERS.build(dict(type="DeepSpeedCPUAdagrad", params=[param], lr=0.1))
        param.grad = torch.ones(64)
        optimizer.step()
        assert param.detach().max() < 1, param
        print("stepped", flush=True)
    """)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()  # the run's output, line by line (None: it ended)
    reader = threading.Thread(target=lambda: [*map(lines.put, process.stdout), lines.put(None)])
    reader.start()
    output = []
    try:
        # imports take seconds (minutes on a busy machine); the lock goes before the build starts
        deadline = time.monotonic() + 300
        while not any(f"removed {lock}" in line for line in output):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the build is waiting on the stale {lock}:\n{''.join(output)}")
            assert line is not None, f"the run ended without clearing {lock}:\n{''.join(output)}"
            output.append(line)
        returncode = process.wait()  # the build: 1-3 min cold, cached after
    finally:
        process.kill()
        process.wait()
        reader.join()
        lock.unlink(missing_ok=True)
    output += list(iter(lines.get, None))
    assert returncode == 0 and "stepped" in "".join(output), "".join(output)
