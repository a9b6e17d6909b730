"""Native ADOPT: the paper's algorithm in float64, every execution path, the C kernel,
and how pytorch-optimizer's ADOPT differs (docs/adopt_adan_soap.md)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from native_utils import (ALL_PATHS, PATHS, assert_closure_loss_returned,
                          assert_native_kernel_matches_single_path, assert_rel_close,
                          assert_sparse_gradients_refused, fresh, make_problem,
                          regression_losses, run, toy_regression)
from oracles import reference_adopt
from visdet_mmext.algorithms.adopt import ADOPT

pytestmark = pytest.mark.usefixtures("compile_small_tensors")

SETTINGS = [dict(weight_decay=0.0, decouple=False), dict(weight_decay=0.1, decouple=False),
            dict(weight_decay=0.1, decouple=True)]


@pytest.mark.parametrize("kw", SETTINGS, ids=["no-decay", "l2", "decoupled"])
def test_float64_equals_the_paper(kw):
    init, grads = make_problem(seed=0, steps=30)
    init = [t.double() for t in init]
    grads = [[g.double() for g in step] for step in grads]
    expected = reference_adopt(init, grads, 1e-2, (0.9, 0.999), 1e-6, **kw)
    for path in ("single", "foreach"):
        params = fresh(init)
        run(ADOPT(params, lr=1e-2, betas=(0.9, 0.999), **kw, **PATHS[path]), params, grads)
        assert_rel_close(params, expected, 1e-13)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_float32_paths_match_the_paper(path):
    init, grads = make_problem(seed=1, steps=20)
    grads[0][0][:3] = 1e-12  # tiny first gradients: the clip bounds the next steps
    expected = reference_adopt(init, grads, 1e-2, (0.9, 0.999), 1e-6, 0.1, True)
    params = fresh(init)
    opt = ADOPT(params, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.1, decouple=True,
                **PATHS[path])
    run(opt, params, grads)
    assert_rel_close(params, expected, 2e-5)
    assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_avg_sq"}


def test_first_step_moves_nothing_and_clip_is_t_minus_one_to_the_quarter():
    p = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = ADOPT([p], lr=0.1, betas=(0.0, 0.5), weight_decay=0.5, decouple=True, fast=False)
    p.grad = torch.tensor([1e-4, 2.0])
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, -1.0]))  # no update, no decay
    p.grad = torch.tensor([1.0, 2.0])
    opt.step()
    # t = 2: clip (2 - 1)^0.25 = 1, so g / sqrt(v) = 1e4 becomes 1; decay 1 - 0.1 * 0.5
    torch.testing.assert_close(p.detach(), torch.tensor([0.95 - 0.1, -0.95 - 0.1]))


def test_no_clip_is_the_first_version():
    init, grads = make_problem(seed=2, steps=8)
    expected = reference_adopt(init, grads, 1e-2, (0.9, 0.999), 1e-6, 0.0, False,
                               clip_exponent=None)
    params = fresh(init)
    run(ADOPT(params, lr=1e-2, betas=(0.9, 0.999), clip_exponent=None), params, grads)
    assert_rel_close(params, expected, 2e-5)


def test_c_kernel_computes_the_single_tensor_formula():
    from visdet_mmext.algorithms import adopt
    assert_native_kernel_matches_single_path(
        adopt, lambda ps, **kw: ADOPT(ps, lr=1e-2, weight_decay=0.1, **kw))


def test_pytorch_optimizer_adopt_differs_only_by_its_clip_and_first_step_decay():
    """docs/adopt_adan_soap.md: pytorch-optimizer clips at t^0.25 and decays on the first step;
    with those two put right (a clip function of t - 1, no decay) it computes this ADOPT."""
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    init, grads = make_problem(seed=4, steps=10)
    init, grads = [t.double() for t in init], [[g.double() for g in s] for s in grads]
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6)
    ours = fresh(init)
    run(ADOPT(ours, **kw, fast=False), ours, grads)
    aligned = fresh(init)
    run(pytorch_optimizer.ADOPT(aligned, **kw, clip_lambda=lambda t: (t - 1) ** 0.25),
        aligned, grads)
    assert_rel_close(aligned, ours, 1e-13)
    theirs = fresh(init)
    run(pytorch_optimizer.ADOPT(theirs, **kw, weight_decay=0.1, weight_decouple=True),
        theirs, grads)
    paper = reference_adopt(init, grads, kw["lr"], kw["betas"], kw["eps"], 0.1, True)
    gap = max(((a.detach() - e).abs().max() / e.abs().max()).item()
              for a, e in zip(theirs, paper))
    assert gap > 1e-4


def test_closure_sparse_and_validation():
    p = nn.Parameter(torch.ones(4))
    opt = ADOPT([p])
    assert opt.defaults["betas"] == (0.9, 0.9999) and opt.defaults["eps"] == 1e-6
    assert opt.defaults["clip_exponent"] == 0.25 and opt.defaults["decouple"] is False
    assert_closure_loss_returned(opt, p)
    assert_sparse_gradients_refused(ADOPT)
    with pytest.raises(ValueError, match="clip_exponent"):
        ADOPT([p], clip_exponent=-1.0)


@pytest.mark.parametrize("kind", ["mlp", "conv_bn"])
def test_trains_toy_models(kind):
    model, x, y = toy_regression(kind)
    losses = regression_losses(model, x, y, ADOPT(model.parameters(), lr=1e-2))
    assert losses[-1] < 0.5 * losses[0]
