"""`python -m visdet_mmext list|check|configs` on this machine."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from subprocess_utils import REPO
from visdet_mmext.catalog import CATALOG


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "visdet_mmext", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=900)


@pytest.mark.slow
def test_list_json_has_every_catalog_row_with_a_true_status():
    result = _cli("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["optimizers"]}
    assert set(CATALOG) <= set(rows)
    assert rows["AdamW"]["status"] == "available"
    assert rows["Muon"]["resolves_to"] == "visdet_mmext.algorithms.muon.optimizer.Muon"
    for name in ("OnebitAdam", "OnebitLamb", "ZeroOneAdam"):  # native whatever DeepSpeed has
        assert rows[name]["status"] == "available"
        assert rows[name]["resolves_to"].startswith("visdet_mmext.algorithms.onebit.")
    if not torch.cuda.is_available():
        assert rows["FusedLamb"]["status"] == "needs CUDA"
        assert rows["FusedLion"]["status"] == "needs CUDA"
        # DeepSpeed is really imported and its op looked up: the class, not the lazy builder
        assert rows["DeepSpeedCPUAdam"]["resolves_to"] == "deepspeed.ops.adam.cpu_adam.DeepSpeedCPUAdam"


@pytest.mark.slow
def test_list_table_and_check():
    listing = _cli("list")
    assert listing.returncode == 0 and "AdamW8bit" in listing.stdout
    check = _cli("check", "AdamW", "Lion", "LBFGS", "SparseAdam", "AdamW8bit")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "5/5 optimizers took a real step" in check.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: FusedLamb takes its step")
@pytest.mark.slow
def test_check_reports_a_failure():
    check = _cli("check", "FusedLamb")
    assert check.returncode == 1
    assert "FAILED" in check.stdout and "needs CUDA" in check.stdout


@pytest.mark.slow
def test_check_builds_nothing_and_says_what_first_use_will_build(tmp_path):
    extensions = tmp_path / "extensions"
    check = subprocess.run([sys.executable, "-m", "visdet_mmext", "check", "DeepSpeedCPUAdam",
                            "AdamW"], capture_output=True, text=True, cwd=REPO, timeout=900,
                           env=dict(os.environ, TORCH_EXTENSIONS_DIR=str(extensions)))
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"DeepSpeedCPUAdam \.\.\. not built: DeepSpeed's cpu_adam op builds on first "
                     r"use, ~\d+ (s|min) here \(check --build builds it now\)", check.stdout)
    assert "1/1 optimizers took a real step" in check.stdout
    assert "1 wait for DeepSpeed ops not built yet (cpu_adam: ~" in check.stdout
    assert not (extensions / "cpu_adam").exists()  # nothing was built


def test_configs_answers_without_importing_the_package():
    listed = subprocess.run([sys.executable, "-c", (
        "import sys, visdet_mmext_cli\n"
        "visdet_mmext_cli.main(['configs'])\n"
        "print(sorted(m for m in ('visdet_mmext', 'torch', 'mmengine') if m in sys.modules))")],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "[]"
    assert any(line.startswith("demo/demo_muon ") for line in lines)
