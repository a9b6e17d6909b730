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
