#!/usr/bin/env python
"""How far bf16 Newton-Schulz lands from fp32, per matrix and in zero-padded batches: the numbers
behind the CUDA test's bound (docs/gpu.md, "Tolerances").

    python tools/ns_bf16_error.py --seeds 100 [--device cuda]

For each shape: the worst error of bf16 per matrix against fp32 (max |difference| / max |fp32|),
the worst of the padded batch, and the worst ratio padded / max(per-matrix, 8 bf16 roundings).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from visdet_mmext.algorithms.muon.newton_schulz import orthogonalize, orthogonalize_many  # noqa: E402

#: the CUDA test's matrices and two more (a small odd one, a square one)
SHAPES = [(24, 40), (40, 24), (8, 8), (24, 40), (3, 17), (64, 576), (256, 64), (5, 7), (30, 30)]
BF16_U = 2.0 ** -9


def rel_err(actual, expected) -> float:
    return ((actual.double() - expected.double()).abs().max()
            / expected.double().abs().max()).item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    worst: dict[tuple, list[float]] = {shape: [0.0, 0.0, 0.0] for shape in SHAPES}
    for seed in range(args.seeds):
        gen = torch.Generator(device=device).manual_seed(seed)
        mats = [torch.randn(s, generator=gen, device=device) for s in SHAPES]
        padded = orthogonalize_many(mats, 5, torch.bfloat16, pad=True)
        for m, got in zip(mats, padded):
            want = orthogonalize(m, 5, torch.float32)
            alone = rel_err(orthogonalize(m, 5, torch.bfloat16), want)
            row = worst[tuple(m.shape)]
            pad_err = rel_err(got, want)
            row[:] = max(row[0], alone), max(row[1], pad_err), \
                max(row[2], pad_err / max(alone, 8 * BF16_U))
    print(f"{args.seeds} seeds on {device}")
    print(f"{'shape':<12}{'bf16 per matrix':>16}{'bf16 padded':>13}{'ratio':>8}")
    for shape, (alone, padded, ratio) in worst.items():
        print(f"{str(shape):<12}{alone:>16.4f}{padded:>13.4f}{ratio:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
