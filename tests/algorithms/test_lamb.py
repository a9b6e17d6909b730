"""Native LAMB: the paper's formula, every execution path, state dicts, training."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from native_utils import (PATHS, ALL_PATHS, assert_closure_loss_returned,
                          assert_native_kernel_matches_single_path, assert_rel_close,
                          assert_sparse_gradients_refused, fresh, make_problem, regression_losses,
                          run, toy_regression)
from oracles import float64, reference_lamb, zeros
from visdet_mmext.algorithms.lamb import LAMB

pytestmark = pytest.mark.usefixtures("compile_small_tensors")


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("adapt, bias_correction", [(True, True), (False, True), (True, False)])
def test_matches_paper_formula(path, adapt, bias_correction):
    init, grads = make_problem()
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
    expected = reference_lamb(init, grads, kw["lr"], kw["betas"], kw["eps"], kw["weight_decay"],
                              adapt, bias_correction)
    params = fresh(init)
    opt = LAMB(params, **kw, adapt=adapt, bias_correction=bias_correction, **PATHS[path])
    assert_rel_close(run(opt, params, grads), expected, 1e-6)
    state = opt.state[params[0]]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
    assert state["step"].dtype == torch.float32 and state["step"].item() == 20


@pytest.mark.parametrize("path", ALL_PATHS)
def test_zero_norms_give_ratio_one(path):
    # A zero weight (fresh bias) and a zero update (no gradient, no decay) must not divide by 0.
    params = [nn.Parameter(torch.zeros(32)), nn.Parameter(torch.ones(32))]
    opt = LAMB(params, lr=0.1, weight_decay=0.0, **PATHS[path])
    params[0].grad = torch.full((32,), 2.0)
    params[1].grad = torch.zeros(32)
    opt.step()
    # Adam's first step moves by lr * g / (|g| + eps) ~ lr.
    torch.testing.assert_close(params[0].detach(), torch.full((32,), -0.1), atol=1e-6, rtol=0)
    torch.testing.assert_close(params[1].detach(), torch.ones(32))


def test_adapt_false_group_is_plain_adam_with_decay_inside():
    init, grads = make_problem(seed=1, steps=5)
    params = fresh(init)
    opt = LAMB([dict(params=params[:2]), dict(params=params[2:], adapt=False, weight_decay=0.0)],
               lr=1e-2, weight_decay=0.1)
    run(opt, params, grads)
    adapted = reference_lamb(init[:2], [g[:2] for g in grads], 1e-2, (0.9, 0.999), 1e-6, 0.1)
    plain = reference_lamb(init[2:], [g[2:] for g in grads], 1e-2, (0.9, 0.999), 1e-6, 0.0,
                           adapt=False)
    assert_rel_close(params, adapted + plain, 1e-6)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_paths_agree_with_groups_and_missing_grads(path):
    init, grads = make_problem(seed=2, steps=6)
    for step_grads in grads[::2]:
        step_grads[1] = None

    def train(**kw):
        params = fresh(init)
        opt = LAMB([dict(params=params[:2], lr=2e-2, adapt=False),
                    dict(params=params[2:], betas=(0.8, 0.99))], lr=1e-2, weight_decay=0.05, **kw)
        return run(opt, params, grads), opt

    expected, opt_single = train(**PATHS["single"])
    actual, opt = train(**PATHS[path])
    assert_rel_close(actual, expected, 1e-6)
    # the tensor that missed three steps has its own step count
    assert opt.state[actual[1]]["step"].item() == 3


def test_c_kernel_computes_the_single_tensor_formula():
    """Every fp32 tensor of a step in one C call: moments and both norms, then the update; the
    norms are summed in double precision (torch's in float)."""
    from visdet_mmext.algorithms import lamb
    assert_native_kernel_matches_single_path(
        lamb, lambda ps, **kw: LAMB(ps, lr=1e-2, weight_decay=0.1, **kw))


def test_state_dict_round_trip_is_exact():
    init, grads = make_problem(seed=3, steps=10)
    params_a = fresh(init)
    opt_a = LAMB(params_a, lr=1e-2, weight_decay=0.1)
    run(opt_a, params_a, grads[:5])
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = LAMB(params_b, lr=1e-2, weight_decay=0.1)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    run(opt_a, params_a, grads[5:])
    run(opt_b, params_b, grads[5:])
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)


def test_single_tensor_checkpoint_loads_into_fast_path():
    init, grads = make_problem(seed=4, steps=10)
    params_a = fresh(init)
    opt_a = LAMB(params_a, lr=1e-2, weight_decay=0.1, **PATHS["single"])
    run(opt_a, params_a, grads[:5])
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = LAMB(params_b, lr=1e-2, weight_decay=0.1, fast=True)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    run(opt_a, params_a, grads[5:])
    run(opt_b, params_b, grads[5:])
    assert_rel_close(params_b, params_a, 1e-6)


@pytest.mark.slow
def test_grouped_compiled_strategy_matches(monkeypatch):
    """The CUDA strategy (one compiled call per step) exercised on CPU."""
    monkeypatch.setenv("VISDET_MMEXT_COMPILE", "grouped")
    init, grads = make_problem(seed=6, steps=4)
    kw = dict(lr=1e-2, weight_decay=0.1)
    expected = run(LAMB(ref := fresh(init), **kw, **PATHS["single"]), ref, grads)
    params = fresh(init)
    opt = LAMB([dict(params=params[:2], adapt=False), dict(params=params[2:])], **kw, fast=True)
    adapted = run(opt, params, grads)
    assert_rel_close(adapted[2:], expected[2:], 1e-6)
    plain = run(LAMB(ref := fresh(init)[:2], **kw, adapt=False, **PATHS["single"]), ref,
                [g[:2] for g in grads])
    assert_rel_close(adapted[:2], plain, 1e-6)


def bnb_lamb_formula(init, grads, lr, betas, eps, wd, max_unorm=1.0):
    """What bitsandbytes' 32-bit LAMB computes (0.50.2, CPU backend), written out.

    Against the paper: decay is decoupled and applied first (``p *= 1 - lr*wd``), the update is
    plain Adam with eps scaled by ``sqrt(bc2)``, and the trust ratio only clips, using the norm
    of ``p`` *before* the decay: ``r = min(1, max_unorm * ||p|| / ||u||)``.
    """
    params = float64(init)
    m = zeros(params)
    v = zeros(params)
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            g = g.double()
            w_norm = params[i].norm()
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            bc1, bc2_sqrt = 1 - betas[0] ** t, (1 - betas[1] ** t) ** 0.5
            params[i] = params[i] * (1 - lr * wd)
            update = m[i] / (v[i].sqrt() + eps * bc2_sqrt)
            u_norm = update.norm()
            ratio = min(1.0, (max_unorm * w_norm / u_norm).item()) if u_norm > 0 else 1.0
            params[i] = params[i] - lr * bc2_sqrt / bc1 * ratio * update
    return params


def test_bitsandbytes_lamb_differs_from_the_paper_as_documented():
    bnb = pytest.importorskip("bitsandbytes")
    init, grads = make_problem(seed=5, steps=5)
    init = [t * 0.01 for t in init]  # small weights, so the clip is active
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
    params = fresh(init)
    run(bnb.optim.LAMB(params, **kw), params, grads)
    described = bnb_lamb_formula(init, grads, kw["lr"], kw["betas"], kw["eps"],
                                 kw["weight_decay"])
    assert_rel_close(params, described, 1e-5)
    paper = reference_lamb(init, grads, kw["lr"], kw["betas"], kw["eps"], kw["weight_decay"])
    gap = max(((a.detach().double() - e).abs().max() / e.abs().max()).item()
              for a, e in zip(params, paper))
    assert gap > 1e-2


def test_closure_sparse_and_validation():
    p = nn.Parameter(torch.ones(4))
    opt = LAMB([p], lr=0.1)
    assert opt.defaults["eps"] == 1e-6 and opt.defaults["adapt"] is True
    assert_closure_loss_returned(opt, p)
    assert_sparse_gradients_refused(LAMB)
    with pytest.raises(ValueError):
        LAMB([p], betas=(0.9, 1.0))


@pytest.mark.parametrize("kind", ["mlp", "conv_bn"])
def test_trains_toy_models(kind):
    model, x, y = toy_regression(kind)
    opt = LAMB(model.parameters(), lr=2e-2, weight_decay=0.01)
    losses = regression_losses(model, x, y, opt)
    assert losses[-1] < 0.5 * losses[0]
