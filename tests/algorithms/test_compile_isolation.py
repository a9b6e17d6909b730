"""A compile failure in one native test fails that test alone: ``native_utils.fresh_compiler``
(which the CUDA tests use) undoes the process-wide fallback to eager, so the next test compiles.
Run through pytest itself, in a fresh process."""
import os
import re
import subprocess
import sys

import pytest

from subprocess_utils import REPO

pytestmark = pytest.mark.slow  # a fresh interpreter importing torch and mmengine

TWO_TESTS = '''
import pytest
import torch

from native_utils import fresh_compiler  # noqa: F401
from visdet_mmext.algorithms import dispatch

pytestmark = pytest.mark.usefixtures("fresh_compiler")


def test_the_compiler_breaks():
    dispatch._disable(RuntimeError("the compiler broke"))  # what a failed torch.compile does


def test_the_next_one_takes_the_compiled_path():
    assert dispatch.choose_path(True, None, torch.device("cpu"))[0] == dispatch.COMPILED
'''


def test_a_failed_compile_fails_its_own_test_only(tmp_path):
    (tmp_path / "test_two.py").write_text(TWO_TESTS)
    path = os.pathsep.join([os.path.join(REPO, "tests", "helpers"), REPO])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_two.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=path), timeout=600)
    # the breaking test errors at its teardown; the next one passes (without the reset it fails)
    assert re.search(r"\b2 passed\b.*\b1 error\b", done.stdout), done.stdout[-3000:]
    assert "failed" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
    assert "ERROR test_two.py::test_the_compiler_breaks" in done.stdout
    assert "the compiled path fell back to eager: RuntimeError: the compiler broke" in done.stdout
