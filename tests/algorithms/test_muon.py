"""Native hybrid Muon: torch.optim.Muon parity, the fp32 formula, routing, paths, mmengine."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from native_utils import (PATHS, ALL_PATHS, assert_sparse_gradients_refused, fresh,
                          regression_losses, run, toy_regression)
from oracles import reference_muon
from visdet_mmext.algorithms.muon import Muon, lr_scale, matrix_shape
from visdet_mmext.algorithms.muon.newton_schulz import orthogonalize, orthogonalize_many

# Two matrices share a shape (batched), one is tall (transposed), one wide.
MATRICES = [(32, 16), (16, 48), (32, 16), (24, 24)]
# Conv kernels: flattened 8 x 36 and 32 x 8 (tall: the 'original' scale is 2, not kh/kw = 1).
CONVS = [(8, 4, 3, 3), (32, 2, 2, 2), (8, 4, 3, 3)]

pytestmark = pytest.mark.usefixtures("compile_small_tensors")


def make_problem(shapes, seed=0, steps=20, scale=0.1):
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) * scale for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]
    return init, grads


def max_rel_err(actual, expected):
    return max(((a.detach().double() - e.detach().double()).abs().max()
                / e.detach().double().abs().max()).item() for a, e in zip(actual, expected))


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("adjust_lr", ["original", "match_rms_adamw"])
def test_bf16_mode_matches_torch_muon(path, adjust_lr):
    init, grads = make_problem(MATRICES)
    kw = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1, ns_steps=5)
    expected = run(torch.optim.Muon(fresh_ := fresh(init), adjust_lr_fn=adjust_lr, **kw), fresh_,
                   grads)
    params = fresh(init)
    opt = Muon(params, adjust_lr=adjust_lr, ns_dtype=torch.bfloat16, **kw, **PATHS[path])
    assert all(g["use_muon"] for g in opt.param_groups)
    assert max_rel_err(run(opt, params, grads), expected) <= 1e-2  # bf16 tolerance
    assert set(opt.state[params[0]]) == {"momentum_buffer"}


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("nesterov, adjust_lr", [(True, "original"), (False, "match_rms_adamw")])
def test_fp32_path_matches_fp32_formula(path, nesterov, adjust_lr):
    init, grads = make_problem(MATRICES + CONVS, seed=1)
    kw = dict(lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=0.05, ns_steps=5,
              adjust_lr=adjust_lr)
    expected = reference_muon(init, grads, **kw)
    params = fresh(init)
    opt = Muon(params, **kw, **PATHS[path])  # ns_dtype None on CPU: fp32
    assert max_rel_err(run(opt, params, grads), expected) <= 1e-5


def test_shape_scale_on_flattened_matrix():
    conv = torch.empty(32, 2, 2, 2)
    assert matrix_shape(conv) == (32, 8)
    assert lr_scale("original", *matrix_shape(conv)) == pytest.approx(2.0)
    assert lr_scale("match_rms_adamw", *matrix_shape(conv)) == pytest.approx(0.2 * math.sqrt(32))
    assert lr_scale("original", 16, 48) == 1.0
    with pytest.raises(ValueError, match="original.*match_rms_adamw"):
        lr_scale("spectral", 2, 2)


def test_batched_and_padded_newton_schulz_equal_per_matrix():
    gen = torch.Generator().manual_seed(2)
    mats = [torch.randn(s, generator=gen) for s in [(24, 40), (40, 24), (8, 8), (24, 40), (3, 17)]]
    expected = [orthogonalize(m, 5, torch.float32) for m in mats]
    for pad in (False, True):
        got = orthogonalize_many(mats, 5, torch.float32, pad=pad)
        for g, e, m in zip(got, expected, mats):
            assert g.shape == m.shape
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    # the polar factor's singular values land in ~[0.7, 1.2]
    svals = torch.linalg.svdvals(expected[0])
    assert 0.6 < svals.min() and svals.max() < 1.3


@pytest.mark.parametrize("path", ALL_PATHS)
def test_adamw_side_matches_torch_adamw(path):
    shapes = [(40,), (7,), (96,)]
    init, grads = make_problem(shapes, seed=3, scale=1.0)
    expected = run(torch.optim.AdamW(ref := fresh(init), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                                     weight_decay=0.1), ref, grads)
    params = fresh(init)
    opt = Muon(params, lr=1e-3, adjust_lr="match_rms_adamw", weight_decay=0.1, **PATHS[path])
    assert [g["use_muon"] for g in opt.param_groups] == [False]
    assert max_rel_err(run(opt, params, grads), expected) <= 1e-6
    assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_avg_sq"}


def test_plain_params_are_split_with_adamw_defaults():
    w, conv, b = nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(2, 3, 3, 3)), \
        nn.Parameter(torch.zeros(4))
    opt = Muon([w, b, conv], lr=0.02, weight_decay=0.01)
    muon_group, adamw_group = opt.param_groups
    assert muon_group["use_muon"] and muon_group["params"] == [w, conv]
    assert not adamw_group["use_muon"] and adamw_group["params"] == [b]
    assert adamw_group["lr"] == pytest.approx(3e-4)  # 0.015 * lr
    assert adamw_group["betas"] == (0.9, 0.95) and adamw_group["eps"] == 1e-8
    assert adamw_group["weight_decay"] == 0.01
    for key in ("lr", "momentum", "betas"):
        assert key in opt.defaults
    opt = Muon([w, b], lr=1e-3, adjust_lr="match_rms_adamw", adamw_weight_decay=0.0)
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.param_groups[1]["weight_decay"] == 0.0
    assert Muon([b], adamw_lr=5e-4).param_groups[0]["lr"] == 5e-4


def test_dict_groups_split_and_multipliers_carry_to_the_adamw_half():
    w, b = nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(4))
    opt = Muon([dict(params=[w, b], lr=0.01, weight_decay=0.2, betas=(0.8, 0.9), lr_mult=0.5)],
               lr=0.02, weight_decay=0.1, adamw_lr=1e-3, adamw_weight_decay=0.05)
    muon_group, adamw_group = opt.param_groups
    assert muon_group["lr"] == 0.01 and muon_group["lr_mult"] == 0.5
    # the group's lr/weight decay are Muon-side: the AdamW half gets its own values x the same factor
    assert adamw_group["lr"] == pytest.approx(5e-4) and adamw_group["weight_decay"] == pytest.approx(0.1)
    assert adamw_group["betas"] == (0.8, 0.9) and adamw_group["lr_mult"] == 0.5


def test_named_parameters_are_split_with_their_names():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt = Muon(model.named_parameters())
    assert [g["param_names"] for g in opt.param_groups] == [["0.weight"],
                                                            ["0.bias", "1.weight", "1.bias"]]
    assert opt.param_groups[0]["params"] == [model[0].weight]
    w, b = nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(4))
    opt = Muon([dict(params=[b, w], param_names=["b", "w"])])
    assert [g["param_names"] for g in opt.param_groups] == [["w"], ["b"]]


def test_groups_with_use_muon_are_taken_as_is():
    w, b = nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(4))
    groups = [dict(params=[w], use_muon=True, lr=0.05, param_names=["fc.weight"], decay_mult=0.0),
              dict(params=[b], use_muon=False, lr=1e-3, param_names=["fc.bias"])]
    opt = Muon(groups, lr=0.02)
    assert [g["params"] for g in opt.param_groups] == [[w], [b]]
    assert opt.param_groups[0]["param_names"] == ["fc.weight"]
    assert opt.param_groups[0]["decay_mult"] == 0.0 and opt.param_groups[0]["lr"] == 0.05
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.param_groups[1]["betas"] == (0.9, 0.95)
    assert all("lr" in g for g in opt.param_groups)


def test_errors():
    b = nn.Parameter(torch.zeros(7, ))
    with pytest.raises(ValueError, match=r"\(7,\)"):
        Muon([dict(params=[b], use_muon=True)])
    with pytest.raises(ValueError, match=r"\(7,\) \(bias\)"):
        Muon([dict(params=[("bias", b)], use_muon=True)])
    with pytest.raises(ValueError, match="original.*match_rms_adamw"):
        Muon([nn.Parameter(torch.zeros(3, 3))], adjust_lr="spectral")
    assert_sparse_gradients_refused(Muon)


def test_closure_and_missing_grads():
    w = nn.Parameter(torch.eye(3))
    b = nn.Parameter(torch.ones(3))
    opt = Muon([w, b])
    assert opt.step() is None
    torch.testing.assert_close(w.detach(), torch.eye(3))

    def closure():
        opt.zero_grad()
        loss = (w.sum() - 1) ** 2
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(4.0)
    assert not torch.equal(w.detach(), torch.eye(3))
    torch.testing.assert_close(b.detach(), torch.ones(3))  # no gradient: untouched


@pytest.mark.parametrize("path", ALL_PATHS)
def test_paths_agree_with_per_param_groups_and_missing_grads(path):
    shapes = MATRICES + CONVS + [(16,), (24,)]
    init, grads = make_problem(shapes, seed=4, steps=6)
    for step_grads in grads[::2]:
        step_grads[0] = None

    def train(**kw):
        params = fresh(init)
        # one group per parameter, as mmengine's paramwise constructor makes them
        groups = [dict(params=[p], use_muon=p.ndim >= 2, lr=0.02 if p.ndim >= 2 else 1e-3,
                       momentum=0.9 if i % 2 else 0.95) for i, p in enumerate(params)]
        return run(Muon(groups, weight_decay=0.01, **kw), params, grads)

    assert max_rel_err(train(**PATHS[path]), train(**PATHS["single"])) <= 1e-5


def test_padded_fast_path_matches_single(monkeypatch):
    """The CUDA fast path (small matrices of mixed shapes in zero-padded batches), run on CPU."""
    from visdet_mmext.algorithms.muon import optimizer as muon
    monkeypatch.setattr(muon, "PAD_DEVICE_TYPES", ("cpu",))
    calls = []

    def spy(matrices, steps, dtype, pad=False):
        calls.append((len(matrices), pad))
        return orthogonalize_many(matrices, steps, dtype, pad=pad)

    monkeypatch.setattr(muon, "orthogonalize_many", spy)
    init, grads = make_problem(MATRICES + CONVS, seed=6, steps=4)
    expected = run(Muon(ref := fresh(init), **PATHS["single"]), ref, grads)
    params = fresh(init)
    assert max_rel_err(run(Muon(params, fast=True), params, grads), expected) <= 1e-5
    assert calls == [(len(init), True)] * len(grads)  # every matrix in one padded call


@pytest.mark.slow
def test_grouped_compiled_adamw_side_matches(monkeypatch):
    """The CUDA strategy (one compiled call per step) for the AdamW side, run on CPU."""
    monkeypatch.setenv("VISDET_MMEXT_COMPILE", "grouped")
    init, grads = make_problem([(40,), (24,), (6, 4)], seed=7, steps=4, scale=1.0)
    groups = lambda ps: [dict(params=ps[:2], use_muon=False), dict(params=ps[2:], use_muon=True)]
    expected = run(Muon(groups(ref := fresh(init)), **PATHS["single"]), ref, grads)
    params = fresh(init)
    assert max_rel_err(run(Muon(groups(params), fast=True), params, grads), expected) <= 1e-6


def test_state_dict_round_trip_and_cross_path_load():
    shapes = MATRICES + [(16,)]
    init, grads = make_problem(shapes, seed=5, steps=8)
    params_a = fresh(init)
    opt_a = Muon(params_a, weight_decay=0.01, **PATHS["single"])
    run(opt_a, params_a, grads[:4])
    state = copy.deepcopy(opt_a.state_dict())
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    params_c = [nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = Muon(params_b, weight_decay=0.01, **PATHS["single"])
    opt_b.load_state_dict(copy.deepcopy(state))
    opt_c = Muon(params_c, weight_decay=0.01)  # automatic (fast) path
    opt_c.load_state_dict(copy.deepcopy(state))
    for opt, params in ((opt_a, params_a), (opt_b, params_b), (opt_c, params_c)):
        run(opt, params, grads[4:])
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)
    assert max_rel_err(params_c, params_a) <= 1e-5


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1))


def test_trains_conv_net_through_mmengine_without_configuration():
    """``optimizer=dict(type='Muon')`` with mmengine's default constructor: no groups given."""
    from mmengine.optim import build_optim_wrapper
    model = conv_net()
    wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type=Muon)))
    groups = wrapper.optimizer.param_groups
    assert [g["use_muon"] for g in groups] == [True, False]
    assert {p.ndim for p in groups[0]["params"]} == {2, 4}
    x = torch.randn(32, 3, 8, 8)
    y = x[:, 0].mean(dim=(1, 2)).unsqueeze(1) * 4
    losses = []
    for _ in range(40):
        loss = nn.functional.mse_loss(model(x), y)
        wrapper.update_params(loss)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_mmengine_schedulers_keep_group_ratios_and_schedule_momentum():
    from mmengine.optim import CosineAnnealingMomentum, LinearLR
    model = conv_net()
    opt = Muon(model.parameters(), lr=0.02)
    lr_sched = LinearLR(opt, start_factor=0.5, by_epoch=False, begin=0, end=4)
    mom_sched = CosineAnnealingMomentum(opt, T_max=4, eta_min=0.85, by_epoch=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.02 * 0.015 * 0.5)
    for _ in range(4):
        opt.step()
        lr_sched.step()
        mom_sched.step()
    assert opt.param_groups[0]["lr"] / opt.param_groups[1]["lr"] == pytest.approx(1 / 0.015)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)
    assert opt.param_groups[1]["betas"] == (0.9, 0.95)  # AdamW's beta1 is not scheduled


@pytest.mark.parametrize("kind", ["mlp", "conv_bn"])
def test_trains_toy_models(kind):
    model, x, y = toy_regression(kind, conv_model=conv_net(), conv_batch=32)
    opt = Muon(model.parameters(), lr=0.02)
    losses = regression_losses(model, x, y, opt)
    assert losses[-1] < 0.5 * losses[0]


def test_cpu_batches_only_small_matrices(monkeypatch):
    """Same-shaped matrices share a batched GEMM on CPU only below BATCH_MAX_NUMEL elements
    (bigger ones ran slower batched); the results do not depend on it."""
    from visdet_mmext.algorithms.muon import optimizer as muon
    calls = []

    def spy(matrices, steps, dtype, pad=False):
        calls.append(sorted(tuple(m.shape) for m in matrices))
        return orthogonalize_many(matrices, steps, dtype, pad=pad)

    monkeypatch.setattr(muon, "orthogonalize_many", spy)
    big, small = (256, muon.BATCH_MAX_NUMEL // 256), (16, 16)
    init, grads = make_problem([big, small, big, small], seed=8, steps=1)
    expected = run(Muon(ref := fresh(init), **PATHS["single"]), ref, grads)
    params = fresh(init)
    assert max_rel_err(run(Muon(params, fast=False, foreach=True), params, grads), expected) <= 1e-5
    assert sorted(calls) == sorted([[big], [big], [small, small]])


def test_conv_kernel_lr_scale_reads_the_flattened_matrix():
    """docs/routing.md: an expanding conv (32 x 2·2·2 flattened) is scaled by sqrt(32/8) = 2;
    Keller Jordan's formula, sqrt(max(1, kh/kw)) from the 4-D shape, would give 1."""
    kernel = nn.Parameter(torch.zeros(32, 2, 2, 2))
    kernel.grad = torch.randn(32, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    Muon([kernel], lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0, fast=False).step()
    ortho = orthogonalize(kernel.grad.reshape(32, 8), 5, torch.float32)
    scale = (-kernel.detach().reshape(32, 8) / (0.1 * ortho)).median().item()
    keller = math.sqrt(max(1, kernel.shape[-2] / kernel.shape[-1]))
    assert scale == pytest.approx(2.0, rel=1e-4) and keller == 1.0
