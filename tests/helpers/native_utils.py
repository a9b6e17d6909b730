"""Shared set-up of the native-optimizer tests: execution paths and a random problem."""
import pytest
import torch

from visdet_mmext.algorithms import dispatch

SHAPES = [(40, 24), (24,), (96,), (6, 5, 3, 2)]
PATHS = {
    "single": dict(fast=False, foreach=False),
    "foreach": dict(fast=False, foreach=True),
    "compiled": dict(fast=True),
}
needs_compile = pytest.mark.skipif(dispatch.strategy_for(torch.device("cpu")) is None,
                                   reason="torch.compile is unavailable or disabled")
ALL_PATHS = ["single", "foreach", pytest.param("compiled", marks=needs_compile)]


@pytest.fixture
def fresh_compiler(monkeypatch):
    """Each test compiles from scratch (no recompile limit carried over), with fp32 matmuls in
    full precision (no TF32), on the path the device picks by itself. A compile failure fails its
    own test only: the process-wide fallback to eager it sets is undone for the next test."""
    torch._dynamo.reset()
    monkeypatch.delenv("VISDET_MMEXT_COMPILE", raising=False)
    monkeypatch.setattr(dispatch, "_BROKEN", "")
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(precision)
    assert not dispatch._BROKEN, f"the compiled path fell back to eager: {dispatch._BROKEN}"


def make_problem(seed=0, steps=20, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]
    return init, grads


def toy_regression(kind, conv_model=None, conv_batch=16):
    """(model, x, y): an MLP ("mlp") or a conv + BatchNorm net ("conv_bn") to regress."""
    from torch import nn
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
        x = torch.randn(64, 8)
        return model, x, x[:, :1] * 2 - x[:, 1:2]
    model = conv_model or nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    x = torch.randn(conv_batch, 3, 8, 8)
    return model, x, x.mean(dim=(1, 2, 3)).unsqueeze(1) * 3


def regression_losses(model, x, y, optimizer, steps=60):
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def assert_sparse_gradients_refused(optimizer_cls):
    emb = torch.nn.Embedding(5, 3, sparse=True)
    optimizer = optimizer_cls(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        optimizer.step()


def fresh(init):
    return [torch.nn.Parameter(t.clone()) for t in init]


def run(opt, params, grads):
    """Step ``opt`` once per entry of ``grads`` (a None gradient leaves that parameter out)."""
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        opt.step()
    return params


def assert_closure_loss_returned(optimizer, p):
    """``step(closure)`` evaluates the closure with gradients on and returns its loss."""
    def closure():
        optimizer.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    expected = float((p.detach() ** 2).sum())  # the loss before the step changes p
    assert optimizer.step(closure).item() == pytest.approx(expected)


def assert_rel_close(actual, expected, rtol):
    """Each tensor within ``rtol`` of the largest magnitude of its expected value."""
    for a, e in zip(actual, expected):
        scale = e.detach().double().abs().max().clamp(min=1e-12)
        err = ((a.detach().double() - e.detach().double()).abs().max() / scale).item()
        assert err <= rtol, err


def assert_native_kernel_matches_single_path(module, factory, steps=4):
    """``module._KERNEL``'s C kernel (every fp32 tensor of a step in one call) computes the
    single-tensor path's formula; a float64 tensor beside them takes the other path.

    Up to rounding: the kernel's square root is correctly rounded, torch's CPU one (a vector
    library's) is not always."""
    kernel = module._KERNEL
    init, grads = make_problem(seed=7, steps=steps, shapes=[(40, 24), (24,), (70_000,), (3, 5)])
    init.append(torch.randn(9, dtype=torch.float64))
    for step_grads in grads:
        step_grads.append(torch.randn(9, dtype=torch.float64))
    expected = fresh(init)
    run(factory(expected, **PATHS["single"]), expected, grads)
    calls = []
    native = kernel.native

    def counted(works):
        rest = native(works)
        calls.append((len(works), None if rest is None else len(rest)))
        return rest

    kernel.native = counted
    try:
        actual = fresh(init)
        run(factory(actual, fast=True), actual, grads)
    finally:
        kernel.native = native
    if calls and calls[0][1] is None:
        pytest.skip("no C compiler")
    assert calls == [(len(init), 1)] * steps  # the float64 tensor is left to the others
    assert_rel_close(actual, expected, 1e-6)
