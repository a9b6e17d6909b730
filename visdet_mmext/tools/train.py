"""Train with an mmengine config, with every visdet-mmext optimizer available.

    visdet-mmext train CONFIG [--work-dir DIR] [--resume [PATH]] [--amp] [--auto-scale-lr]
                              [--no-validate] [--no-pin-memory] [--no-persistent-workers]
                              [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
                              [--take-over-work-dir]

CONFIG is a config file, or a packaged config by name (``demo_muon``; ``visdet-mmext configs``
lists them). The flags are those of mmdet's and mmpretrain's ``tools/train.py``. The plugin's
optimizer providers are loaded through their entry points (a config needs no ``custom_imports``
for them), modules a config does name in ``custom_imports`` are found in the current directory
too (after the installed ones: a ``getopt.py`` there never replaces the standard library's), the
optimizer config is checked before the runner is built (a typo or a missing package fails in a
second with the fix), one run at a time trains into a work dir (``runtime.work_dir_lock``),
checkpoints load weights-only (safe resume on torch >= 2.6), and distributed runs work on a
CPU-only torch (gloo). ``runner_type`` in the config selects another runner (``FlexibleRunner``
for DeepSpeed). The checkout's ``tools/train.py`` runs this.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
import shutil
import sys

LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
#: The variables each launcher's scheduler sets for every process (rank, world size).
LAUNCHER_ENV = {"pytorch": ("RANK", "WORLD_SIZE"), "slurm": ("SLURM_PROCID", "SLURM_NTASKS"),
                "mpi": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")}
LAUNCHER_START = {"pytorch": "torchrun --nproc_per_node N -m visdet_mmext train ...",
                  "slurm": "srun -n N visdet-mmext train ...",
                  "mpi": "mpirun -n N visdet-mmext train ..."}
TAKE_OVER = "--take-over-work-dir"


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
    parser.add_argument(TAKE_OVER, action="store_true",
                        help="train even though the work dir's lock says another run is using it "
                             "(for a run known to have ended, e.g. on another host)")
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
    if args.resume == "auto":  # the checkpoint is chosen once the work dir is locked
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        from visdet_mmext.checkpoint.resume import saves_directories
        check_resume_path(args.resume, saves_directories(cfg))
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def check_resume_path(path: str, directories: bool) -> None:
    """``--resume PATH``: refuse before training what cannot be resumed, saying why (a damaged
    or unsafe file with the loader's own error)."""
    from visdet_mmext.checkpoint.resume import kind_problem, load_resumable, training_state_problem
    from visdet_mmext.errors import CheckpointError, CorruptCheckpointError
    advice = ("Nothing was loaded; pass another checkpoint, or --resume without a path to take "
              "the newest usable one in the work dir.")
    problem = kind_problem(path, directories=directories)
    if problem:
        raise CheckpointError(f"--resume {path}: {problem}. {advice}")
    problem = checkpoint_problem(path)
    if problem:
        raise CorruptCheckpointError(f"--resume {path}: {problem}. {advice}")
    checkpoint, weights = load_resumable(path, directories=directories)
    problem = training_state_problem(checkpoint, path, weights)
    if problem:
        raise CheckpointError(f"--resume {path}: {problem}. Nothing was loaded.")


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


def choose_resume_checkpoint(cfg, config: str) -> None:
    """``--resume`` without a path: the newest usable checkpoint, saying what was skipped; none
    there yet: train from the start."""
    from visdet_mmext.checkpoint.resume import find_resume_checkpoint, saves_directories
    from visdet_mmext.errors import CheckpointError
    work_dir = cfg.work_dir
    found = find_resume_checkpoint(work_dir, directories=saves_directories(cfg))
    for line in found.skipped:
        print(f"Skipped {line}", file=sys.stderr, flush=True)
    if found.chosen is None and found.rejected:
        raise CheckpointError(
            f"--resume: no usable checkpoint in {work_dir}: {found.rejected} found, none "
            f"usable (listed above). Nothing was loaded and nothing there was changed. Start "
            f"over in another work dir (visdet-mmext train {config} --work-dir "
            f"{osp.normpath(work_dir)}_restart), or pass --resume PATH with a checkpoint from "
            "elsewhere.")
    cfg.load_from = found.chosen
    cfg.resume = found.chosen is not None  # else mmengine would look for one itself
    if found.chosen is None:
        print(f"--resume: no checkpoint in {work_dir} yet; training from the start.", flush=True)
    elif osp.dirname(osp.abspath(found.chosen)) == osp.abspath(work_dir):
        print(f"Resuming from {found.chosen} (the newest usable checkpoint in the work dir)",
              flush=True)
    else:
        print(f"Resuming from {found.chosen} (named by {osp.join(work_dir, 'last_checkpoint')})",
              flush=True)


def checkpoint_problem(path: str) -> str | None:
    """Why a checkpoint (a file, or a DeepSpeed checkpoint directory) is damaged, or None."""
    from visdet_mmext.checkpoint import integrity
    if osp.isdir(path):
        return integrity.directory_problem(path)
    return integrity.problem(path)


def check_launcher_env(launcher: str) -> None:
    """The variables a launcher's processes read are set (else mmengine fails with KeyError)."""
    from visdet_mmext.errors import CommandLineError
    missing = [key for key in LAUNCHER_ENV.get(launcher, ()) if key not in os.environ]
    if launcher == "slurm" and "MASTER_ADDR" not in os.environ:
        if "SLURM_NODELIST" not in os.environ:
            missing.append("SLURM_NODELIST")
        elif shutil.which("scontrol") is None:
            missing.append("MASTER_ADDR (no scontrol here to read it from SLURM_NODELIST)")
    if missing:
        raise CommandLineError(
            f"--launcher {launcher} needs {', '.join(missing)}, which its scheduler sets for "
            f"every process: start the run with it ({LAUNCHER_START[launcher]} --launcher "
            f"{launcher}), or leave --launcher out to train in one process.")


def launcher_rank(launcher: str) -> int:
    """This process's rank, from the variables ``check_launcher_env`` checked."""
    variable = LAUNCHER_ENV.get(launcher, ("RANK",))[0]
    return int(os.environ.get(variable, "0"))


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
            os.environ["MASTER_ADDR"] = nodes[0]  # check_launcher_env found scontrol
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


@contextlib.contextmanager
def work_dir_lock(cfg, args):
    """Rank 0 holds the work dir's lock for the run (the other ranks are its own processes)."""
    if launcher_rank(args.launcher) != 0:
        yield
        return
    from visdet_mmext.runtime.work_dir_lock import WorkDirLock
    with WorkDirLock(cfg.work_dir, take_over=args.take_over_work_dir) as lock:
        for note in lock.notes:
            print(note, file=sys.stderr, flush=True)
        yield


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


def installed_first() -> None:
    """The current directory serves ``custom_imports``, after the installed modules: Python
    puts it first under ``python -m``, where a ``getopt.py`` or ``matplotlib.py`` in the training
    folder would replace the real module for every import that follows."""
    cwd = os.path.realpath(os.getcwd())
    sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != cwd]
    sys.path.append(cwd)


def warn_shadowed_imports(cfg) -> None:
    """A ``custom_imports`` module of the current directory that an installed one outranks."""
    cwd = os.path.realpath(os.getcwd())
    for name in (cfg.get("custom_imports") or {}).get("imports") or []:
        top = str(name).partition(".")[0]
        module = sys.modules.get(top)
        origin = getattr(module, "__file__", None) or ""
        local = [osp.join(cwd, f"{top}.py"), osp.join(cwd, top, "__init__.py")]
        if any(osp.isfile(path) for path in local) and origin and \
                not os.path.realpath(origin).startswith(cwd + os.sep):
            print(f"custom_imports {name!r}: the module of that name in the current directory "
                  f"was not imported, because an installed one comes first ({origin}); rename "
                  "yours to import it.", file=sys.stderr, flush=True)


def _base_files(path: str) -> list:
    """The ``_base_`` entries a Python config lists literally ([] otherwise: mmengine then reads
    the file itself and reports what is wrong with it, with its line)."""
    import ast
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except SyntaxError:
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_"
                                                for t in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return []
            return bases if isinstance(bases, list) else [bases]
    return []


def _base_cycle(path: str, trail: tuple = ()) -> list[str] | None:
    """The files of a ``_base_`` cycle reachable from ``path``, or None. Read before mmengine
    reads the config: mmengine recurses through a cycle until Python's recursion limit, parsing
    the files a thousand times over (seconds to minutes), then raises a bare RecursionError."""
    real = os.path.realpath(path)
    if real in trail:
        return [*trail[trail.index(real):], real]
    if not osp.isfile(real) or osp.splitext(real)[1] != ".py":
        return None
    for base in _base_files(real):
        if isinstance(base, str) and "::" not in base:  # another package's configs: no cycle back
            cycle = _base_cycle(osp.join(osp.dirname(real), base), (*trail, real))
            if cycle:
                return cycle
    return None


def load_config(path: str):
    """``Config.fromfile``, with ``custom_imports`` found in the current directory too (as under
    ``python -m``; a console script's own folder is all Python puts on the path)."""
    from mmengine.config import Config
    from visdet_mmext.errors import ConfigFileError, ConfigImportError

    installed_first()
    try:
        cycle = _base_cycle(path)
        if cycle:
            raise ConfigFileError(
                f"{path}: its _base_ files include each other in a cycle: "
                f"{' -> '.join(map(osp.basename, cycle))} ({osp.dirname(cycle[0])}). Remove one of "
                "these _base_ entries.")
        cfg = Config.fromfile(path)
    except ImportError as error:
        raise ConfigImportError(
            f"custom_imports: {type(error).__name__}: {error}. Modules are imported from the "
            "current directory and PYTHONPATH: run from the folder that holds the module (or "
            "its package), or add that folder to PYTHONPATH.") from error
    except SyntaxError as error:
        where = error.filename if error.filename not in (None, "<unknown>") else path
        raise ConfigFileError(f"{where}, line {error.lineno}: {error.msg}: "
                              f"{(error.text or '').strip()!r}") from error
    except RecursionError:
        raise ConfigFileError(f"{path}: its _base_ files nest too deep to read.") from None
    except (TypeError, KeyError, NameError, AttributeError) as error:
        # mmengine's merge of a child with its _base_ (e.g. a dict over a list: its message
        # says to add _delete_=True), or a name the file uses before defining it
        raise ConfigFileError(f"{path}: {type(error).__name__}: {error}") from error
    warn_shadowed_imports(cfg)
    return cfg


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)

    import visdet_mmext  # noqa: F401  (loads every optimizer provider through entry points)
    import visdet_mmext.demo  # noqa: F401  (the embedded demo dataset, models and metric)
    from visdet_mmext.configs import find_config
    from visdet_mmext.echo import clip
    from visdet_mmext.errors import OptimizerConfigError, VisdetError
    from visdet_mmext.tools.run_checks import check_run_cfg
    from visdet_mmext.optim import check_optim_wrapper_cfg
    from visdet_mmext.runtime.process_group import ended_together

    if os.environ.get("RANK", "0") == "0":
        print(f"visdet-mmext: {visdet_mmext.REPORT.summary()}", flush=True)
    if args.amp and not _has_accelerator():
        print("--amp needs a GPU (mmengine's AmpOptimWrapper asserts one); this torch sees none. "
              "Train without --amp on CPU.", file=sys.stderr)
        return 2
    try:
        check_launcher_env(args.launcher)
        args.config = find_config(args.config)
        cfg = merge_args(load_config(args.config), args)
        if cfg.get("optim_wrapper") is None:
            raise OptimizerConfigError(f"{args.config} has no optim_wrapper, which training needs, "
                                       "e.g. optim_wrapper = dict(optimizer=dict(type='AdamW', "
                                       "lr=1e-3)).")
        check_optim_wrapper_cfg(cfg.optim_wrapper, scope=cfg.get("default_scope"))
        check_run_cfg(cfg)
        with work_dir_lock(cfg, args), ended_together():
            if cfg.get("resume") and cfg.get("load_from") is None:  # --resume, or the config's
                choose_resume_checkpoint(cfg, args.config)
            setup_cpu_distributed(cfg)
            runner = build_runner(cfg)
            runner.train()
    except VisdetError as error:
        print(clip(f"\n{args.config}: {type(error).__name__}: {error}"), file=sys.stderr,
              flush=True)
        return 2
    if runner.rank == 0:
        print(report(runner), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
