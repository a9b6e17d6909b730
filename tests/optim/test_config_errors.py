"""Bad optimizer configs fail when the optim wrapper is built, through mmengine's standard path
(Config.fromfile with custom_imports -> Runner.from_cfg -> train), with a message naming the fix."""

import pytest

from subprocess_utils import run_python

CONFIG = """
custom_imports = dict(imports=['visdet_mmext'], allow_failed_imports=False)
model = dict(type='ToyClassifier')
work_dir = {work_dir!r}
train_dataloader = dict(dataset=dict(type='ToyDataset'), batch_size=32, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        collate_fn=dict(type='default_collate'))
train_cfg = dict(by_epoch=False, max_iters=5)
optim_wrapper = dict(optimizer={optimizer})
default_scope = 'mmengine'
"""

SCRIPT = """
import sys
sys.path.insert(0, 'tests/helpers')
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner
from toy import ToyClassifier
from runner_utils import DictDataset
from toy import toy_data
MODELS.register_module(module=ToyClassifier)
DATASETS.register_module(name='ToyDataset', module=lambda: DictDataset(toy_data()))
assert 'visdet_mmext' not in sys.modules
cfg = Config.fromfile({path!r})  # custom_imports loads the plugin here
assert 'visdet_mmext' in sys.modules
runner = Runner.from_cfg(cfg)
try:
    runner.train()
except Exception as error:
    print('ITER', runner.iter)
    print(type(error).__name__, error)
    sys.exit(3)
"""


def _train(tmp_path, optimizer: str, hide=()):
    path = tmp_path / "config.py"
    path.write_text(CONFIG.format(work_dir=str(tmp_path / "work"), optimizer=optimizer))
    result = run_python(SCRIPT.format(path=str(path)), hide=hide, check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "ITER 0" in result.stdout  # failed before the first iteration
    return result.stdout


@pytest.mark.slow
def test_misspelled_optimizer_names_the_closest(tmp_path):
    out = _train(tmp_path, "dict(type='AdamW8bitt', lr=1e-3)")
    assert "OptimizerConfigError Unknown optimizer 'AdamW8bitt'" in out
    assert "AdamW8bit" in out.split("Closest available names:")[1]


@pytest.mark.slow
def test_uninstalled_optimizer_names_the_extra(tmp_path):
    out = _train(tmp_path, "dict(type='AdamW8bit', lr=1e-3)", hide=("bitsandbytes",))
    assert "'AdamW8bit' is not available here: missing package" in out
    assert "visdet-mmext[bnb]" in out


@pytest.mark.parametrize("optimizer, message", [
    ("dict(type='AdamW', lr=-1e-3)", "lr=-0.001 is out of range"),
    ("dict(type='Lion', lr=1e-4, betas=(0.9, 1.5))", "betas=(0.9, 1.5): entry 1.5 is out of range"),
    ("dict(type='SGD', lr=0.1, momentom=0.9)", "SGD has no setting 'momentom'. Did you mean momentum"),
])
@pytest.mark.slow
def test_invalid_hyperparameters(tmp_path, optimizer, message):
    assert message in _train(tmp_path, optimizer)
