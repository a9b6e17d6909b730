"""SophiaG against the paper's Algorithm 3 written independently in float64 (numpy), and its
Gauss-Newton-Bartlett estimate against the Gauss-Newton diagonal it estimates without bias."""
import numpy as np
import pytest
import torch
from torch import nn

from visdet_mmext.algorithms.sophia import SophiaG
from visdet_mmext.optim.wrappers import SophiaOptimWrapper

pytestmark = pytest.mark.usefixtures("one_thread")

LR, BETAS, RHO, WD, EPS, K, SAMPLES = 0.05, (0.9, 0.95), 0.5, 0.1, 1e-12, 3, 16
A = np.random.default_rng(0).standard_normal((6, 6))
A = A @ A.T / 6 + np.eye(6)  # a convex quadratic: grad = A @ w - b
B = np.random.default_rng(1).standard_normal(6)
C = np.random.default_rng(2).standard_normal(6) * 0.3  # "sampled-label gradient" = C * w


def _gradients(w):
    return A @ w - B, C * w


def _paper(w, steps):
    """Algorithm 3 of arXiv 2305.14342, per coordinate, with h_hat = B * g_hat**2."""
    m, h, path = np.zeros_like(w), np.zeros_like(w), []
    for t in range(1, steps + 1):
        g, g_hat = _gradients(w)
        m = BETAS[0] * m + (1 - BETAS[0]) * g
        if t % K == 1:
            h = BETAS[1] * h + (1 - BETAS[1]) * SAMPLES * g_hat ** 2
        w = w - LR * WD * w
        w = w - LR * np.clip(m / np.maximum(RHO * h, EPS), -1, 1)
        path.append(w)
    return path


def test_matches_the_papers_algorithm_in_float64():
    w0 = np.linspace(-2, 2, 6)
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    optimizer = SophiaG([p], lr=LR, betas=BETAS, rho=RHO, weight_decay=WD, eps=EPS, update_period=K)
    expected = _paper(w0, 20)
    for step, want in enumerate(expected):
        g, g_hat = _gradients(p.detach().numpy())
        p.grad = torch.tensor(g)
        if optimizer.hessian_due():
            optimizer.update_hessian([torch.tensor(g_hat)], SAMPLES)
        optimizer.step()
        np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-12, atol=1e-14,
                                   err_msg=f"step {step + 1}")
    clipped = np.abs(np.diff(np.array(expected), axis=0)).max(axis=0)
    assert (clipped > LR * 0.99).any() and (clipped < LR * 0.9).any()  # both regimes exercised


def test_refuses_to_step_without_a_refresh():
    p = nn.Parameter(torch.ones(3))
    optimizer = SophiaG([p], update_period=2)
    p.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="SophiaOptimWrapper"):
        optimizer.step()
    optimizer.update_hessian([torch.ones(3)], 4)
    optimizer.step()
    optimizer.step()  # step 2: not due
    with pytest.raises(RuntimeError, match="before step 3"):
        optimizer.step()


def test_gauss_newton_bartlett_is_unbiased_for_the_gauss_newton_diagonal():
    """Softmax regression: E[B * g_hat**2] = mean over inputs of x_j**2 * p_c * (1 - p_c)."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(4, 3, bias=False)).double()
    optimizer = SophiaG(model.parameters(), betas=(0.9, 0.0))  # beta2 0: h is the last estimate
    wrapper = SophiaOptimWrapper(optimizer, logits_module="0")
    draws, total = 600, torch.zeros(3, 4, dtype=torch.float64)
    for seed in range(draws):
        wrapper.seed = seed
        with wrapper.optim_context(model):
            model(inputs)
        wrapper._gauss_newton_bartlett()
        total += optimizer.state[model[0].weight]["hessian"]
    x = inputs.numpy()
    probabilities = torch.softmax(model(inputs), dim=1).detach().numpy()
    expected = np.einsum("ic,ij->cj", probabilities * (1 - probabilities), x ** 2) / len(x)
    np.testing.assert_allclose((total / draws).numpy(), expected, rtol=0.2)  # Monte-Carlo: 0.13
