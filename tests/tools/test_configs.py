"""Every shipped config builds; each one whose optimizer is available trains a few iterations,
saves a checkpoint and loads it back weights-only."""
import ast
import glob
import os

import pytest

import visdet_mmext
import visdet_mmext.demo  # noqa: F401
from demo_utils import CONFIGS, tiny_cfg
from visdet_mmext.errors import OptimizerConfigError
from visdet_mmext.optim import check_optim_wrapper_cfg

CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIGS, "optimizers", "*.py")) +
                      glob.glob(os.path.join(CONFIGS, "demo", "*.py")))
ALL_CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIGS, "_base_", "**", "*.py"), recursive=True)
                          + CONFIG_FILES)
#: documented optimizer families that must each have a config under configs/optimizers
FAMILIES = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Lion", "RAdam", "NAdam",
            "Muon", "DAdaptAdam", "DAdaptSGD", "DAdaptAdaGrad", "Adafactor", "TorchAdafactor",
            "AdamW8bit", "LAMB", "LBFGS", "DeepSpeedCPUAdam", "AdamWScheduleFree",
            "SGDScheduleFree", "RAdamScheduleFree", "Prodigy", "SophiaG", "SophiaH", "ADOPT", "Adan",
            "SOAP")
#: schedule-free: a warm-up at most (their average of the iterates replaces the decay)
SCHEDULE_FREE = {"AdamWScheduleFree": ["LinearLR"], "SGDScheduleFree": ["LinearLR"],
                 "RAdamScheduleFree": []}
#: need a DeepSpeed op built on first use (JIT, minutes): marked like the other DeepSpeed tests
DEEPSPEED = ("FusedAdam", "DeepSpeedCPUAdam", "DeepSpeedCPUAdagrad", "DeepSpeedCPULion")


def _name(path):
    return os.path.relpath(path, CONFIGS)


def _optimizer_of(path):
    from mmengine.config import Config
    return Config.fromfile(path).optim_wrapper.optimizer


def _params():
    params = []
    for path in CONFIG_FILES:
        marks = [pytest.mark.deepspeed] if _optimizer_of(path)["type"] in DEEPSPEED else []
        params.append(pytest.param(path, id=_name(path), marks=marks))
    return params

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("path", ALL_CONFIG_FILES, ids=_name)
def test_config_has_no_imports(path):
    """mmengine 0.10.7 on Python >= 3.11 misparses configs that import os/io/abc."""
    tree = ast.parse(open(path).read())
    assert not [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_every_documented_family_has_a_config():
    types = {_optimizer_of(path)["type"] for path in CONFIG_FILES}
    assert not set(FAMILIES) - types


def test_lion_follows_the_recommended_ratios_to_adamw():
    adamw = _optimizer_of(os.path.join(CONFIGS, "optimizers", "adamw.py"))
    lion = _optimizer_of(os.path.join(CONFIGS, "optimizers", "lion.py"))
    assert 3 <= adamw["lr"] / lion["lr"] <= 10
    assert 3 <= lion["weight_decay"] / adamw["weight_decay"] <= 10


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_name)
def test_schedule_matches_the_optimizer(path):
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    kinds = [s["type"] for s in cfg.get("param_scheduler") or []]
    optimizer = cfg.optim_wrapper.optimizer
    if optimizer.get("lr", 0) is None:
        assert kinds == []  # Adafactor's relative step chooses the step size
    elif optimizer["type"] == "RAdam":
        assert kinds == ["CosineAnnealingLR"]  # the rectification is its warm-up
    elif optimizer["type"] in SCHEDULE_FREE:
        assert kinds == SCHEDULE_FREE[optimizer["type"]]
    else:
        assert kinds == ["LinearLR", "CosineAnnealingLR"]
    for scheduler in cfg.get("param_scheduler") or []:
        assert "eta_min" not in scheduler  # eta_min_ratio keeps per-group lr ratios


@pytest.mark.parametrize("path", _params())
def test_config_builds_and_trains(path, tmp_path):
    from mmengine.runner import Runner
    from mmengine.runner.checkpoint import _load_checkpoint

    cfg = tiny_cfg(path, tmp_path, iters=3, validate=False)
    name = cfg.optim_wrapper.optimizer["type"]
    info = visdet_mmext.REPORT.availability(name)
    if info is None or not info.usable:
        with pytest.raises(OptimizerConfigError, match=name):
            check_optim_wrapper_cfg(cfg.optim_wrapper)
        pytest.skip(f"{name} is not available here: {info.status if info else 'unknown'}")
    check_optim_wrapper_cfg(cfg.optim_wrapper)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 3 and all(map(lambda x: x == x and x < 100, losses)), losses
    checkpoint = _load_checkpoint(str(tmp_path / "iter_3.pth"), map_location="cpu")
    assert checkpoint["meta"]["iter"] == 3 and checkpoint["optimizer"]["state"]
