"""How a native step is executed: the compile-payback rule, and compilations announced in
mmengine's log."""
import pytest
import torch
from mmengine.logging import MMLogger

from native_utils import make_problem, run, fresh
from visdet_mmext.algorithms import dispatch
from visdet_mmext.algorithms.lamb import LAMB


def _chunked_calls(monkeypatch) -> list:
    calls = []
    run_chunked = dispatch.Kernel.run_chunked
    monkeypatch.setattr(dispatch.Kernel, "run_chunked",
                        lambda self, sets, hps: calls.append(len(sets)) or run_chunked(self, sets,
                                                                                      hps))
    return calls


@pytest.mark.slow
def test_fast_none_compiles_only_where_it_pays_back(monkeypatch):
    from visdet_mmext.algorithms import lamb
    monkeypatch.delenv("VISDET_MMEXT_COMPILE", raising=False)
    monkeypatch.setattr(dispatch, "MIN_NUMEL", 16)
    monkeypatch.setattr(lamb._KERNEL, "native", None)  # the torch.compile path (no C compiler)
    calls = _chunked_calls(monkeypatch)
    init, grads = make_problem(seed=1, steps=2)
    elements = sum(t.numel() for t in init)
    assert lamb._KERNEL.min_elements > elements  # a toy problem never repays a compilation
    run(LAMB(fresh(init)), fresh(init), grads)
    assert calls == []
    run(LAMB(params := fresh(init), fast=True), params, grads)  # asked for: compiled anyway
    assert calls == [len(init)] * 2
    calls.clear()
    monkeypatch.setattr(lamb._KERNEL, "min_elements", elements)  # as for a large model
    run(LAMB(params := fresh(init)), params, grads)
    assert calls == [len(init)] * 2


def test_a_compilation_is_announced_in_mmengines_log(tmp_path):
    def scale_tensor(p, g, hp):  # a kernel nobody compiled in this process yet
        p.mul_(hp[0]).add_(g)

    kernel = dispatch.Kernel(scale_tensor, "Probe", compile_s=9.0, cached_s=2.0, saved_ns=1.0)
    log_file = tmp_path / "run.log"
    MMLogger.get_instance("dispatch_test", log_file=str(log_file), log_level="INFO")
    p, g = torch.ones(32), torch.ones(32)
    kernel.run_chunked([(p, g)], [(2.0,)])
    kernel.run_chunked([(p, g)], [(2.0,)])  # compiled once: no second announcement
    torch.testing.assert_close(p, torch.full((32,), 7.0))
    text = log_file.read_text()
    assert text.count("compiling the fused Probe kernel (torch.compile, chunked, once per "
                      "process): about 9 s on 2 CPU cores, 2 s when inductor's cache") == 1
    assert text.count("Probe kernel compiled in") == 1
