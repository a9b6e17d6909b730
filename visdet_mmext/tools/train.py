"""Train with an mmengine config, with every visdet-mmext optimizer available.

    visdet-mmext train CONFIG [--work-dir DIR] [--resume [PATH]] [--amp] [--auto-scale-lr]
                              [--no-validate] [--no-pin-memory] [--no-persistent-workers]
                              [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]

CONFIG is a config file, or a packaged config by name (``demo_muon``; ``visdet-mmext configs``
lists them). The flags are those of mmdet's and mmpretrain's ``tools/train.py``. The plugin's
optimizer providers are loaded through their entry points (a config needs no ``custom_imports``
for them), modules a config does name in ``custom_imports`` are found in the current directory
too, the optimizer config is checked before the runner is built (a typo or a missing package
fails in a second with the fix), checkpoints load weights-only (safe resume on torch >= 2.6),
and distributed runs work on a CPU-only torch (gloo). ``runner_type`` in the config selects
another runner (``FlexibleRunner`` for DeepSpeed). The checkout's ``tools/train.py`` runs this.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import re
import sys

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def parse_args(argv=None, prog: str | None = None):
    from .cfg_options import CfgOptions

    parser = argparse.ArgumentParser(prog=prog, description="Train a model with an mmengine config")
    parser.add_argument("config", help="config file, or a packaged config's name (e.g. demo_muon)")
    parser.add_argument("--work-dir", help="where to save logs and checkpoints "
                        "(default: the config's work_dir, else ./work_dirs/<config name>)")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from PATH, or without a value from the latest checkpoint "
                             "in the work dir")
    parser.add_argument("--amp", action="store_true",
                        help="automatic mixed precision (AmpOptimWrapper; needs a GPU)")
    parser.add_argument("--auto-scale-lr", action="store_true",
                        help="scale every lr by (GPUs x batch size) / auto_scale_lr.base_batch_size "
                             "of the config")
    parser.add_argument("--no-validate", action="store_true",
                        help="train without validation (drops val_dataloader, val_cfg, "
                             "val_evaluator)")
    parser.add_argument("--no-pin-memory", action="store_true",
                        help="pin_memory=False in every dataloader")
    parser.add_argument("--no-persistent-workers", action="store_true",
                        help="persistent_workers=False in every dataloader")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptions,
                        help="override config settings, e.g. optim_wrapper.optimizer.lr=0.01 "
                             "train_cfg.max_iters=100 (lists: key=\"[a,b]\")")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="none", help="job launcher")
    # torch.distributed.launch passes --local_rank; torchrun sets LOCAL_RANK instead
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Apply the command line to the config (--cfg-options first, then the explicit flags)."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.no_validate:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if cfg.get(loader) is not None:
            if args.no_pin_memory:
                cfg[loader].pin_memory = False
            if args.no_persistent_workers:
                cfg[loader].persistent_workers = False
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        wrapper_type = cfg.optim_wrapper.get("type", "OptimWrapper")
        if wrapper_type == "AmpOptimWrapper":
            print("AMP is already enabled in the config.", file=sys.stderr)
        elif wrapper_type != "OptimWrapper":
            raise SystemExit(f"--amp replaces optim_wrapper.type='OptimWrapper', but the config "
                             f"uses {wrapper_type!r}; enable mixed precision in the config "
                             "instead.")
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.resume == "auto":
        cfg.resume = True
        cfg.load_from = resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        from visdet_mmext.errors import CheckpointError, CorruptCheckpointError
        if not osp.exists(args.resume):
            raise CheckpointError(f"--resume {args.resume}: no such file or directory.")
        problem = checkpoint_problem(args.resume)
        if problem:
            raise CorruptCheckpointError(f"--resume {args.resume}: {problem}. Nothing was loaded; "
                                         "pass another checkpoint, or --resume without a path to "
                                         "take the newest intact one in the work dir.")
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def enable_auto_scale_lr(cfg) -> None:
    """``--auto-scale-lr``: mmengine's Runner scales each lr by real / base batch size."""
    from visdet_mmext.errors import CommandLineError
    settings = cfg.get("auto_scale_lr")
    if not settings or "base_batch_size" not in settings:
        raise CommandLineError(
            "--auto-scale-lr needs the batch size the config's lr was tuned for: add "
            "auto_scale_lr = dict(enable=False, base_batch_size=N) to the config (N = number of "
            "processes x train_dataloader.batch_size of that tuning run).")
    cfg.auto_scale_lr.enable = True


def resume_checkpoint(work_dir: str) -> str | None:
    """``--resume`` without a path: the newest intact checkpoint, saying what was skipped."""
    from visdet_mmext.errors import CorruptCheckpointError
    path, skipped = find_resume_checkpoint(work_dir)
    for line in skipped:
        print(f"Skipped damaged checkpoint {line}", file=sys.stderr, flush=True)
    if path is None and skipped:
        raise CorruptCheckpointError(
            f"--resume: no intact checkpoint in {work_dir} ({len(skipped)} damaged, listed above). "
            "Nothing was loaded; train without --resume to start over, or resume from a copy.")
    if path is None:
        print(f"--resume: no checkpoint in {work_dir} yet; training from the start.", flush=True)
    else:
        print(f"Resuming from {path} (newest intact checkpoint in the work dir)", flush=True)
    return path


def checkpoint_problem(path: str) -> str | None:
    """Why a checkpoint (a file, or a DeepSpeed checkpoint directory) is unusable, or None."""
    from visdet_mmext.checkpoint import integrity
    if osp.isdir(path):
        return integrity.directory_problem(path)
    return integrity.problem(path)


def find_resume_checkpoint(work_dir: str) -> tuple[str | None, list[str]]:
    """The newest intact checkpoint in ``work_dir`` (or None), and what was skipped and why.

    mmengine reads ``last_checkpoint``; a run killed while saving can leave that file empty, or a
    newer ``iter_N.pth`` that is complete but not yet recorded, or a truncated one; a disk can
    flip bits. Numbered checkpoints (files, or DeepSpeed directories) are tried newest first,
    with ``last_checkpoint``'s target among them, and each is verified (``checkpoint_problem``).
    """
    if not osp.isdir(work_dir):
        return None, []
    numbered = []
    for name in os.listdir(work_dir):
        match = re.fullmatch(r"(iter|epoch)_(\d+)\.pth", name)
        if match:
            numbered.append((int(match.group(2)), osp.join(work_dir, name)))
    candidates = [path for _, path in sorted(numbered, reverse=True)]
    record = osp.join(work_dir, "last_checkpoint")
    if osp.isfile(record):
        with open(record) as f:
            last = f.read().strip()
        if last and osp.abspath(last) not in map(osp.abspath, candidates):
            candidates.insert(0, last)
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f"{path}: {problem}")
    return None, skipped


def _has_accelerator() -> bool:
    import torch
    return torch.cuda.is_available() or (hasattr(torch, "npu") and torch.npu.is_available())


def _distributed_env(launcher: str) -> dict:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT for a CPU process group."""
    env = os.environ
    if launcher == "pytorch":
        ranks = dict(rank=env["RANK"], world_size=env["WORLD_SIZE"], local_rank=env["LOCAL_RANK"])
    elif launcher == "slurm":
        ranks = dict(rank=env["SLURM_PROCID"], world_size=env["SLURM_NTASKS"],
                     local_rank=env.get("SLURM_LOCALID", "0"))
        if "MASTER_ADDR" not in env:
            import subprocess
            nodes = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_NODELIST"]],
                                   capture_output=True, text=True, check=True).stdout.split()
            os.environ["MASTER_ADDR"] = nodes[0]
    else:  # mpi (Open MPI names)
        ranks = dict(rank=env["OMPI_COMM_WORLD_RANK"], world_size=env["OMPI_COMM_WORLD_SIZE"],
                     local_rank=env.get("OMPI_COMM_WORLD_LOCAL_RANK", "0"))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    os.environ["RANK"], os.environ["WORLD_SIZE"] = ranks["rank"], ranks["world_size"]
    os.environ["LOCAL_RANK"] = ranks["local_rank"]
    return {key: int(value) for key, value in ranks.items()}


def setup_cpu_distributed(cfg) -> None:
    """Distributed training on a CPU-only torch: gloo, and DDP without device ids.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its default DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``; both fail without a GPU. The process group is created here
    (mmengine then skips its own), and the model wrapper gets ``device_ids=None``.
    """
    import datetime

    import torch.distributed as dist

    if cfg.launcher == "none" or _has_accelerator() or cfg.get("runner_type"):
        return
    ranks = _distributed_env(cfg.launcher)
    dist_cfg = cfg.get("env_cfg", {}).get("dist_cfg", {})
    if not dist.is_initialized():
        timeout = dist_cfg.get("timeout")
        dist.init_process_group(
            backend="gloo", rank=ranks["rank"], world_size=ranks["world_size"],
            **({"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}))
    cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
    if cfg.get("model_wrapper_cfg") is None:
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False))
    else:
        cfg.model_wrapper_cfg.setdefault("device_ids", None)


def build_runner(cfg):
    if "runner_type" not in cfg:
        from mmengine.runner import Runner
        return Runner.from_cfg(cfg)
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def report(runner) -> str:
    """Where the checkpoint and the log are, and the last validation metrics."""
    from mmengine.runner.checkpoint import find_latest_checkpoint

    checkpoint = find_latest_checkpoint(runner.work_dir)
    log_file = osp.join(runner.log_dir, f"{runner.timestamp}.log")
    lines = ["", "Training finished."]
    metrics = {key[len("val/"):]: buffer.current()
               for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith("val/") and key not in ("val/time", "val/data_time")}
    if metrics:
        shown = ", ".join(f"{key}: {float(value):.4g}" for key, value in sorted(metrics.items()))
        lines.append(f"  last validation: {shown}")
    lines.append(f"  checkpoint: {osp.abspath(checkpoint) if checkpoint else '(none saved)'}")
    lines.append(f"  log:        {osp.abspath(log_file)}")
    lines.append(f"  work dir:   {osp.abspath(runner.work_dir)}")
    return "\n".join(lines)


def load_config(path: str):
    """``Config.fromfile``, with ``custom_imports`` found in the current directory too (as under
    ``python -m``; a console script's own folder is all Python puts on the path)."""
    from mmengine.config import Config
    from visdet_mmext.errors import ConfigFileError, ConfigImportError

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return Config.fromfile(path)
    except ImportError as error:
        raise ConfigImportError(
            f"custom_imports: {type(error).__name__}: {error}. Modules are imported from the "
            "current directory and PYTHONPATH: run from the folder that holds the module (or "
            "its package), or add that folder to PYTHONPATH.") from error
    except SyntaxError as error:
        where = error.filename if error.filename not in (None, "<unknown>") else path
        raise ConfigFileError(f"{where}, line {error.lineno}: {error.msg}: "
                              f"{(error.text or '').strip()!r}") from error
    except (TypeError, KeyError, NameError, AttributeError) as error:
        # mmengine's merge of a child with its _base_ (e.g. a dict over a list: its message
        # says to add _delete_=True), or a name the file uses before defining it
        raise ConfigFileError(f"{path}: {type(error).__name__}: {error}") from error


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)

    import visdet_mmext  # noqa: F401  (loads every optimizer provider through entry points)
    import visdet_mmext.demo  # noqa: F401  (the embedded demo dataset, models and metric)
    from visdet_mmext.configs import find_config
    from visdet_mmext.errors import OptimizerConfigError, VisdetError
    from visdet_mmext.tools.run_checks import check_run_cfg
    from visdet_mmext.optim import check_optim_wrapper_cfg

    if os.environ.get("RANK", "0") == "0":
        print(f"visdet-mmext: {visdet_mmext.REPORT.summary()}", flush=True)
    if args.amp and not _has_accelerator():
        print("--amp needs a GPU (mmengine's AmpOptimWrapper asserts one); this torch sees none. "
              "Train without --amp on CPU.", file=sys.stderr)
        return 2
    try:
        args.config = find_config(args.config)
        cfg = merge_args(load_config(args.config), args)
        if cfg.get("optim_wrapper") is None:
            raise OptimizerConfigError(f"{args.config} has no optim_wrapper, which training needs, "
                                       "e.g. optim_wrapper = dict(optimizer=dict(type='AdamW', "
                                       "lr=1e-3)).")
        check_optim_wrapper_cfg(cfg.optim_wrapper, scope=cfg.get("default_scope"))
        check_run_cfg(cfg)
        setup_cpu_distributed(cfg)
        runner = build_runner(cfg)
        runner.train()
    except VisdetError as error:
        print(f"\n{args.config}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 2
    if runner.rank == 0:
        print(report(runner), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
