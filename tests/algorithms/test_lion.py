"""Native Lion: the documented update, every execution path, state dicts, training."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from native_utils import (PATHS, assert_closure_loss_returned, assert_sparse_gradients_refused,
                          make_problem, needs_compile, regression_losses, toy_regression)
from visdet_mmext.algorithms import dispatch
from visdet_mmext.algorithms.lion import Lion

pytestmark = pytest.mark.usefixtures("compile_small_tensors")


def run(opt_factory, init, grads, params=None):
    params = params if params is not None else [nn.Parameter(t.clone()) for t in init]
    opt = opt_factory(params)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


def assert_rel_close(actual, expected, rtol):
    for a, e in zip(actual, expected):
        scale = e.abs().max().clamp(min=1e-12)
        assert ((a.detach() - e.detach()).abs().max() / scale).item() <= rtol


@pytest.mark.parametrize("path", [
    "single", "foreach", pytest.param("compiled", marks=needs_compile)])
def test_matches_lion_pytorch(path):
    lion_pytorch = pytest.importorskip("lion_pytorch")
    init, grads = make_problem()
    kw = dict(lr=3e-3, betas=(0.9, 0.99), weight_decay=0.5)
    expected, _ = run(lambda ps: lion_pytorch.Lion(ps, **kw), init, grads)
    actual, opt = run(lambda ps: Lion(ps, **kw, **PATHS[path]), init, grads)
    assert_rel_close(actual, expected, 1e-5)
    assert set(opt.state[actual[0]]) == {"exp_avg"}


def test_update_formula_by_hand():
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = Lion([p], lr=0.1, betas=(0.5, 0.9), weight_decay=0.2, fast=False)
    opt.state[p]["exp_avg"] = torch.tensor([1.0, 1.0, -4.0])
    p.grad = torch.tensor([-3.0, 2.0, 2.0])
    opt.step()
    # interpolation 0.5*m + 0.5*g = [-1, 1.5, -1]; decay (1 - 0.1*0.2) = 0.98
    expected = torch.tensor([1.0 * 0.98 + 0.1, -2.0 * 0.98 - 0.1, 0.5 * 0.98 + 0.1])
    torch.testing.assert_close(p.detach(), expected)
    torch.testing.assert_close(opt.state[p]["exp_avg"], torch.tensor([0.6, 1.1, -3.4]))


def test_defaults_and_validation():
    p = nn.Parameter(torch.zeros(3))
    opt = Lion([p])
    assert opt.defaults["betas"] == (0.9, 0.99)
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["weight_decay"] == 0.0
    with pytest.raises(ValueError):
        Lion([p], lr=-1.0)
    with pytest.raises(ValueError):
        Lion([p], betas=(1.5, 0.9))


@pytest.mark.parametrize("path", [
    "single", "foreach", pytest.param("compiled", marks=needs_compile)])
def test_paths_agree_with_groups_and_missing_grads(path):
    init, grads = make_problem(seed=1, steps=6)
    for step_grads in grads[::2]:
        step_grads[1] = None  # this tensor has no gradient on every other step

    def factory(ps, **kw):
        return Lion([dict(params=ps[:2], lr=1e-2, weight_decay=0.1),
                     dict(params=ps[2:], betas=(0.8, 0.95))], lr=2e-3, **kw)

    def train(**kw):
        params = [nn.Parameter(t.clone()) for t in init]
        opt = factory(params, **kw)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = None if g is None else g.clone()
            opt.step()
        return params

    expected = train(**PATHS["single"])
    assert_rel_close(train(**PATHS[path]), expected, 1e-6)


def test_state_dict_round_trip_is_exact():
    init, grads = make_problem(seed=2, steps=10)
    params_a, opt_a = run(lambda ps: Lion(ps, lr=1e-3, weight_decay=0.1), init, grads[:5])
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = Lion(params_b, lr=1e-3, weight_decay=0.1)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    run(lambda ps: opt_a, None, grads[5:], params=params_a)
    run(lambda ps: opt_b, None, grads[5:], params=params_b)
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)


@needs_compile
def test_single_tensor_checkpoint_loads_into_fast_path():
    init, grads = make_problem(seed=3, steps=10)
    params_a, opt_a = run(lambda ps: Lion(ps, lr=1e-3, **PATHS["single"]), init, grads[:5])
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = Lion(params_b, lr=1e-3, fast=True)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    run(lambda ps: opt_a, None, grads[5:], params=params_a)
    run(lambda ps: opt_b, None, grads[5:], params=params_b)
    assert_rel_close(params_b, params_a, 1e-6)


@needs_compile
def test_lr_schedule_and_new_shapes_do_not_recompile(monkeypatch):
    from torch._dynamo.utils import counters
    monkeypatch.setenv("VISDET_MMEXT_COMPILE", "chunked")  # the torch.compile path
    torch._dynamo.reset()  # compile here, whatever an earlier test compiled in this process
    counters.clear()
    init, grads = make_problem(seed=4, steps=8)
    params = [nn.Parameter(t.clone()) for t in init]
    opt = Lion(params, lr=1e-3, fast=True)
    for i, step_grads in enumerate(grads):
        if i == 2:
            compiled_before = counters["stats"]["unique_graphs"]
            assert compiled_before > 0, "the first steps compiled nothing"
        for group in opt.param_groups:
            group["lr"] = 1e-3 * (0.5 ** i)
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    # another model: other shapes, another count of tensors
    other = [nn.Parameter(torch.randn(s)) for s in [(9, 4, 2), (33,), (20, 20), (7, 11)] * 3]
    opt = Lion(other, lr=1e-3, fast=True)
    for p in other:
        p.grad = torch.randn_like(p)
    opt.step()
    assert counters["stats"]["unique_graphs"] == compiled_before


@needs_compile
@pytest.mark.parametrize("strategy, seed", [
    # the CUDA strategy (one compiled call per step), exercised on CPU
    pytest.param("grouped", 5, marks=pytest.mark.slow),
    # the torch.compile path Lion falls back to without a C compiler
    ("chunked", 9),
])
def test_compiled_strategy_matches(monkeypatch, strategy, seed):
    monkeypatch.setenv("VISDET_MMEXT_COMPILE", strategy)
    init, grads = make_problem(seed=seed, steps=4)
    expected, _ = run(lambda ps: Lion(ps, lr=1e-3, weight_decay=0.1, **PATHS["single"]),
                      init, grads)
    actual, _ = run(lambda ps: Lion(ps, lr=1e-3, weight_decay=0.1, fast=True), init, grads)
    assert_rel_close(actual, expected, 1e-6)


def test_closure_sparse_and_no_grad():
    p = nn.Parameter(torch.ones(4))
    opt = Lion([p], lr=0.1)
    assert opt.step() is None  # no gradient: nothing happens
    torch.testing.assert_close(p.detach(), torch.ones(4))
    assert_closure_loss_returned(opt, p)
    assert_sparse_gradients_refused(Lion)


@pytest.mark.parametrize("kind", ["mlp", "conv_bn"])
def test_trains_toy_models(kind):
    model, x, y = toy_regression(kind)
    opt = Lion(model.parameters(), lr=3e-3, weight_decay=0.01)
    losses = regression_losses(model, x, y, opt)
    assert losses[-1] < 0.5 * losses[0]


def test_path_choice(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("VISDET_MMEXT_COMPILE", raising=False)
    choose = dispatch.choose_path
    assert choose(False, None, cpu) == ("single", "single")  # torch's default on CPU
    assert choose(False, None, cuda) == ("foreach", "foreach")
    assert choose(False, True, cpu) == ("foreach", "foreach")
    assert choose(None, False, cpu)[1] == "single"
    if dispatch.strategy_for(cpu) is not None:
        assert choose(None, None, cpu) == ("compiled", "foreach")
        assert dispatch.strategy_for(cpu) == "chunked"
        assert dispatch.strategy_for(cuda) == "grouped"
    monkeypatch.setenv("VISDET_MMEXT_COMPILE", "off")
    assert choose(None, None, cpu) == ("foreach", "foreach")
    assert choose(True, None, cpu) == ("foreach", "foreach")  # logged, not an error


def test_cpu_kernel_equals_the_single_tensor_path_bit_for_bit():
    """The C kernel (every fp32 tensor in one call, blocks over threads) computes the eager
    formula operation by operation; float64 tensors and sign(0) = sign(NaN) = 0 included."""
    from visdet_mmext.algorithms import lion
    if lion._KERNEL.native([]) is None:
        pytest.skip("no C compiler")
    init, grads = make_problem(seed=7, steps=4, shapes=[(40, 24), (24,), (70_000,), (3, 5)])
    init.append(torch.randn(9, dtype=torch.float64))
    for step_grads in grads:
        step_grads.append(torch.randn(9, dtype=torch.float64))
    init[1][:4] = torch.tensor([0.0, -0.0, float("nan"), 1.0])
    grads[0][1][:4] = 0.0  # first step: m = 0 and g = 0 -> the sign of exactly 0
    grads[1][1][:4] = torch.tensor([float("nan"), 1.0, -1.0, 0.0])
    kw = dict(lr=1e-3, weight_decay=0.1)
    expected, _ = run(lambda ps: Lion(ps, **kw, **PATHS["single"]), init, grads)
    calls = []
    native = lion._KERNEL.native
    lion._KERNEL.native = lambda works: calls.append(len(works)) or native(works)
    try:
        actual, _ = run(lambda ps: Lion(ps, **kw, fast=True), init, grads)
    finally:
        lion._KERNEL.native = native
    assert calls == [len(init)] * len(grads)
    for a, e in zip(actual, expected):
        assert torch.equal(a.nan_to_num(), e.nan_to_num()) and a.isnan().equal(e.isnan())


def test_without_a_c_compiler_the_compiled_path_takes_over(monkeypatch, caplog):
    from visdet_mmext.algorithms import native_cpu
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("VISDET_MMEXT_CACHE", "/nonexistent-visdet-cache")
    monkeypatch.setattr(native_cpu, "_loaded", {})
    init, grads = make_problem(seed=8, steps=3)
    expected, _ = run(lambda ps: Lion(ps, lr=1e-3, **PATHS["single"]), init, grads)
    actual, _ = run(lambda ps: Lion(ps, lr=1e-3, fast=True), init, grads)
    assert_rel_close(actual, expected, 1e-6)
    assert "native CPU lion kernel unavailable" in caplog.text
    assert "no-such-compiler" in caplog.text


