"""The demo configs trained by tools/train.py (--launcher pytorch), one after the other, over a
byte-counting gloo group: final accuracy and bytes sent per iteration, in OUT_DIR/results.json.

    torchrun --nproc_per_node N demo_job.py OUT_DIR SCALE BATCH CONFIG... [--cfg-options K=V ...]

SCALE multiplies every length of a config (iterations, lr warm-up, freeze steps, local-step
schedule); BATCH is the batch per process; the options apply to every config.
"""
import json
import os
import sys

import torch.distributed as dist

from demo_utils import CONFIGS
from train_runs import derived_config, train
from visdet_mmext.algorithms.onebit.traffic import register_counting_backend

STEP_KEYS = ("freeze_step", "var_freeze_step", "local_step_scaler")


def scaled_lines(config: str, scale: float) -> str:
    """Config lines multiplying every length of ``config`` by ``scale``."""
    from mmengine.config import Config

    cfg = Config.fromfile(os.path.join(CONFIGS, config))
    iters = round(cfg.train_cfg.max_iters * scale)
    warmup = round(cfg.param_scheduler[0]["end"] * scale)
    optimizer = {key: max(1, round(cfg.optim_wrapper.optimizer[key] * scale))
                 for key in STEP_KEYS if key in cfg.optim_wrapper.optimizer}
    return (f"train_cfg = dict(max_iters={iters}, val_interval={iters})\n"
            f"param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, "
            f"begin=0, end={warmup}), dict(type='CosineAnnealingLR', eta_min_ratio=0.01, "
            f"by_epoch=False, begin={warmup}, end={iters})]\n"
            f"optim_wrapper = dict(optimizer={optimizer!r})\n")


def main(out_dir: str, scale: str, batch: str, *rest: str) -> None:
    dist.init_process_group(register_counting_backend())
    scale = float(scale)
    configs = rest[:rest.index("--cfg-options")] if "--cfg-options" in rest else rest
    options = ["default_hooks.checkpoint.interval=100000", "log_level=WARNING",
               f"train_dataloader.batch_size={int(batch)}", *rest[len(configs) + 1:]]
    results = {}
    for config in configs:
        config_file = derived_config(config, out_dir, dist.get_rank(), scaled_lines(config, scale))
        work_dir = os.path.join(out_dir, os.path.splitext(os.path.basename(config))[0])
        code, runner, sent = train(config_file, work_dir, *options)
        assert code == 0, config
        accuracy = float(runner.message_hub.get_scalar("val/accuracy").current())
        results[config] = dict(accuracy=accuracy, sent_per_iter=sent,
                               optimizer=dict(runner.cfg.optim_wrapper.optimizer))
    if dist.get_rank() == 0:
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
