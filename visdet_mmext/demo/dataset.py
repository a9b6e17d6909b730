"""A dataset drawn in code: small RGB images of shapes, the same for a given seed.

No download and no files: ``DemoShapes`` draws circles, squares, triangles, crosses (and,
if asked, diamonds and rings) with random colours, positions, sizes and rotations on a
random background, adds Gaussian noise, and splits the result into train and val. The
whole set is drawn once per process with numpy, in blocks of 512 images (about a second of CPU
for the demo's 21,000), and shared by the splits. Each item is
``dict(inputs=float tensor C×H×W, data_samples=int label)``, which mmengine's
``default_collate`` batches for the demo models.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

#: Shapes that can be drawn, in label order when ``classes`` is not given.
SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
DEFAULT_CLASSES = SHAPES[:4]
#: Normalisation applied to pixel values in [0, 1].
MEAN, STD = 0.5, 0.25


def _mask(shape: str, u: np.ndarray, v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Inside-test of one shape in rotated, centred coordinates (u, v) for each image."""
    r = radius[:, None, None]
    if shape == "circle":
        return u ** 2 + v ** 2 <= r ** 2
    if shape == "ring":
        d2 = u ** 2 + v ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if shape == "cross":
        arm = 0.3 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    if shape == "triangle":  # equilateral, vertices at distance r from the centre
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            angle = np.pi / 2 + k * 2 * np.pi / 3
            inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5 * r
        return inside
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def draw_shapes(num: int, classes=DEFAULT_CLASSES, *, size: int = 32, seed: int = 0,
                noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """``num`` images (uint8, N×3×size×size) and labels (int64), balanced and shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num) % len(classes)).astype(np.int64)
    radius = rng.uniform(0.22, 0.38, num) * size
    centre = rng.uniform(0.5, 1.5, (num, 2)) * (size / 2)
    centre = np.clip(centre, radius[:, None] * 0.8, size - radius[:, None] * 0.8)
    angle = rng.uniform(0, 2 * np.pi, num)
    background = rng.uniform(0, 1, (num, 3))
    foreground = rng.uniform(0, 1, (num, 3))
    # keep enough contrast between shape and background
    low = np.linalg.norm(foreground - background, axis=1) < 0.5
    foreground[low] = (background[low] + 0.5) % 1.0

    out = np.empty((num, 3, size, size), dtype=np.uint8)
    # in blocks: the float temporaries of the whole set would take ~1 GB (20k images); the noise
    # is drawn block after block from the same stream, so the images do not depend on the block
    for start in range(0, num, _BLOCK):
        rows = slice(start, min(num, start + _BLOCK))
        out[rows] = _draw_block(classes, size, noise, rng, labels[rows], radius[rows],
                                centre[rows], angle[rows], background[rows], foreground[rows])
    return out, labels


#: Images drawn per block (~8 MB of float temporaries each).
_BLOCK = 512


def _draw_block(classes, size, noise, rng, labels, radius, centre, angle, background,
                foreground) -> np.ndarray:
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - centre[:, 0, None, None]
    dy = grid[None, :, None] - centre[:, 1, None, None]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    dx, dy = dx.astype(np.float32), dy.astype(np.float32)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos

    mask = np.zeros((len(labels), size, size), dtype=bool)
    for label, shape in enumerate(classes):
        rows = labels == label
        mask[rows] = _mask(shape, u[rows], v[rows], radius[rows])
    image = np.where(mask[:, None], foreground.astype(np.float32)[:, :, None, None],
                     background.astype(np.float32)[:, :, None, None])
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise)
    np.clip(image, 0, 1, out=image)
    image *= 255
    image += 0.5
    return image.astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _drawn(num: int, classes: tuple, size: int, seed: int, noise: float):
    images, labels = draw_shapes(num, classes, size=size, seed=seed, noise=noise)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@DATASETS.register_module()
class DemoShapes(Dataset):
    """Shapes drawn from ``seed``; ``split`` picks the first ``num_train`` or the next ``num_val``.

    Args:
        split: ``'train'`` or ``'val'``.
        num_train, num_val: sizes of the two splits (both are drawn, whichever is asked for).
        classes: shape names, in label order (see ``SHAPES``).
        size: image side in pixels.
        seed: the random seed of the whole set; the same seed gives the same images.
        noise: standard deviation of the added Gaussian noise (pixel values in [0, 1]).
    """

    def __init__(self, split: str = "train", num_train: int = 20000, num_val: int = 1000,
                 classes=DEFAULT_CLASSES, size: int = 32, seed: int = 0, noise: float = 0.08):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        classes = tuple(classes)
        unknown = sorted(set(classes) - set(SHAPES))
        if unknown:
            raise ValueError(f"unknown shapes {unknown}; choose from {SHAPES}")
        images, labels = _drawn(num_train + num_val, classes, size, seed, noise)
        part = slice(0, num_train) if split == "train" else slice(num_train, num_train + num_val)
        self.images, self.labels = images[part], labels[part]
        self.split = split
        self.metainfo = dict(classes=classes, size=size, seed=seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.images[index].astype(np.float32))
        image = (image / 255.0 - MEAN) / STD
        return dict(inputs=image, data_samples=int(self.labels[index]))
