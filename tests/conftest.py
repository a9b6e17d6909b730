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
