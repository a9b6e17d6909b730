"""The demo at 4 gloo processes through tools/train.py --launcher pytorch: each 1-bit optimizer
against its baseline (Adam; LAMB for OnebitLamb), and the bytes per step after the warm-up.

The full demo (4 shapes, 600 iterations, 64 images per process) takes about 10 minutes here, so
the suite runs it shortened: the two most distinct shapes, a narrower net (16/32/64), 3000 images,
32 per process, and every length of the configs halved (300 iterations, warm-up, freeze steps
and local-step schedule), about 1.5 minutes on 2 idle cores. At 98% these runs are not yet
saturated, so they are held to 2 points; the full demo meets 1 point (docs/onebit.md).
"""
import json

import pytest

from onebit_launch import torchrun

PAIRS = {"onebit_adam": "adam", "zero_one_adam": "adam", "onebit_lamb": "lamb"}
SHAPES = "[circle,cross]"
SHORT = ["model.widths=[16,32,64]", "model.num_classes=2",
         f"train_dataloader.dataset.classes={SHAPES}", f"val_dataloader.dataset.classes={SHAPES}",
         "train_dataloader.dataset.num_train=3000", "val_dataloader.dataset.num_train=3000"]
FREEZE = 50  # the configs' 100 steps, halved


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("onebit_demo")
    configs = [f"optimizers/{name}.py" for name in ("adam", "onebit_adam", "zero_one_adam",
                                                     "lamb", "onebit_lamb")]
    torchrun("demo_job.py", 4, out, 0.5, 32, *configs, "--cfg-options", *SHORT)
    results = json.loads((out / "results.json").read_text())
    return {config.split("/")[1][:-3]: result for config, result in results.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", PAIRS)
def test_trains_like_its_baseline_on_four_processes(demo, name):
    ours, baseline = demo[name]["accuracy"], demo[PAIRS[name]]["accuracy"]
    assert baseline >= 95, demo  # the shortened demo does train
    assert ours >= baseline - 2.0, (name, ours, baseline)
    assert demo[name]["optimizer"]["type"] == {"onebit_adam": "OnebitAdam",
                                               "zero_one_adam": "ZeroOneAdam",
                                               "onebit_lamb": "OnebitLamb"}[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", PAIRS)
def test_bytes_per_step_after_warmup_on_four_processes(demo, name):
    ddp = max(demo[PAIRS[name]]["sent_per_iter"])
    compressed = demo[name]["sent_per_iter"][FREEZE:]
    assert 0 < max(compressed) <= ddp / 16, (max(compressed), ddp)
