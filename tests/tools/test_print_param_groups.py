"""visdet-mmext groups prints a config's Muon routing without training; a bad config stops
with exit code 2 and the fix, as in `train`."""
import subprocess
import sys

import pytest

from demo_utils import CONFIGS
from visdet_mmext import cli
from subprocess_utils import REPO

CONFIG = """
_base_ = [{base!r}]
optim_wrapper = dict(optimizer=dict(type='Muon', lr=0.02, weight_decay=0.01),
                     constructor='VisdetOptimWrapperConstructor',
                     paramwise_cfg=dict(muon=dict(exclude=['layers.1.*'])))
"""


@pytest.mark.slow
def test_prints_routing_and_groups(tmp_path):
    config = tmp_path / "muon.py"
    config.write_text(CONFIG.format(base=f"{CONFIGS}/_base_/demo.py"))
    result = subprocess.run([sys.executable, "-m", "visdet_mmext", "groups", str(config)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "stem.conv.weight" in out and "first layer: reads the input" in out
    assert "exclude 'layers.1.*'" in out
    assert "head.weight" in out and "output of the model: no layer reads its 4-wide output" in out
    assert "group   1: Muon" in out or "group   0: Muon" in out


@pytest.mark.parametrize("body, expected", [
    ("x = (", "ConfigFileError: "),
    ("model = dict(type='DemoConvNett')", "Did you mean DemoConvNet"),
    ("optim_wrapper = dict(optimizer=dict(type='AdamWW'))", "Closest available names: AdamW"),
])
def test_bad_config_exits_2_with_the_fix(tmp_path, capsys, body, expected):
    config = tmp_path / "bad.py"
    config.write_text(f"_base_ = [{CONFIGS + '/optimizers/adamw.py'!r}]\n{body}\n")
    code = cli.main(["groups", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert expected in err, err


TRACED = """
_base_ = [{base!r}]
custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', 'routing_models'],
                      allow_failed_imports=False)
model = dict(_delete_=True, type='WideHeadConvNet')
train_dataloader = dict(batch_size=8, dataset=dict(num_train=16, num_val=8))
optim_wrapper = dict(optimizer=dict(type='Muon', lr=0.02, weight_decay=0.01),
                     constructor='VisdetOptimWrapperConstructor')
"""


def test_trace_shows_the_loss_graphs_routing_and_how_to_pin_it(tmp_path, capsys):
    config = tmp_path / "traced.py"
    config.write_text(TRACED.format(base=f"{CONFIGS}/_base_/demo.py"))
    assert cli.main(["groups", str(config), "--trace"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("classifier.weight ")
            and "final predictor" in line]
    assert len(rows) == 1, out
    row = rows[0]
    assert row.split()[3:6] == ["Muon", "AdamW", "*"]  # structure, traced, differs
    assert "1 tensor(s) differ from the structural routing:" in out
    assert "paramwise_cfg=dict(muon=dict(exclude=['classifier.weight']))" in out


@pytest.mark.parametrize("option, expected", [
    ("train_dataloader=None", "has no train_dataloader: add one, or drop --trace"),
    ("train_dataloader.dataset.num_train=0", "train_dataloader yields no batch"),
    ("train_dataloader.dataset.type=DemoShapez", "Did you mean DemoShapes"),
])
def test_trace_without_a_batch_exits_2_with_the_fix(tmp_path, capsys, option, expected):
    config = tmp_path / "traced.py"
    config.write_text(TRACED.format(base=f"{CONFIGS}/_base_/demo.py"))
    code = cli.main(["groups", str(config), "--trace", "--cfg-options", option])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert expected in err, err
