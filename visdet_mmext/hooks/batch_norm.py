"""Recompute BatchNorm running statistics for the weights now in the model.

Running statistics are averages over past training forwards, taken at past weights. When the
weights change all at once (a schedule-free optimizer's averaged weights), they are recomputed:
reset, then the exact average over ``batches`` forwards in train mode without gradients (momentum
None), then each module's momentum and batch count are restored.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _forward(model: nn.Module, batch) -> None:
    data = model.data_preprocessor(batch, True)  # mmengine's BaseModel: as in a training step
    if isinstance(data, dict):
        model(**data, mode="tensor")
    else:
        model(*data, mode="tensor")


def recompute_batch_norm(model: nn.Module, batches, count: int) -> int:
    """Recompute every tracked BatchNorm of ``model`` from ``count`` of ``batches``; returns how
    many batches were used (0 when the model has no BatchNorm)."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms or count <= 0:
        return 0
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts the same
    used = 0
    model.train()
    try:
        with torch.no_grad():
            for batch in itertools.islice(batches, count):
                _forward(model, batch)
                used += 1
    finally:
        model.train(training)
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
    return used
