"""A DeepSpeed JIT build killed midway must not make every later build wait forever.

torch's build lock has no timeout; CI once timed out waiting on a ``cpu_lion/lock`` that a
killed run had left in the shared ``TORCH_EXTENSIONS_DIR``.
"""
import subprocess
import sys
import textwrap

import pytest

from subprocess_utils import run_python
from visdet_mmext.compat.deepspeed_build_lock import clear_stale_build_lock, extensions_root

HOLD_LOCK = textwrap.dedent("""
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL)  # what torch's FileBaton does
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_lock_held_by_a_live_build_is_kept_and_a_dead_ones_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    lock = tmp_path / "cpu_adam" / "lock"
    lock.parent.mkdir()
    builder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)],
                               stdout=subprocess.PIPE, text=True)
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
    """Leave the lock a killed build leaves, then build and step DeepSpeed's CPU Adagrad."""
    lock = extensions_root() / "cpu_adagrad" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    try:
        result = run_python("""
            import logging
            logging.basicConfig()
            import torch
            import visdet_mmext
            from mmengine.registry import OPTIMIZERS
            param = torch.nn.Parameter(torch.ones(64))
            optimizer = OPTIMIZERS.build(dict(type="DeepSpeedCPUAdagrad", params=[param], lr=0.1))
            param.grad = torch.ones(64)
            optimizer.step()
            assert param.detach().max() < 1, param
            print("stepped")
        """, timeout=900)  # a cold build takes 1-3 min; without the fix this waits forever
    except subprocess.TimeoutExpired:
        pytest.fail(f"the build waited on the stale {lock}")
    finally:
        lock.unlink(missing_ok=True)
    assert "stepped" in result.stdout
    assert f"removed {lock}" in result.stderr
