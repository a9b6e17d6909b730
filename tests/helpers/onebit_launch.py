"""Run a 1-bit job script (tests/jobs/onebit/) under torchrun: gloo on 127.0.0.1, on a port torchrun
binds itself (--standalone)."""
import os
import subprocess
import sys

from demo_utils import ROOT, subprocess_env

JOBS = os.path.join(ROOT, "tests", "jobs", "onebit")
HELPERS = os.path.join(ROOT, "tests", "helpers")


def torchrun(job: str, nprocs: int, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``job`` (a file in tests/jobs/onebit/) on ``nprocs`` processes; fails with both logs' tails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(nprocs), os.path.join(JOBS, job), *map(str, args)]
    env = subprocess_env(PYTHONPATH=os.pathsep.join([ROOT, HELPERS, JOBS]))
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=timeout)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])
    return result
