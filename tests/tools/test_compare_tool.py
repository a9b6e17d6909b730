"""visdet-mmext compare: runs several optimizers, writes a PNG, a table and the numbers."""
import json
import os

import pytest
import torch

from demo_utils import CONFIGS
from visdet_mmext.tools import compare

pytestmark = pytest.mark.usefixtures("one_thread")


def test_state_bytes_counts_each_tensor_once():
    params = [torch.nn.Parameter(torch.zeros(10, 10))]
    for optimizer, expected in ((torch.optim.SGD(params, lr=0.1, momentum=0.9), 400),
                                (torch.optim.AdamW(params, lr=0.1), 800 + 4)):  # + step (fp32)
        params[0].grad = torch.ones(10, 10)
        optimizer.step()
        assert compare.state_bytes(optimizer) == expected


@pytest.mark.slow
def test_compares_names_and_configs(tmp_path, capsys):
    out = tmp_path / "out"
    code = compare.main(["AdamW", os.path.join(CONFIGS, "optimizers", "sgd.py"),
                         "Rprop", "NoSuchOptimizer", "--iters", "6", "--val-interval", "3",
                         "--num-train", "256", "--batch-size", "16", "--model", "convnet",
                         "--out-dir", str(out)])
    assert code == 1  # one item could not run
    png = (out / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    table = (out / "compare.md").read_text()
    for label in ("| AdamW |", "| SGD |", "| Rprop |", "| NoSuchOptimizer | not run: Unknown"):
        assert label in table
    results = {r["label"]: r for r in json.loads((out / "results.json").read_text())}
    adamw, sgd = results["AdamW"], results["SGD"]
    assert len(adamw["loss"]) == 6 and [it for it, _ in adamw["val"]] == [3, 6]
    assert adamw["bytes_per_param"] > sgd["bytes_per_param"] > 0  # 2 moments vs 1 momentum
    assert adamw["step_ms"] > 0 and adamw["settings"]["lr"] == 5e-3  # the config's settings
    assert results["Rprop"]["settings"] == {"lr": 0.01}  # catalog example, no config for it
    captured = capsys.readouterr()
    assert "compare.png" in captured.out and "18/18" in captured.err  # progress: 3 runs x 6

    # redraw a subset from results.json, without training
    assert compare.main(["--replot", str(out / "results.json"), "SGD", "AdamW",
                         "--out-dir", str(tmp_path / "again"), "--name", "pair"]) == 0
    pair = (tmp_path / "again" / "pair.md").read_text()
    assert pair.index("| SGD |") < pair.index("| AdamW |") and "Rprop" not in pair
    assert (tmp_path / "again" / "pair.png").read_bytes().startswith(b"\x89PNG")


def test_schedule_is_rescaled_to_the_run_length(tmp_path):
    args = compare.parse_args(["--iters", "60"])
    _, cfg = compare.resolve_item("AdamW", compare.known_configs())
    cfg = compare.fit_to(cfg, args, str(tmp_path))
    warmup, cosine = cfg.param_scheduler
    assert (warmup["begin"], warmup["end"]) == (0, 5)
    assert (cosine["begin"], cosine["end"]) == (5, 60)
    assert cfg.train_cfg.max_iters == 60 and cfg.default_hooks.checkpoint is None


def test_list(capsys):
    assert compare.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "Muon" in listing and "configs/optimizers/muon.py" in listing
    for name, config in (("AdamWScheduleFree", "adamw_schedule_free"), ("Prodigy", "prodigy"),
                         ("SophiaG", "sophia_g"), ("SophiaH", "sophia_h"), ("ADOPT", "adopt"),
                         ("Adan", "adan"), ("SOAP", "soap")):
        assert f"configs/optimizers/{config}.py" in listing.split(name, 1)[1].splitlines()[0]


def test_progress_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    progress = compare.make_progress(4)
    progress.set_description("AdamW")
    for _ in range(4):
        progress.update(1)
    assert "[4/4] AdamW" in capsys.readouterr().err


def test_compilation_is_excluded_from_step_times():
    with compare.CompileWatch() as watch:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))  # a new function: dynamo compiles it
    assert watch.started >= 1
    torch.compile(lambda x: x * 3)(torch.ones(3))
    assert watch.started == 1  # counted only while watching
    steady, excluded_s = compare.steady_step_times([900.0, 5.0, 700.0, 6.0, 5.5],
                                                   [True, False, True, False, False])
    assert steady == [5.0, 6.0, 5.5] and excluded_s == pytest.approx(1.6)
    # the first step allocates the state: excluded even without a compilation
    assert compare.steady_step_times([40.0, 5.0], [False, False]) == ([5.0], 0.04)
