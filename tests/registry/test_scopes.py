"""A downstream scope that registers its own class under a catalog name (as mmpretrain does with
LARS, Lamb and Adan): the build says which class it got and how to pick either; ``list --scope``
shows the resolution. The scope is a real child mmengine Registry in a package made here.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import visdet_mmext  # noqa: F401  (the catalog, the constructors, the fixes)
from runner_utils import make_runner
from subprocess_utils import REPO

REGISTRY = """
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS, Registry
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope='downstream_scope',
                      locations=['downstream_scope.optimizers'])
"""
OPTIMIZERS = """
import torch
from downstream_scope.registry import OPTIMIZERS


@OPTIMIZERS.register_module()
class LARS(torch.optim.SGD):
    pass


@OPTIMIZERS.register_module()
class Lamb(torch.optim.AdamW):  # not a catalog name: the scope's to define, nothing to say
    pass
"""


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("scope")
    package = root / "downstream_scope"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "registry.py").write_text(textwrap.dedent(REGISTRY))
    (package / "optimizers.py").write_text(textwrap.dedent(OPTIMIZERS))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


def _built(tmp_path, optimizer_type, **settings):
    settings = settings or dict(momentum=0.9)  # bitsandbytes' LARS needs momentum
    runner = make_runner(tmp_path, dict(optimizer=dict(type=optimizer_type, lr=0.01, **settings)),
                         max_iters=1, default_scope="downstream_scope")
    runner.train()
    log = next(tmp_path.glob("*/*.log")).read_text()
    return type(runner.optim_wrapper.optimizer), log


def test_a_shadowed_catalog_name_is_reported_with_both_spellings(downstream, tmp_path):
    cls, log = _built(tmp_path / "plain", "LARS")
    assert cls.__module__ == "downstream_scope.optimizers"
    assert ("type='LARS' builds downstream_scope.optimizers.LARS (registered by downstream_scope),"
            " not the catalog's bitsandbytes.optim") in log
    assert "type='mmengine.LARS'" in log and "type='downstream_scope.LARS'" in log

    cls, log = _built(tmp_path / "catalog", "mmengine.LARS")
    assert cls.__module__.startswith("bitsandbytes.") and "builds" not in log
    cls, log = _built(tmp_path / "theirs", "downstream_scope.LARS")
    assert cls.__module__ == "downstream_scope.optimizers" and "builds" not in log
    cls, log = _built(tmp_path / "lamb", "Lamb", weight_decay=0.01)
    assert cls.__module__ == "downstream_scope.optimizers" and "builds" not in log


@pytest.mark.slow
def test_list_scope_shows_the_resolution(downstream):
    result = subprocess.run([sys.executable, "-m", "visdet_mmext", "list", "LARS", "Lion",
                             "--scope", "downstream_scope", "--json"], capture_output=True,
                            text=True, cwd=REPO, timeout=600,
                            env={**os.environ, "PYTHONPATH": f"{REPO}:{downstream}"})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["optimizers"]}
    assert rows["LARS"]["status"] == "downstream_scope's class"
    assert rows["LARS"]["resolves_to"] == "downstream_scope.optimizers.LARS"
    assert "type='mmengine.LARS'" in rows["LARS"]["reason"]
    assert rows["Lion"]["status"] == "available"  # not shadowed: unchanged
    # the name filter: words match any part of a name, case ignored
    assert {"LARS", "Lion", "LARS8bit", "DAdaptLion"} <= set(rows)
    assert all("lars" in name.lower() or "lion" in name.lower() for name in rows)


@pytest.mark.slow
def test_list_names_an_unknown_scope():
    result = subprocess.run([sys.executable, "-m", "visdet_mmext", "list", "--scope", "nosuchscope"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 2 and "is the package 'nosuchscope' installed?" in result.stderr
