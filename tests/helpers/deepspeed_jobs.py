"""Run ``tests/jobs/deepspeed_train.py`` (one DeepSpeed engine per process) and read what it left.

The jobs train the configs in ``configs/deepspeed/`` with the toy model swapped in; ``nproc > 1``
starts them under torchrun on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from subprocess_utils import REPO as ROOT

JOB = os.path.join(ROOT, "tests", "jobs", "deepspeed_train.py")
CONFIGS = os.path.join(ROOT, "visdet_mmext", "configs", "deepspeed")
ZERO2 = os.path.join(CONFIGS, "zero2_offload_adamw.py")
ZERO3 = os.path.join(CONFIGS, "zero3_offload_param_adamw.py")
#: the toy model and data, 8 iterations per epoch, every epoch checkpointed
TOY = ["train_dataloader.batch_size=8", "optim_wrapper.optimizer.lr=0.01",
       "default_hooks.checkpoint.max_keep_ckpts=-1", "default_hooks.logger.interval=4"]
FP32 = dict(rtol=1e-5, atol=1e-6)  # fp32 tolerance for two runs of the same arithmetic


class Job:
    """One finished training subprocess: its return code, log, summary and final weights."""

    def __init__(self, work_dir, done, result_path, params_path):
        self.work_dir = str(work_dir)
        self.returncode = done.returncode
        self.log = done.stdout + done.stderr
        self.result = json.load(open(result_path)) if os.path.exists(result_path) else None
        self.params = torch.load(params_path) if os.path.exists(params_path) else None

    def check(self) -> "Job":
        assert self.returncode == 0 and self.result is not None, self.log[-6000:]
        return self

    def checkpoint(self, epoch: int) -> str:
        return os.path.join(self.work_dir, f"epoch_{epoch}.pth")


def run_job(tmp_path_factory, name, config, *options, resume=None, nproc=1, timeout=900) -> Job:
    work_dir = tmp_path_factory.mktemp(name)
    result, params = str(work_dir / "result.json"), str(work_dir / "params.pt")
    env = dict(os.environ)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a single-process run must start without a launcher's variables
    if nproc > 1:
        # --standalone: torchrun binds a free port itself (no race with other tests for one)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={nproc}", JOB, config, "--launcher", "pytorch"]
    else:
        command = [sys.executable, JOB, config]
    command += ["--work-dir", str(work_dir), "--toy", "--result", result, "--params", params]
    if resume:
        command += ["--resume", resume]
    command += ["--cfg-options", *TOY, *options]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return Job(work_dir, done, result, params)


def assert_same_params(a: dict, b: dict, **tolerance):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name].float(), b[name].float(), msg=name, **tolerance)
