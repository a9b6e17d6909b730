"""DeepSpeed's JIT builds: their folder, the estimate (cores, load, what this machine measured),
progress while one runs."""
import threading

import pytest

from visdet_mmext.deepspeed import ops


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("VISDET_MMEXT_CACHE", str(tmp_path))
    return tmp_path


def test_the_package_folder_is_the_default_and_the_variable_wins(cache, monkeypatch):
    assert ops.extensions_root() == cache / "torch_extensions"
    assert ops.use_default_root()
    assert ops.extensions_root() == cache / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(cache / "mine"))
    assert not ops.use_default_root()
    assert ops.extensions_root() == cache / "mine"


def test_estimate_counts_waves_and_load_and_learns_from_a_build(cache, monkeypatch):
    monkeypatch.setattr(ops, "cores", lambda: 2)
    monkeypatch.setattr(ops.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert ops.build_estimate("cpu_adam", 2) == ops.DEFAULT_WAVE_S  # one wave, idle machine
    assert ops.build_estimate("cpu_adam", 3) == 2 * ops.DEFAULT_WAVE_S
    monkeypatch.setattr(ops.os, "getloadavg", lambda: (2.0, 0.0, 0.0))
    assert ops.build_estimate("cpu_adam", 2) == 2 * ops.DEFAULT_WAVE_S  # 4 jobs on 2 cores
    ops.record_build("cpu_adam", 2, seconds=300.0, slowdown=2.0)  # 150 s per idle wave
    assert ops.build_estimate("cpu_adam", 2) == 300.0
    assert ops.build_estimate("cpu_lion", 2) == 300.0  # an op never built here: the others' rate
    assert (cache / "torch_extensions" / ops.TIMES_FILE).is_file()


def test_a_build_is_announced_with_progress_and_its_time_recorded(cache):
    said, beats = [], threading.Event()

    def say(message):
        said.append(message)
        if len(said) == 3:  # the announcement and two progress lines
            beats.set()

    with ops.timed_build("probe_op", 1, say, every=0.01):
        assert beats.wait(60), said
    assert said[0].startswith(f"building DeepSpeed's probe_op op (a one-time JIT build into "
                              f"{cache / 'torch_extensions'}")
    assert said[1].startswith("  ... building probe_op: ")
    assert said[-1].startswith("built DeepSpeed's probe_op op in ")
    assert "probe_op" in ops._recorded()


def _build_file(folder, op, deepspeed_dir, torch_include, flags):
    folder.mkdir(parents=True)
    (folder / f"{op}.so").write_bytes(b"")
    (folder / "build.ninja").write_text(
        f"ninja_required_version = 1.3\ncxx = c++\n\ncflags = -DTORCH_EXTENSION_NAME={op} "
        f"-I{deepspeed_dir}/ops/csrc/includes -isystem {torch_include} {flags}\n\n"
        f"build {op}.o: compile {deepspeed_dir}/ops/csrc/adam/{op}.cpp\n")


@pytest.mark.parametrize("where, built", [("here", True), ("another venv", False),
                                          ("with -g", False), ("no build file", False),
                                          ("sources newer", False)])
def test_a_build_counts_only_if_this_environment_would_not_compile_it_again(cache, tmp_path,
                                                                           where, built):
    """ninja compiles again when the sources' paths, the flags or the sources changed: a build
    left by another virtual environment (a fresh clone), with DeepSpeed's -g, or older than a
    reinstalled DeepSpeed is a build still to come."""
    import os

    from torch.utils.cpp_extension import include_paths
    here = tmp_path / "venv" / "deepspeed"
    source = here / "ops" / "csrc" / "adam" / "cpu_adam.cpp"
    source.parent.mkdir(parents=True)
    source.write_text("// the op")
    folder = ops.extensions_root() / "cpu_adam"
    deepspeed_dir = tmp_path / "elsewhere" / "deepspeed" if where == "another venv" else here
    flags = "-fPIC -O3 -g -Wno-reorder" if where == "with -g" else "-fPIC -O3 -Wno-reorder"
    _build_file(folder, "cpu_adam", deepspeed_dir, include_paths()[0], flags)
    if where == "no build file":
        (folder / "build.ninja").unlink()
    if where == "sources newer":
        built_at = (folder / "cpu_adam.so").stat().st_mtime
        os.utime(source, (built_at + 10, built_at + 10))
    assert ops.is_built("cpu_adam", [str(source)]) is built
