"""Deep availability checks for ``python -m visdet_mmext list`` and ``check``.

Import time registers optional packages lazily and trusts what it cannot see cheaply; here a
DeepSpeed name is resolved for real (DeepSpeed imported, its op looked up on this accelerator),
and ``take_one_step`` builds an optimizer through mmengine and steps it once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..catalog import CATALOG, adapters
from ..errors import NeedsCudaError
from .availability import AVAILABLE, IMPORT_ERROR, NEEDS_CUDA, Availability, qualified_name
from .lazy import resolve


def resolve_lazy(name: str, info: Availability, registered) -> Availability:
    """For a lazily registered DeepSpeed op, whether this accelerator has it (imports DeepSpeed).

    Other lazy names keep what registration found without importing their package.
    """
    spec = getattr(registered, "lazy_spec", None)
    if spec is None or spec.op_builder is None or info.status != AVAILABLE:
        return info
    try:
        cls = resolve(spec)
    except NeedsCudaError as error:
        return Availability(NEEDS_CUDA, error.reason, info.resolved, info.provider)
    except Exception as error:
        return Availability(IMPORT_ERROR, f"{type(error).__name__}: {error}", info.resolved,
                            info.provider)
    return Availability(AVAILABLE, "", qualified_name(cls), info.provider)


class _SparseModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(32, 8, sparse=True)

    def forward(self, tokens):
        return self.embedding(tokens).pow(2).mean()


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


class _Classifier(nn.Sequential):
    @property
    def logits_module(self) -> nn.Module:  # the interface SophiaG reads its logits through
        return self[-1]


def _toy_problem(sparse: bool):
    """A model and its loss: a sparse embedding for optimizers that step only sparse gradients,
    else a bias-free classifier (only matrices, for torch's Muon) that names its logits module
    (SophiaG reads it)."""
    torch.manual_seed(0)
    if sparse:
        model = _SparseModel()
        tokens = torch.randint(0, 32, (16,))
        return model, lambda: model(tokens)
    model = _Classifier(nn.Linear(8, 16, bias=False), nn.ReLU(), nn.Linear(16, 4, bias=False))
    inputs, targets = torch.randn(32, 8), torch.randint(0, 4, (32,))
    return model, lambda: nn.functional.cross_entropy(model(inputs), targets)


#: Steps ``take_one_step`` may take before the weights must have moved: SOAP's first step only
#: builds its preconditioner, and schedule-free RAdam holds still until its rectification starts.
MAX_STEPS = 8


def take_one_step(name: str) -> StepResult:
    """Build ``name`` through mmengine's build_optim_wrapper and step until the weights move."""
    from mmengine.optim import build_optim_wrapper
    spec = CATALOG.get(name)
    settings = dict(spec.example) if spec is not None else {}
    model, compute_loss = _toy_problem(spec is not None and spec.adapter is adapters.sparse_only)
    start = time.perf_counter()
    try:
        wrapper = build_optim_wrapper(model, dict(optimizer=dict(type=name, **settings)))
        before = [p.detach().clone() for p in model.parameters()]
        for steps in range(1, MAX_STEPS + 1):
            with wrapper.optim_context(model):  # as mmengine's train_step runs the forward
                loss = compute_loss()
            wrapper.update_params(loss)
            if any(not torch.equal(b, p) for b, p in zip(before, model.parameters())):
                detail = "parameters moved" + (f" (after {steps} steps)" if steps > 1 else "")
                return StepResult(name, True, time.perf_counter() - start, detail)
        return StepResult(name, False, time.perf_counter() - start,
                          f"parameters did not move in {MAX_STEPS} steps")
    except Exception as error:  # reported per optimizer; `check` goes on with the others
        return StepResult(name, False, time.perf_counter() - start, f"{type(error).__name__}: {error}")
