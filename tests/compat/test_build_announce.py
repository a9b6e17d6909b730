"""A DeepSpeed JIT build is announced in mmengine's log with an estimate, then its duration.

Driven through DeepSpeed's real ``OpBuilder.jit_load`` and torch's ``cpp_extension.load``, on a
one-file op (a bare Python module in C++, so the build takes seconds, not DeepSpeed's minute).
"""
import pytest

from subprocess_utils import run_python

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

    module = ProbeBuilder().jit_load(verbose=False)
    print("loaded", module.__name__)
"""

SOURCE = """
#include <Python.h>
static struct PyModuleDef probe = {PyModuleDef_HEAD_INIT, "visdet_probe", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit_visdet_probe(void) { return PyModule_Create(&probe); }
"""


@pytest.mark.deepspeed
def test_first_build_is_announced_and_a_cached_one_is_not(tmp_path):
    source = tmp_path / "probe.cpp"
    source.write_text(SOURCE)
    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")}
    code = BUILD.replace("sys.argv[1]", repr(str(source)))
    first = run_python(code, env=env).stdout
    assert "loaded visdet_probe" in first
    assert f"building DeepSpeed's visdet_probe op (a one-time JIT build into {tmp_path}" in first
    assert "s, longer on a busy machine" in first
    assert "built DeepSpeed's visdet_probe op in" in first
    again = run_python(code, env=env).stdout
    assert "loaded visdet_probe" in again and "visdet_probe op" not in again
