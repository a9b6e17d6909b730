"""Train one mmengine config in this process (one DeepSpeed engine per process), for the tests.

    python tests/jobs/deepspeed_train.py CONFIG --work-dir DIR [--resume PATH] \
        [--launcher none|pytorch] [--cfg-options k=v ...] [--result out.json] [--params out.pt]
    torchrun --nproc_per_node 2 tests/jobs/deepspeed_train.py CONFIG ... --launcher pytorch

It does what ``tools/train.py`` does for these configs (Config.fromfile -> FlexibleRunner via
``runner_type``), then writes, on rank 0: ``--params`` the final fp32 weights (gathered under
ZeRO-3), ``--result`` a JSON summary (losses, iteration times, what the strategy built).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(osp.dirname(HERE), "helpers"))  # the toy model (toy.py)
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))  # the checkout, when not pip-installed


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--resume", default=None, help="checkpoint to resume from ('auto': latest)")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    parser.add_argument("--toy", action="store_true", help="train the tiny toy model and dataset")
    parser.add_argument("--result", default=None)
    parser.add_argument("--params", default=None)
    return parser.parse_args(argv)


class StepTimes:
    """Collects loss and wall time of every train iteration (a hook)."""

    def __new__(cls):
        from mmengine.hooks import Hook

        class _Hook(Hook):
            priority = "VERY_LOW"

            def __init__(self):
                self.losses, self.times, self.cpu_times, self.lrs = [], [], [], []
                self._start = self._cpu_start = None

            def before_train_iter(self, runner, batch_idx, data_batch=None):
                self.lrs.append(runner.optim_wrapper.get_lr()["lr"])
                self._start, self._cpu_start = time.perf_counter(), time.process_time()

            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                self.times.append(time.perf_counter() - self._start)
                self.cpu_times.append(time.process_time() - self._cpu_start)
                self.losses.append(float(outputs["loss"]))

        return _Hook()


def ds_engine(runner):
    """The DeepSpeed engine (MMDeepSpeedEngineWrapper.model), or None without DeepSpeed."""
    engine = getattr(runner.model, "model", None)
    return engine if hasattr(engine, "basic_optimizer") else None


def dist_backend():
    """The process group's backend (gloo on CPU, nccl on CUDA), None without one."""
    import torch.distributed as dist
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def final_params(runner) -> dict:
    """Full fp32 weights on every rank (ZeRO-3 partitions gathered)."""
    import contextlib

    import deepspeed
    engine = ds_engine(runner)
    module = engine.module if engine is not None else getattr(runner.model, "module", runner.model)
    params = list(module.parameters())
    gather = (deepspeed.zero.GatheredParameters(params, modifier_rank=None) if engine is not None
              else contextlib.nullcontext())
    with gather:
        state = {name: p.detach().clone().float().cpu() for name, p in module.named_parameters()}
    state.update({f"buffer:{name}": b.detach().clone().cpu() for name, b in module.named_buffers()})
    return state, module


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.dist import get_rank
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    cfg = Config.fromfile(args.config)  # custom_imports: visdet_mmext, visdet_mmext.demo
    if args.toy:
        import toy  # noqa: F401  (registers DSToyNet / DSToyDataset)
        cfg.model = dict(type="DSToyNet")
        for split in ("train_dataloader", "val_dataloader"):
            if cfg.get(split):
                cfg[split].dataset = dict(type="DSToyDataset", size=64, seed=0 if "train" in split else 1)
        cfg.val_evaluator = None
        cfg.val_dataloader = None
        cfg.val_cfg = None
    cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    cfg.launcher = args.launcher
    if args.resume:
        cfg.resume = True
        cfg.load_from = None if args.resume == "auto" else args.resume
    if cfg.get("val_dataloader") is None:
        cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
        cfg.train_cfg.pop("val_interval", None)

    runner = RUNNERS.build(cfg) if "runner_type" in cfg else None
    if runner is None:
        runner = Runner.from_cfg(cfg)
    times = StepTimes()
    runner.register_hook(times)
    runner.train()

    params, module = final_params(runner)
    if get_rank() == 0:
        strategy = runner.strategy
        plan = getattr(strategy, "optimizer_plan", None)
        engine = ds_engine(runner)
        result = {
            "strategy": f"{type(strategy).__module__}.{type(strategy).__name__}",
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "backend": dist_backend(),
            "device": str(engine.device) if engine else str(next(module.parameters()).device),
            "torch_threads": __import__("torch").get_num_threads(),
            "basic_optimizer": type(engine.basic_optimizer if engine else
                                    runner.optim_wrapper.optimizer).__name__,
            "optimizer": type(runner.optim_wrapper.optimizer).__name__,
            "plan": None if plan is None else plan.summary,
            "config": getattr(strategy, "config", None),
            "losses": times.losses,
            "iter_times": times.times,
            "iter_cpu_times": times.cpu_times,
            "iter_lrs": times.lrs,
            "iter": runner.iter,
            "epoch": runner.epoch,
            "lr": runner.optim_wrapper.get_lr()["lr"],
            "use_muon": {name: bool(getattr(p, "use_muon", False))
                         for name, p in module.named_parameters()},
        }
        if args.params:
            import torch
            torch.save(params, args.params)
        if args.result:
            with open(args.result, "w") as f:
                json.dump(result, f, default=str)


if __name__ == "__main__":
    main()
