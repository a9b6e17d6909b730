"""ZeRO stage 3 with Muon and LAMB, through real DeepSpeed engines (2 gloo processes).

Muon runs as DeepSpeed's Muon with this package's routing, on whole matrices (DeepSpeed
all-reduces full gradients for it: ``reduce_scatter=False``), and equals this package's Muon on
the unsharded model. LAMB's trust ratio would be taken per flat partition: it is refused, naming
that and the fix; opted in, it runs and differs, as the warning says.
"""
import json

import pytest

from demo_utils import torchrun

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("zero3") / "results.json"
    done = torchrun(2, "tests/jobs/zero3_muon_lamb.py", str(out), timeout=1500)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-6000:])
    return json.loads(out.read_text())


def test_muon_under_zero3_orthogonalises_whole_matrices_and_equals_the_unsharded_run(results):
    assert results["Muon"]["error"] <= 1e-5
    assert any("reduce_scatter=False" in note for note in results["Muon"]["notes"])


def test_lamb_under_zero3_is_refused_with_the_reason_and_the_fix(results):
    message = results["LAMB"]["refused"]
    assert "trust ratio" in message and "per flat ZeRO partition" in message
    assert "FullyShardStrategy" in message and "allow_untested_optimizer=True" in message


def test_lamb_opted_in_under_zero3_is_not_per_parameter_and_says_so(results):
    opted_in = results["LAMB allow_untested_optimizer"]
    assert opted_in["error"] > 1e-3  # the per-partition trust ratio, not the paper's
    assert any("per flat ZeRO partition" in warning for warning in opted_in["warnings"])
