import os
import sys

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
# tests import their helpers (toy, routing_models, ...) and job hooks (pause_hook) by name
sys.path[:0] = [os.path.join(TESTS, "helpers"), os.path.join(TESTS, "jobs")]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip where no CUDA device is (``make gpu-check`` runs them)."""
    import torch
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops gain nothing from threads, and spinning OpenMP threads on a busy machine make
    each op far slower."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compile_small_tensors(monkeypatch, one_thread):
    """The compiled path normally skips tensors this small; the native tests want it exercised."""
    from visdet_mmext.algorithms import dispatch
    monkeypatch.setattr(dispatch, "MIN_NUMEL", 16)


def once_per_session(tmp_path_factory, name: str, make):
    """``make(folder)``'s JSON-able result, computed by the first worker that asks; the other
    workers of this pytest-xdist session wait for it and read it."""
    import json

    from filelock import FileLock
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent / name  # this session's, shared by workers
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared) + ".lock"):
        done = shared / "result.json"
        if not done.exists():
            done.write_text(json.dumps(make(shared)))
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def fsdp_job(tmp_path_factory):
    """One torchrun of tests/jobs/fsdp_optimizers.py (2 gloo processes) for every test that reads
    it: optimizers on FSDP2 shards, and Muon's traced routing under FullyShardStrategy (its
    checkpoints under ``results["routing"]["work_dir"]``). Rank 0's JSON results."""
    import json

    from demo_utils import torchrun

    def launch(folder):
        out = folder / "results.json"
        done = torchrun(2, "tests/jobs/fsdp_optimizers.py", str(out), timeout=900)
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-6000:])
        return json.loads(out.read_text())
    return once_per_session(tmp_path_factory, "fsdp", launch)
