"""Train one DeepSpeed config, then attack its checkpoint through mmengine's real resume path.

    python tests/jobs/deepspeed_checkpoint_attacks.py CONFIG WORK_DIR RESULT_JSON [KEY=VALUE ...]

One process (one DeepSpeed engine): train the toy model one epoch with the FlexibleRunner, then
for every state file of the saved checkpoint directory make (a) a copy of the directory where
that file holds a pickle payload that would create a marker file, (b) a copy where one byte of
that file is flipped, and call ``runner.strategy.resume`` (mmengine's DeepSpeedStrategy.resume ->
DeepSpeed's engine.load_checkpoint) on each; finally resume the untouched checkpoint. Writes what
each attempt raised, and whether any marker exists, as JSON.
"""
import ast
import json
import os
import os.path as osp
import shutil
import sys

HERE = osp.dirname(osp.abspath(__file__))
sys.path[:0] = [osp.join(osp.dirname(HERE), "helpers"), osp.dirname(osp.dirname(HERE))]


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


from damage import flip_byte  # noqa: E402


def poison(path, marker):
    """Add a payload to one DeepSpeed state file (loaded as data, saved back)."""
    import torch
    from visdet_mmext.checkpoint.safe_load import allowlist
    with allowlist(deepspeed=True):
        state = torch.load(path, weights_only=True)
    state["visdet_attack"] = Payload(marker)
    torch.save(state, path)


def attempt(runner, checkpoint):
    try:
        runner.strategy.resume(checkpoint)
    except Exception as error:  # the result records which error, the test asserts on it
        return f"{type(error).__name__}: {error}"
    return "loaded"


def main():
    config, work_dir, result_path, *options = sys.argv[1:]
    import mmengine.runner  # noqa: F401  (registers FlexibleRunner)
    from mmengine.config import Config
    from mmengine.registry import RUNNERS

    import toy  # noqa: F401  (DSToyNet, DSToyDataset)
    import visdet_mmext  # noqa: F401
    cfg = Config.fromfile(config)
    cfg.model = dict(type="DSToyNet")
    cfg.train_dataloader.dataset = dict(type="DSToyDataset", size=32, seed=0)
    cfg.train_dataloader.batch_size = 8
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.merge_from_dict({key: ast.literal_eval(value)
                         for key, value in (option.split("=", 1) for option in options)})
    cfg.work_dir = work_dir
    runner = RUNNERS.build(cfg)
    runner.train()

    clean = osp.join(work_dir, "epoch_1.pth")
    files = sorted(name for name in os.listdir(clean) if name.endswith(".pt"))
    markers, results = [], {}
    for name in files:
        for kind in ("payload", "flipped"):
            copy = osp.join(work_dir, "attacks", f"{kind}_{name}", "epoch_1.pth")
            shutil.copytree(clean, copy)
            if kind == "payload":
                marker = osp.join(work_dir, f"pwned_{name}")
                markers.append(marker)
                poison(osp.join(copy, name), marker)
            else:
                flip_byte(osp.join(copy, name))
            results[f"{kind} {name}"] = attempt(runner, copy)
    results["clean"] = attempt(runner, clean)
    with open(result_path, "w") as f:
        json.dump(dict(files=files, results=results,
                       markers=[m for m in markers if osp.exists(m)]), f)


if __name__ == "__main__":
    main()
