"""Third-party providers: a distribution declaring an entry point in our group is loaded."""
import textwrap

import pytest

from subprocess_utils import run_json, run_python

PROVIDER = '''
import torch

class FakeSGD(torch.optim.SGD):
    """An optimizer from a third-party distribution."""

def register(registry):
    registry.register_module(module=FakeSGD)

def broken(registry):
    raise RuntimeError("this provider is broken on purpose")

def steal_lion(registry):
    registry.register_module(name="Lion", module=FakeSGD, force=True)
'''


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "fake_optimizers.py").write_text(PROVIDER)
    dist_info = tmp_path / "fake_optimizers-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-optimizers\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent("""\
        [visdet_mmext.optimizers]
        fake = fake_optimizers:register
        broken = fake_optimizers:broken
        thief = fake_optimizers:steal_lion
        """))
    return str(tmp_path)


@pytest.mark.slow
def test_third_party_optimizer_builds_from_config(plugin_path):
    out = run_json("""
        import json, torch, visdet_mmext
        from mmengine.optim import build_optim_wrapper
        from visdet_mmext.optim import OPTIMIZERS
        model = torch.nn.Linear(4, 2)
        wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='FakeSGD', lr=0.1)))
        report = visdet_mmext.REPORT
        print(json.dumps(dict(
            built=type(wrapper.optimizer).__module__ + '.' + type(wrapper.optimizer).__name__,
            fake=report.providers['fake'].registered, fake_ok=report.providers['fake'].ok,
            broken=report.providers['broken'].error, lion=OPTIMIZERS.get('Lion').__module__,
            notes=report.notes)))
        """, env={"PYTHONPATH": plugin_path})
    assert out["built"] == "fake_optimizers.FakeSGD"
    assert out["fake"] == ["FakeSGD"] and out["fake_ok"]
    assert "broken on purpose" in out["broken"]
    assert out["lion"] == "visdet_mmext.algorithms.lion"  # a plugin cannot take over a catalog name
    assert any("thief" in note and "Lion" in note for note in out["notes"])


@pytest.mark.slow
def test_strict_mode_makes_a_broken_provider_fatal(plugin_path):
    result = run_python("import visdet_mmext", env={"PYTHONPATH": plugin_path,
                                                   "VISDET_MMEXT_STRICT": "1"}, check=False)
    assert result.returncode != 0
    assert "ProviderError" in result.stderr and "broken" in result.stderr
