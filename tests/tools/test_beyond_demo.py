"""The demo with the optimizers that need more than a step (shortened, faithful runs).

- Schedule-free AdamW with a warm-up against AdamW with warm-up and cosine: the demo's model and
  data, both schedules rescaled to 200 iterations by the compare tool; schedule-free validates
  its averaged weights (ScheduleFreeHook) and must be within 1 point. SophiaG from its config
  in the same run (its Hessian refresh reads DemoConvNet's logits): well above chance. (Full length, 600 iterations:
  docs/schedule_free.md, docs/sophia.md.)
- SophiaG through `visdet-mmext train` from its config (small model and data, 60 iterations): the
  loss falls and the Hessian refresh ran. (Full length: docs/sophia.md.)
"""
import glob
import json
import os

import pytest

from demo_utils import CONFIGS, cli_options, state_of
from visdet_mmext.tools import compare
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_schedule_free_matches_adamw_and_sophia_g_converges(tmp_path):
    names = ["AdamW", "AdamWScheduleFree", "SophiaG"]
    assert compare.main([*names, "--iters", "200", "--val-interval", "200", "--no-progress",
                         "--out-dir", str(tmp_path)]) == 0
    accuracy = {r["label"]: r["final_accuracy"]
                for r in json.loads((tmp_path / "results.json").read_text())}
    assert accuracy["AdamW"] > 60, accuracy  # chance: 25
    assert accuracy["AdamWScheduleFree"] >= accuracy["AdamW"] - 1.0, accuracy
    assert accuracy["SophiaG"] > 50, accuracy


def _losses(work_dir) -> list[float]:
    (scalars,) = glob.glob(os.path.join(str(work_dir), "*", "vis_data", "scalars.json"))
    with open(scalars) as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


def test_sophia_g_trains_the_demo_from_its_config(tmp_path):
    config = os.path.join(CONFIGS, "optimizers", "sophia_g.py")
    options = cli_options(iters=60, num_train=2048, num_val=64, batch_size=32)
    assert train_tool.main([config, "--work-dir", str(tmp_path), "--cfg-options", *options,
                            "model.widths=[8,16,32]", "param_scheduler.0.end=5",
                            "param_scheduler.1.begin=5", "param_scheduler.1.end=60"]) == 0
    losses = _losses(tmp_path)
    assert len(losses) == 60
    assert sum(losses[-10:]) < 0.97 * sum(losses[:10]), losses  # this small net learns late
    state = state_of(str(tmp_path / "iter_60.pth"))["optimizer"]
    assert state["param_groups"][0]["hessian_step"] == 50  # refreshed before steps 1, 11, ..., 51
