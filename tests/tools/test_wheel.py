"""The wheel is a complete distribution: installed into a fresh virtual environment, run from a
directory outside the checkout, ``visdet-mmext train`` trains a packaged config by name and a
user's config whose ``custom_imports`` module sits in the current directory.

The venv is new each run and nothing of the checkout is on its path (PYTHONPATH is cleared). Its
third-party dependencies (torch, mmengine, ...) are installed once per machine into a cache
folder keyed by the Python version, the core dependencies and the constraints, and reach the venv
through a ``.pth`` line; pip then resolves the wheel's requirements against them. The first run
on a machine fills the cache (torch and mmengine's dependencies, 1.3 GB; the folder of an
earlier dependency set is removed then): 3-9 min on 2 busy cores. Later runs take 35-80 s.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile

import pytest

from demo_utils import ROOT, cli_options

pytestmark = pytest.mark.slow

CONSTRAINTS = os.path.join(ROOT, "constraints", "tested.txt")
DEPS_CACHE = os.path.expanduser("~/.cache/visdet-mmext/wheel-test")

USER_MODULE = '''
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn


@MODELS.register_module()
class UserMLP(BaseModel):
    def __init__(self, num_classes=4):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(),
                                 nn.Linear(16, num_classes))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.net(inputs)
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, torch.as_tensor(data_samples)))
        return logits
'''

USER_CONFIG = '''
custom_imports = dict(imports=['user_model'], allow_failed_imports=False)
default_scope = 'mmengine'
model = dict(type='UserMLP')
train_dataloader = dict(
    batch_size=32, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='DemoShapes', split='train', num_train=128, num_val=32))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=3)
optim_wrapper = dict(optimizer=dict(type='Lion', lr=1e-4, weight_decay=0.5))
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3))
log_level = 'WARNING'
'''


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _core_dependencies(wheel: str) -> list[str]:
    """The wheel's own requirements, extras left out (its METADATA's Requires-Dist lines)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def _dependency_folder(wheel: str) -> str:
    """The wheel's dependencies, installed once per machine (see the module docstring)."""
    dependencies = _core_dependencies(wheel)
    key = hashlib.sha256(repr((sys.version_info[:2], dependencies,
                               open(CONSTRAINTS).read())).encode()).hexdigest()[:16]
    folder = os.path.join(DEPS_CACHE, key)
    if not os.path.isdir(folder):
        partial = f"{folder}.partial-{uuid.uuid4().hex[:8]}"
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--target", partial,
              "-c", CONSTRAINTS, *dependencies])
        try:
            os.rename(partial, folder)  # atomic: a concurrent run keeps whichever came first
        except OSError:
            shutil.rmtree(partial)
        for old in os.listdir(DEPS_CACHE):  # folders for earlier dependency sets (1.3 GB each)
            if old != key and ".partial-" not in old:
                shutil.rmtree(os.path.join(DEPS_CACHE, old), ignore_errors=True)
    return folder


def _build_wheel(tmp_path) -> str:
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "visdet_mmext_cli.py"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(os.path.join(ROOT, "visdet_mmext"), source / "visdet_mmext",
                    ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "dist"), str(source)])
    return str(next((tmp_path / "dist").glob("visdet_mmext-*.whl")))


def test_wheel_trains_packaged_and_user_configs_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                env={"PATH": os.environ["PATH"]}).stdout.strip()
    with open(os.path.join(site, "visdet_test_dependencies.pth"), "w") as f:
        f.write(_dependency_folder(wheel) + "\n")
    # pip resolves the wheel's requirements against the venv (dependencies included)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "-c", CONSTRAINTS, wheel])

    user_dir = tmp_path / "user_project"
    user_dir.mkdir()
    (user_dir / "user_model.py").write_text(textwrap.dedent(USER_MODULE))
    (user_dir / "user_config.py").write_text(textwrap.dedent(USER_CONFIG))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = str(venv / "bin" / "visdet-mmext")

    where = _run([str(python), "-c", "import visdet_mmext; print(visdet_mmext.__file__)"],
                 cwd=user_dir, env=env).stdout.strip()
    assert where.startswith(site) and not where.startswith(ROOT), where
    configs = _run([command, "configs"], cwd=user_dir, env=env).stdout  # without the package
    muon = os.path.join(site, "visdet_mmext", "configs", "demo", "demo_muon.py")
    assert ["demo/demo_muon", muon] in [line.split() for line in configs.splitlines()], configs

    packaged = _run([command, "train", "demo_muon", "--work-dir", str(user_dir / "work_demo"),
                     "--cfg-options", *cli_options(iters=2)], cwd=user_dir, env=env)
    assert "Training finished" in packaged.stdout
    assert (user_dir / "work_demo" / "iter_2.pth").is_file()

    user = _run([command, "train", "user_config.py", "--work-dir", str(user_dir / "work_user")],
                cwd=user_dir, env=env)
    assert "Training finished" in user.stdout
    assert (user_dir / "work_user" / "iter_3.pth").is_file()
