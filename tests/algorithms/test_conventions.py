"""torch.optim conventions kept by the native optimizers (Lion, LAMB, Muon, ADOPT, Adan) on every
path.

copy.deepcopy and pickle keep every setting (the copy steps exactly like the original);
a state dict whose ``step`` is a plain number loads (torch's ``test_load_nontensor_step``);
``maximize`` ascends; ``p.grad`` is only read; fp16/bf16 parameters give the same result on the
single-tensor, foreach and compiled paths (computed in fp32, rounded once), where eager fp16
arithmetic would overflow; tensor subclasses (as DTensor) leave the C kernels.
"""
import copy
import io
import pickle

import pytest
import torch

from native_utils import ALL_PATHS, PATHS, fresh, make_problem, needs_compile, run
from visdet_mmext.algorithms import dispatch
from visdet_mmext.algorithms.adan import Adan
from visdet_mmext.algorithms.adopt import ADOPT
from visdet_mmext.algorithms.lamb import LAMB
from visdet_mmext.algorithms.lion import Lion
from visdet_mmext.algorithms.muon import Muon

pytestmark = pytest.mark.usefixtures("compile_small_tensors")

OPTIMIZERS = {
    "Lion": lambda ps, **kw: Lion(ps, lr=1e-2, weight_decay=0.1, **kw),
    "LAMB": lambda ps, **kw: LAMB(ps, lr=1e-2, weight_decay=0.01, **kw),
    "Muon": lambda ps, **kw: Muon(ps, lr=0.02, weight_decay=0.01, adamw_lr=3e-3,
                                  ns_dtype=torch.float32, **kw),
    "ADOPT": lambda ps, **kw: ADOPT(ps, lr=1e-2, weight_decay=0.01, decouple=True, **kw),
    "Adan": lambda ps, **kw: Adan(ps, lr=1e-2, weight_decay=0.02, max_grad_norm=10.0, **kw),
}
SHAPES = [(24, 16), (16,), (8, 4, 3, 3)]


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_keep_every_setting_and_step_identically(name, how):
    init, grads = make_problem(seed=1, steps=6, shapes=SHAPES)
    params = fresh(init)
    original = OPTIMIZERS[name](params, fast=False, foreach=True)
    run(original, params, grads[:3])
    clone = copy.deepcopy(original) if how == "deepcopy" else pickle.loads(pickle.dumps(original))
    # (torch's __setstate__ adds its own keys, e.g. differentiable)
    assert {key: clone.defaults[key] for key in original.defaults} == original.defaults
    assert getattr(clone, "adamw", None) == getattr(original, "adamw", None)
    # the copy holds copies of the parameters (and their state), in the same group order
    order = [next(i for i, q in enumerate(params) if q is p)
             for group in original.param_groups for p in group["params"]]
    copies = [None] * len(params)
    for i, p in zip(order, (p for group in clone.param_groups for p in group["params"])):
        copies[i] = p
    run(original, params, grads[3:])
    run(clone, copies, grads[3:])
    for a, b in zip(params, copies):
        assert torch.equal(a, b)


def _with_int_steps(state_dict):
    for state in state_dict["state"].values():
        if "step" in state:
            state["step"] = int(state["step"].item())
    return state_dict


@pytest.mark.parametrize("name", ["LAMB", "Muon", "ADOPT", "Adan"])
def test_state_dict_with_plain_number_steps_loads(name):
    init, grads = make_problem(seed=2, steps=8, shapes=SHAPES)
    params = fresh(init)
    optimizer = OPTIMIZERS[name](params, fast=False)
    run(optimizer, params, grads[:4])
    saved = _with_int_steps(copy.deepcopy(optimizer.state_dict()))
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = OPTIMIZERS[name](resumed_params, fast=False)
    resumed.load_state_dict(saved)
    run(optimizer, params, grads[4:])
    run(resumed, resumed_params, grads[4:])
    for a, b in zip(params, resumed_params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_maximize_equals_minimizing_the_negated_objective(name, path):
    init, grads = make_problem(seed=3, steps=5, shapes=SHAPES)
    ascended = fresh(init)
    run(OPTIMIZERS[name](ascended, maximize=True, **PATHS[path]), ascended, grads)
    descended = fresh(init)
    negated = [[-g for g in step] for step in grads]
    run(OPTIMIZERS[name](descended, **PATHS[path]), descended, negated)
    for a, b in zip(ascended, descended):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("path", ALL_PATHS)
def test_gradients_are_only_read(name, path):
    # maximize (and Adan's global clip) change the gradient the update uses, never p.grad
    init, grads = make_problem(seed=7, steps=3, shapes=SHAPES)
    params = fresh(init)
    optimizer = OPTIMIZERS[name](params, maximize=True, **PATHS[path])
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.step()
        for p, g in zip(params, step_grads):
            assert torch.equal(p.grad, g)


def _ulps(a, b, dtype):
    """Largest difference in units of the dtype's spacing at each element's magnitude."""
    spacing = torch.finfo(dtype).eps * b.float().abs().clamp(min=torch.finfo(dtype).tiny)
    return ((a.float() - b.float()).abs() / spacing).max().item()


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_params_give_the_same_result_on_every_path(name, dtype):
    # gradients of 300: g*g = 9e4 overflows fp16 (max 65504) if computed in fp16
    init, grads = make_problem(seed=4, steps=4, shapes=SHAPES)
    grads = [[g * 300 for g in step] for step in grads]
    results = {}
    for path in ("single", "foreach", "compiled"):
        params = [torch.nn.Parameter(t.to(dtype)) for t in init]
        low_grads = [[g.to(dtype) for g in step] for step in grads]
        run(OPTIMIZERS[name](params, **PATHS[path]), params, low_grads)
        results[path] = params
    for path in ("foreach", "compiled"):
        for a, b in zip(results[path], results["single"]):
            assert torch.isfinite(a).all(), f"{name} {path} {dtype}: non-finite values"
            assert _ulps(a, b, dtype) <= 1.0, f"{name} {path} vs single, {dtype}"
    assert all(torch.isfinite(p).all() for p in results["single"])


def test_state_dict_round_trip_keeps_settings_through_torch_save():
    init, grads = make_problem(seed=5, steps=2, shapes=SHAPES)
    params = fresh(init)
    optimizer = OPTIMIZERS["Muon"](params, fast=False, maximize=True)
    run(optimizer, params, grads)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert all(group["maximize"] for group in loaded["param_groups"])


class _Subclass(torch.Tensor):
    """A tensor subclass (as DTensor is one): no plain buffer may be assumed behind it."""


@pytest.mark.parametrize("name", ["Lion", "LAMB", "ADOPT", "Adan"])
def test_tensor_subclasses_leave_the_c_kernels_and_step_alike(name):
    init, grads = make_problem(seed=6, steps=3, shapes=SHAPES)
    plain = fresh(init)
    run(OPTIMIZERS[name](plain, fast=True), plain, grads)
    wrapped = [torch.nn.Parameter(t.clone().as_subclass(_Subclass)) for t in init]
    run(OPTIMIZERS[name](wrapped, fast=True), wrapped, [[g.as_subclass(_Subclass) for g in s]
                                                        for s in grads])
    assert all(type(p) is _Subclass for p in wrapped)
    for a, b in zip(wrapped, plain):
        torch.testing.assert_close(a.as_subclass(torch.Tensor), b.detach(), rtol=1e-5, atol=1e-6)


@needs_compile
@pytest.mark.slow  # 12-15 s of compilation each
@pytest.mark.parametrize("strategy", ["chunked", "grouped"])
@pytest.mark.parametrize("name", ["ADOPT", "Adan"])
def test_torch_compile_strategies_compute_the_eager_formula(monkeypatch, name, strategy):
    """The compiled kernels a CPU without a C compiler (chunked) and CUDA (grouped) run."""
    monkeypatch.setenv("VISDET_MMEXT_COMPILE", strategy)
    init, grads = make_problem(seed=8, steps=4, shapes=SHAPES)
    expected = fresh(init)
    run(OPTIMIZERS[name](expected, **PATHS["single"]), expected, grads)
    actual = fresh(init)
    run(OPTIMIZERS[name](actual, fast=True), actual, grads)
    assert not dispatch._BROKEN, dispatch._BROKEN
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
