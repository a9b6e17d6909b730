"""Train demo configs with tools/train.py's main() inside a torchrun worker (the process group
already exists, over the counting gloo backend), keeping the Runner and the bytes per iteration.
"""
import os
import uuid

import traffic_hook
from demo_utils import CONFIGS
from visdet_mmext.tools import train as train_tool

RUNNERS = []
_build = train_tool.build_runner
train_tool.build_runner = lambda cfg: RUNNERS.append(_build(cfg)) or RUNNERS[-1]


def derived_config(config: str, out_dir: str, rank: int, lines: str = "") -> str:
    """A config file inheriting ``config`` (a packaged config) plus the traffic hook and ``lines``."""
    path = os.path.join(out_dir, f"r{rank}_{uuid.uuid4().hex[:6]}_{os.path.basename(config)}")
    with open(path, "w") as f:  # one file per rank: no rank reads another's half-written file
        f.write(f"_base_ = [{os.path.join(CONFIGS, config)!r}]\n"
                "custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', "
                "'traffic_hook'], allow_failed_imports=False)\n"
                "custom_hooks = [dict(type='IterTrafficHook')]\n" + lines)
    return path


def train(config_file: str, work_dir: str, *options: str, resume: str | None = None):
    """Run tools/train.py's main; return (exit code, the Runner, bytes sent per iteration)."""
    traffic_hook.SENT_PER_ITER.clear()
    argv = [config_file, "--launcher", "pytorch", "--work-dir", work_dir,
            *(["--resume", resume] if resume else []),
            "--cfg-options", *options, f"experiment_name=e{uuid.uuid4().hex[:8]}"]
    count = len(RUNNERS)
    code = train_tool.main(argv)
    runner = RUNNERS[-1] if len(RUNNERS) > count else None
    return code, runner, list(traffic_hook.SENT_PER_ITER)
