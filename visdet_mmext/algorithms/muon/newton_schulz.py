"""Quintic Newton-Schulz orthogonalisation for Muon, one matrix or many at once.

For ``X = U S V^T`` it returns roughly ``U S' V^T`` with ``S'`` in about [0.7, 1.2]: the
coefficients (3.4445, -4.7750, 2.0315) trade exact convergence for a steep slope at zero, so five
iterations suffice. Each iteration is ``A = X X^T; X <- a X + (b A + c A^2) X`` on the wide
orientation (rows <= cols), which keeps the Gram matrix the small one.

``orthogonalize_many`` gives every matrix the same result as ``orthogonalize`` but stacks matrices
of one (oriented) shape so their products run as batched GEMMs; with ``pad=True`` small matrices of
different shapes are zero-padded into shared batches, which is exact (zero rows and columns stay
zero through the iteration and add nothing to the norm) and trades FLOPs for fewer launches on GPUs.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7
#: Padding only pays where launches, not FLOPs, dominate: matrices up to this many elements.
PAD_MAX_NUMEL = 1 << 21


def newton_schulz(x: Tensor, steps: int, eps: float = NS_EPS) -> Tensor:
    """Iterate on ``x`` of shape (m, n) or (batch, m, n), m <= n, in ``x``'s dtype (new tensor)."""
    a, b, c = NS_COEFFICIENTS
    norm = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    x = x / norm.clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    mm_add = torch.addmm if x.ndim == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        poly = mm_add(gram, gram, gram, beta=b, alpha=c)
        x = mm_add(x, poly, x, beta=a)
    return x


def orthogonalize(matrix: Tensor, steps: int, dtype: torch.dtype) -> Tensor:
    """One 2-D matrix, computed in ``dtype``; the result has ``matrix``'s shape."""
    x = matrix.to(dtype)
    if x.size(0) > x.size(1):
        return newton_schulz(x.mT, steps).mT
    return newton_schulz(x, steps)


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def orthogonalize_many(matrices: Sequence[Tensor], steps: int, dtype: torch.dtype,
                       pad: bool = False) -> list[Tensor]:
    """``[orthogonalize(m, steps, dtype) for m in matrices]`` with batched products."""
    buckets: dict[tuple, list[int]] = {}
    for i, m in enumerate(matrices):
        rows, cols = sorted(m.shape)
        if pad and rows * cols <= PAD_MAX_NUMEL:
            rows, cols = _pow2(rows), _pow2(cols)
        buckets.setdefault((m.device, rows, cols), []).append(i)
    out: list[Tensor] = [None] * len(matrices)  # type: ignore[list-item]
    for (device, rows, cols), members in buckets.items():
        if len(members) == 1 and sorted(matrices[members[0]].shape) == [rows, cols]:
            out[members[0]] = orthogonalize(matrices[members[0]], steps, dtype)
            continue
        exact = all(sorted(matrices[i].shape) == [rows, cols] for i in members)
        batch = (torch.empty if exact else torch.zeros)(len(members), rows, cols, dtype=dtype,
                                                        device=device)
        for j, i in enumerate(members):
            m = matrices[i]
            wide = m.mT if m.size(0) > m.size(1) else m
            batch[j, :wide.size(0), :wide.size(1)].copy_(wide)
        result = newton_schulz(batch, steps)
        del batch
        for j, i in enumerate(members):
            m = matrices[i]
            if m.size(0) > m.size(1):
                out[i] = result[j, :m.size(1), :m.size(0)].mT
            else:
                out[i] = result[j, :m.size(0), :m.size(1)]
    return out
