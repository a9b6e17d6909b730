"""A train dataloader that yields no batch, said before it is waited on.

An empty dataset, or ``drop_last=True`` with fewer samples than ``batch_size``, gives a loader of
length 0: mmengine's iteration loop then waits forever for a first batch (its infinite iterator
restarts the empty loader again and again), and ``param_groups --trace`` would have nothing to
trace. Both ask :func:`no_batch_reason` first.
"""
from __future__ import annotations


def no_batch_reason(loader) -> str | None:
    """Why ``loader`` yields no batch (read from its length), or None. A loader without a
    length (an iterable dataset) is not judged here."""
    try:
        if len(loader):
            return None
    except TypeError:
        return None
    dataset = getattr(loader, "dataset", None)
    try:
        size = len(dataset)
    except TypeError:
        size = None
    if size == 0:
        return f"its dataset ({type(dataset).__name__}) holds no samples"
    batch_size = getattr(loader, "batch_size", None)
    return (f"with drop_last=True, the {size} samples of its dataset make no whole batch of "
            f"batch_size={batch_size} in each process")
