"""A name means one class whatever is installed: with optional packages hidden, each catalog
name maps to the same class as in the full environment, or is reported unavailable."""
import pytest

from subprocess_utils import run_json

SNAPSHOT = """
import json, visdet_mmext
from visdet_mmext.catalog import CATALOG
from visdet_mmext.optim import OPTIMIZERS
out = {}
for spec in CATALOG.values():
    obj = OPTIMIZERS.module_dict.get(spec.name)
    info = visdet_mmext.REPORT.availability(spec.name)
    out[spec.name] = dict(target=None if obj is None else f"{obj.__module__}.{obj.__qualname__}",
                          status=info.status, reason=info.reason)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def full():
    return run_json(SNAPSHOT)


@pytest.mark.parametrize("hidden", [("lion_pytorch",), ("bitsandbytes",),
                                    ("transformers", "dadaptation", "deepspeed", "schedulefree",
                                     "prodigyopt", "pytorch_optimizer")])
@pytest.mark.slow
def test_names_never_change_meaning(full, hidden):
    partial = run_json(SNAPSHOT, hide=hidden)
    for name, entry in partial.items():
        if entry["target"] is not None:
            assert entry["target"] == full[name]["target"], f"{name} changed meaning without {hidden}"
            assert entry["status"] == full[name]["status"]
        else:
            assert entry["status"] != "available", name
            assert entry["reason"], name


@pytest.mark.slow
def test_hidden_packages_are_reported_missing(full):
    partial = run_json(SNAPSHOT, hide=("bitsandbytes", "transformers"))
    assert partial["AdamW8bit"]["status"] == "missing package"
    assert "bitsandbytes is not installed" in partial["AdamW8bit"]["reason"]
    assert partial["Adafactor"]["target"] is None  # never torch's Adafactor under that name
    assert partial["LAMB"]["target"] == full["LAMB"]["target"] == "visdet_mmext.algorithms.lamb.LAMB"
    assert partial["Lion"]["target"] == "visdet_mmext.algorithms.lion.Lion"


def test_fixed_meanings(full):
    assert full["Muon"]["target"] == "visdet_mmext.algorithms.muon.optimizer.Muon"
    assert full["TorchMuon"]["target"] == "torch.optim.Muon"
    assert full["TorchAdafactor"]["target"].startswith("torch.optim")
    assert full["bnb_Lion"]["target"] == "bitsandbytes.optim.lion.Lion"
    assert full["bnb_LAMB"]["target"] == "bitsandbytes.optim.lamb.LAMB"
    assert full["AdamW8bit"]["target"] == "bitsandbytes.optim.adamw.AdamW8bit"


@pytest.mark.slow
def test_mmengine_sophia_registration_is_replaced_and_reported(tmp_path):
    """mmengine registers every optimizer class of an importable module named `Sophia` (the
    Sophia authors' code); the catalog's SophiaG keeps the name, and the report says what it
    replaced."""
    (tmp_path / "Sophia.py").write_text(
        "import torch\n\nclass SophiaG(torch.optim.Optimizer):\n    pass\n")
    replaced = run_json("""
import json
from mmengine.optim.optimizer.builder import SOPHIA_OPTIMIZERS
import visdet_mmext
from visdet_mmext.optim import OPTIMIZERS
info = visdet_mmext.REPORT.availability("SophiaG")
print(json.dumps(dict(mmengine=SOPHIA_OPTIMIZERS, target=OPTIMIZERS.get("SophiaG").__module__,
                      reason=info.reason)))
""", env=dict(PYTHONPATH=str(tmp_path)))
    assert replaced["mmengine"] == ["SophiaG"]
    assert replaced["target"] == "visdet_mmext.algorithms.sophia"
    assert replaced["reason"] == "replaces Sophia.SophiaG"
