"""tools/print_param_groups.py prints a config's Muon routing without training."""
import subprocess
import sys

from subprocess_utils import REPO

CONFIG = """
_base_ = [{base!r}]
optim_wrapper = dict(optimizer=dict(type='Muon', lr=0.02, weight_decay=0.01),
                     constructor='VisdetOptimWrapperConstructor',
                     paramwise_cfg=dict(muon=dict(exclude=['layers.1.*'])))
"""


def test_prints_routing_and_groups(tmp_path):
    config = tmp_path / "muon.py"
    config.write_text(CONFIG.format(base=f"{REPO}/configs/_base_/demo.py"))
    result = subprocess.run([sys.executable, "tools/print_param_groups.py", str(config)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "stem.conv.weight" in out and "first layer: reads the input" in out
    assert "exclude 'layers.1.*'" in out
    assert "head.weight" in out and "output head / final predictor" in out
    assert "group   1: Muon" in out or "group   0: Muon" in out
