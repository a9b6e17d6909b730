"""`python -m visdet_mmext list|check` on this machine."""
import json
import subprocess
import sys

import pytest
import torch

from subprocess_utils import REPO
from visdet_mmext.catalog import CATALOG


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "visdet_mmext", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=900)


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


def test_list_table_and_check():
    listing = _cli("list")
    assert listing.returncode == 0 and "AdamW8bit" in listing.stdout
    check = _cli("check", "AdamW", "Lion", "LBFGS", "SparseAdam", "AdamW8bit")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "5/5 optimizers took a real step" in check.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: FusedLamb takes its step")
def test_check_reports_a_failure():
    check = _cli("check", "FusedLamb")
    assert check.returncode == 1
    assert "FAILED" in check.stdout and "needs CUDA" in check.stdout
