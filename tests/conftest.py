import os
import sys

import pytest

TESTS = os.path.dirname(__file__)
sys.path.insert(0, TESTS)  # tests import their helpers (toy, routing_models, ...) by name
os.environ.setdefault("TORCH_EXTENSIONS_DIR",
                      os.path.expanduser("~/.cache/visdet-mmext/torch_extensions"))


@pytest.fixture(autouse=True)
def _seed():
    import torch
    torch.manual_seed(0)
