"""Run a job script of tests/onebit/onebit_jobs under torchrun: gloo on 127.0.0.1, a free port."""
import os
import socket
import subprocess
import sys

from jobs.demo_utils import ROOT, subprocess_env

JOBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onebit_jobs")
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(job: str, nprocs: int, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``job`` (a file in onebit_jobs/) on ``nprocs`` processes; fails with both logs' tails."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nprocs),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               os.path.join(JOBS, job), *map(str, args)]
    env = subprocess_env(PYTHONPATH=os.pathsep.join([ROOT, TESTS, JOBS]))
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=timeout)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])
    return result
