"""Helpers for the demo, config, train-tool and checkpoint tests: tiny versions of the configs."""
from __future__ import annotations

import os
import os.path as osp
import uuid

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, "visdet_mmext", "configs")  # the packaged configs
TRAIN = osp.join(ROOT, "tools", "train.py")
TINY_MODELS = {
    "DemoConvNet": dict(widths=(8, 16, 32)),
    "DemoTransformer": dict(embed_dim=16, depth=1, num_heads=2),
}


def tiny_options(*, iters: int = 4, checkpoint_interval: int | None = None, num_train: int = 256,
                 num_val: int = 64, batch_size: int = 32, validate: bool = True) -> dict:
    """--cfg-options style overrides that make any demo config train in a second."""
    options = {
        "train_cfg.max_iters": iters,
        "train_cfg.val_interval": iters,
        "train_dataloader.batch_size": batch_size,
        "train_dataloader.dataset.num_train": num_train,
        "train_dataloader.dataset.num_val": num_val,
        "val_dataloader.dataset.num_train": num_train,
        "val_dataloader.dataset.num_val": num_val,
        "val_dataloader.batch_size": num_val,
        "default_hooks.logger.interval": 1,
        "default_hooks.checkpoint.interval": checkpoint_interval or iters,
        "default_hooks.checkpoint.max_keep_ckpts": -1,
        "log_level": "WARNING",
    }
    if not validate:
        options.update({"val_dataloader": None, "val_cfg": None, "val_evaluator": None})
    return options


def tiny_cfg(config: str, work_dir, **kwargs):
    """The config file, shrunk (small model, small data, few iterations), as an mmengine Config."""
    from mmengine.config import Config

    cfg = Config.fromfile(config if osp.isabs(config) else osp.join(CONFIGS, config))
    cfg.merge_from_dict(tiny_options(**kwargs))
    cfg.model.update(TINY_MODELS.get(cfg.model.type, {}))
    import torch
    for hook in cfg.get("custom_hooks", []):  # runs a test compares use the same thread count
        if hook.get("type") == "CpuThreadsHook":
            hook["threads"] = torch.get_num_threads()
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f"test_{uuid.uuid4().hex[:10]}"
    return cfg


def cli_options(**kwargs) -> list[str]:
    """tiny_options as command-line words for --cfg-options."""
    words = []
    for key, value in tiny_options(**kwargs).items():
        words.append(f"{key}={'None' if value is None else value}")
    return words


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, osp.join(ROOT, "tests", "jobs"),
                                                      env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def exit_codes(stderr: str) -> tuple[list[str], list[str]]:
    """The exit codes in torchrun's failure report: (the first failure's, every rank's). The
    first rank to stop is the root cause; torchrun then ends the others, which may show -15."""
    import re
    report = r"exitcode\s+:\s*(-?\d+) \(pid"  # one per rank ("failed (exitcode: 2)" logs aside)
    root_cause = stderr.split("Root Cause (first observed failure):")[-1]
    return re.findall(report, root_cause), re.findall(report, stderr)


def torchrun(nproc: int, *argv: str, log_dir=None, timeout: int = 600):
    """``python -m torch.distributed.run`` on ``nproc`` processes from the repository root, with
    the tests' environment. ``--standalone``: torchrun picks a free port itself (no race with
    other processes for one); ``log_dir``: each rank's output in its own files."""
    import subprocess
    import sys

    logs = ["--log-dir", str(log_dir), "--redirects", "3"] if log_dir else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(nproc), *logs, *argv]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=subprocess_env(),
                          timeout=timeout)


def state_of(checkpoint_path: str) -> dict:
    from visdet_mmext.checkpoint import safe_torch_load
    return safe_torch_load(checkpoint_path, map_location="cpu")


def assert_same_tensors(a, b, where: str = "") -> None:
    """Exact equality of two nested structures of tensors/numbers (checkpoint contents)."""
    import torch
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where}: max diff {(a.double() - b.double()).abs().max()}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
