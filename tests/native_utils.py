"""Shared set-up of the native-optimizer tests: execution paths and a random problem."""
import pytest
import torch

from visdet_mmext.optim import fast_path

SHAPES = [(40, 24), (24,), (96,), (6, 5, 3, 2)]
PATHS = {
    "single": dict(fast=False, foreach=False),
    "foreach": dict(fast=False, foreach=True),
    "compiled": dict(fast=True),
}
needs_compile = pytest.mark.skipif(fast_path.strategy_for(torch.device("cpu")) is None,
                                   reason="torch.compile is unavailable or disabled")
ALL_PATHS = ["single", "foreach", pytest.param("compiled", marks=needs_compile)]


def make_problem(seed=0, steps=20, shapes=SHAPES):
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(steps)]
    return init, grads
