"""Native Adan: the paper's algorithm in float64, every execution path, the C kernel, gradients
left as they were, and pytorch-optimizer's Adan (equal, but it negates p.grad)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from native_utils import (ALL_PATHS, PATHS, assert_closure_loss_returned,
                          assert_native_kernel_matches_single_path, assert_rel_close,
                          assert_sparse_gradients_refused, fresh, make_problem,
                          regression_losses, run, toy_regression)
from oracles import reference_adan
from visdet_mmext.algorithms.adan import Adan

pytestmark = pytest.mark.usefixtures("compile_small_tensors")

BETAS = (0.98, 0.92, 0.99)
SETTINGS = [dict(weight_decay=0.0), dict(weight_decay=0.05),
            dict(weight_decay=0.05, no_prox=True), dict(weight_decay=0.02, max_grad_norm=1.0)]


@pytest.mark.parametrize("kw", SETTINGS, ids=["plain", "proximal", "no_prox", "clipped"])
def test_float64_equals_the_paper(kw):
    init, grads = make_problem(seed=0, steps=30)
    init = [t.double() for t in init]
    grads = [[g.double() for g in step] for step in grads]
    expected = reference_adan(init, grads, 1e-2, BETAS, 1e-8, **kw)
    for path in ("single", "foreach"):
        params = fresh(init)
        run(Adan(params, lr=1e-2, **kw, **PATHS[path]), params, grads)
        assert_rel_close(params, expected, 1e-13)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_float32_paths_match_the_paper(path):
    init, grads = make_problem(seed=1, steps=20)
    kw = dict(weight_decay=0.02, max_grad_norm=5.0)
    expected = reference_adan(init, grads, 1e-2, BETAS, 1e-8, **kw)
    params = fresh(init)
    opt = Adan(params, lr=1e-2, **kw, **PATHS[path])
    run(opt, params, grads)
    assert_rel_close(params, expected, 2e-5)
    assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_avg_sq", "exp_avg_diff",
                                         "neg_pre_grad"}


def test_c_kernel_computes_the_single_tensor_formula():
    from visdet_mmext.algorithms import adan
    assert_native_kernel_matches_single_path(
        adan, lambda ps, **kw: Adan(ps, lr=1e-2, weight_decay=0.02, **kw))


@pytest.mark.parametrize("foreach", [True, False])
def test_pytorch_optimizer_adan_computes_the_same_and_negates_p_grad_per_parameter(foreach):
    """docs/adopt_adan_soap.md: the same numbers (weight_decouple is no_prox), but its
    per-parameter path leaves p.grad negated after the step."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    init, grads = make_problem(seed=4, steps=10)
    init, grads = [t.double() for t in init], [[g.double() for g in s] for s in grads]
    ours = fresh(init)
    run(Adan(ours, lr=1e-2, weight_decay=0.02, fast=False), ours, grads)
    theirs = fresh(init)
    opt = pytorch_optimizer.Adan(theirs, lr=1e-2, weight_decay=0.02, foreach=foreach)
    run(opt, theirs, grads)
    assert_rel_close(theirs, ours, 1e-13)
    assert torch.equal(theirs[0].grad, -grads[-1][0] if not foreach else grads[-1][0])


def test_closure_sparse_and_validation():
    p = nn.Parameter(torch.ones(4))
    opt = Adan([p])
    assert opt.defaults["betas"] == BETAS and opt.defaults["eps"] == 1e-8
    assert opt.defaults["no_prox"] is False and opt.defaults["max_grad_norm"] == 0.0
    assert_closure_loss_returned(opt, p)
    assert_sparse_gradients_refused(Adan)
    with pytest.raises(ValueError, match="betas"):
        Adan([p], betas=(0.9, 0.99))


@pytest.mark.parametrize("kind", ["mlp", "conv_bn"])
def test_trains_toy_models(kind):
    model, x, y = toy_regression(kind)
    losses = regression_losses(model, x, y, Adan(model.parameters(), lr=1e-2))
    assert losses[-1] < 0.5 * losses[0]
