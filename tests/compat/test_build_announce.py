"""A DeepSpeed JIT build goes to one folder and is announced with an estimate, then its duration.

Driven through DeepSpeed's real ``OpBuilder.jit_load`` and torch's ``cpp_extension.load``, on a
one-file op (a bare Python module in C++, so the build takes seconds, not DeepSpeed's minute).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from subprocess_utils import REPO

BUILD = """
    import sys
    import visdet_mmext
    from deepspeed.ops.op_builder.builder import OpBuilder
    from mmengine.logging import MMLogger

    MMLogger.get_instance("announce_test", log_level="INFO")

    class ProbeBuilder(OpBuilder):
        NAME = "visdet_probe"

        def __init__(self):
            super().__init__(name=self.NAME)

        def absolute_name(self):
            return "visdet_probe"

        def sources(self):
            return [sys.argv[1]]

        def cxx_args(self):
            return ["-O1", "-g"]  # as DeepSpeed's builders ask

    module = ProbeBuilder().jit_load(verbose=False)
    print("loaded", module.__name__)
"""

SOURCE = """
#include <Python.h>
static struct PyModuleDef probe = {PyModuleDef_HEAD_INIT, "visdet_probe", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit_visdet_probe(void) { return PyModule_Create(&probe); }
"""


@pytest.mark.deepspeed
def test_first_build_goes_to_the_package_folder_announced_and_a_cached_one_is_not(tmp_path):
    """With TORCH_EXTENSIONS_DIR unset the build lands in the package's folder, which the
    announcement names; a second run loads the build silently."""
    source = tmp_path / "probe.cpp"
    source.write_text(SOURCE)
    env = {k: v for k, v in os.environ.items() if k != "TORCH_EXTENSIONS_DIR"}
    env["VISDET_MMEXT_CACHE"] = str(tmp_path / "cache")
    folder = tmp_path / "cache" / "torch_extensions"
    code = BUILD.replace("sys.argv[1]", repr(str(source)))
    first = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "loaded visdet_probe" in first.stdout
    assert (f"building DeepSpeed's visdet_probe op (a one-time JIT build into {folder}; the "
            "package's default folder, TORCH_EXTENSIONS_DIR chooses another)") in first.stdout
    assert "built DeepSpeed's visdet_probe op in" in first.stdout
    assert (folder / "visdet_probe" / "visdet_probe.so").is_file()
    cflags = next(line for line in (folder / "visdet_probe" / "build.ninja").read_text().splitlines()
                  if line.startswith("cflags"))
    assert "-O1" in cflags.split() and "-g" not in cflags.split()  # compiled without debug info
    assert "visdet_probe" in json.loads((folder / "build_times.json").read_text())
    again = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=600)
    assert "loaded visdet_probe" in again.stdout and "visdet_probe op" not in again.stdout


@pytest.mark.deepspeed
def test_check_build_builds_each_pending_op_with_progress(tmp_path):
    """`visdet-mmext check --build` hands each op not built yet to DeepSpeed's loader, one after
    the other, each announced (here the one-file probe op instead of a minutes-long real one)."""
    source = tmp_path / "probe.cpp"
    source.write_text(SOURCE)
    code = BUILD.replace("sys.argv[1]", repr(str(source))).replace(
        'module = ProbeBuilder().jit_load(verbose=False)\n    print("loaded", module.__name__)', """
    from visdet_mmext.cli import _build_ops
    from visdet_mmext.deepspeed.ops import PendingBuild, is_built, sources
    _build_ops({"ProbeOptimizer": PendingBuild("visdet_probe", 1, ProbeBuilder())})
    print("built:", is_built("visdet_probe", sources(ProbeBuilder())))""")
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path / "extensions"))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("[build 1/1] "))
    assert lines[first].startswith("[build 1/1] DeepSpeed's visdet_probe op for ProbeOptimizer: ~")
    assert "building DeepSpeed's visdet_probe op" in lines[first + 1]
    assert lines[-1] == "built: True"
