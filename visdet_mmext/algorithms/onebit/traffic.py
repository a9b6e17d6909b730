"""A gloo process group that counts what each rank hands to each collective (measurement aid).

``torch.distributed.init_process_group("counting_gloo", ...)`` after
:func:`register_counting_backend` gives a default group that runs every collective on a real
``ProcessGroupGloo`` and counts, per collective kind, the calls, the payload (bytes of the
tensors this rank passes in) and the bytes this rank sends to the others under the usual
algorithms: ring all-reduce ``2 (p-1)/p B``, all-to-all ``(p-1)/p B``, all-gather ``(p-1) B``,
gather ``B`` (non-root), broadcast ``(p-1) B`` (root). DDP's gradient all-reduce, the 1-bit
optimizers' collectives and mmengine's own ones all pass through it. ``record()`` also keeps a
copy of every payload (what went on the wire), to check message contents.

``limit_bandwidth(bits_per_second)`` turns it into a slower network: each rank has one link,
collectives use it one after the other, and a collective completes no earlier than its bytes
sent could cross it (``sent * 8 / bandwidth`` after the link is free; the loopback transfer runs
meanwhile, so the slower of the two counts). Latency is not modelled. Completion is delayed, not
the call, so DDP still overlaps its all-reduce with the backward pass as on a real network.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import torch.distributed as dist
from torch._C._distributed_c10d import _create_work_from_future

BACKEND = "counting_gloo"


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class CountingProcessGroup(dist.ProcessGroup):
    def __init__(self, inner, rank: int, size: int):
        super().__init__(rank, size)
        self.inner = inner
        self.counts: Counter = Counter()
        self.recorded: list[tuple[str, list]] | None = None
        self.bits_per_second: float | None = None
        self._link_free = 0.0  # perf_counter time at which this rank's link is idle again
        self._link = threading.Lock()

    def limit_bandwidth(self, bits_per_second: float | None) -> None:
        """Simulate a link of this speed from now on (None: as fast as loopback)."""
        self.bits_per_second = bits_per_second
        self._link_free = 0.0

    def record(self) -> list[tuple[str, list]]:
        """From now on keep ``(kind, [payload tensors])`` of every collective; returns the list."""
        self.recorded = []
        return self.recorded

    def _count(self, kind: str, tensors, sent_per_byte: float) -> float:
        """Count a collective; returns the bytes this rank sends."""
        payload = _nbytes(tensors)
        self.counts[f"{kind}.calls"] += 1
        self.counts[f"{kind}.payload"] += payload
        self.counts[f"{kind}.sent"] += int(sent_per_byte * payload)
        if self.recorded is not None:
            self.recorded.append((kind, [t.detach().clone() for t in tensors]))
        return sent_per_byte * payload

    def _throttled(self, work, sent: float):
        """``work``, completing when ``sent`` bytes have crossed the simulated link."""
        if self.bits_per_second is None or sent == 0:
            return work
        with self._link:
            start = max(time.perf_counter(), self._link_free)
            self._link_free = done = start + sent * 8 / self.bits_per_second

        def after_the_link(future):
            delay = done - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            return future.value()

        return _create_work_from_future(work.get_future().then(after_the_link))

    def totals(self) -> dict[str, int]:
        """Bytes so far: ``payload`` and ``sent`` summed over kinds, plus every per-kind count."""
        totals = dict(self.counts)
        for what in ("payload", "sent", "calls"):
            totals[what] = sum(v for k, v in self.counts.items() if k.endswith("." + what))
        return totals

    def _run(self, method: str, *args):
        opts = args[-1]
        return getattr(self.inner, method)(*(args[:-1] if opts is None else args))

    # collectives DDP calls from C++ and torch.distributed calls from Python
    def allreduce(self, tensors, opts=None):
        p = self.size()
        sent = self._count("all_reduce", tensors, 2 * (p - 1) / p)
        return self._throttled(self._run("allreduce", tensors, opts), sent)

    def broadcast(self, tensors, opts=None):
        root = opts.rootRank if opts is not None else 0
        sent = self._count("broadcast", tensors, self.size() - 1 if self.rank() == root else 0)
        return self._throttled(self._run("broadcast", tensors, opts), sent)

    def allgather(self, outputs, inputs, opts=None):
        sent = self._count("all_gather", inputs, self.size() - 1)
        return self._throttled(self._run("allgather", outputs, inputs, opts), sent)

    def all_gather_single(self, output, input, opts=None):
        sent = self._count("all_gather", [input], self.size() - 1)
        return self._throttled(self._run("_allgather_base", output, input, opts), sent)

    def _allgather_base(self, output, input, opts=None):
        return self.all_gather_single(output, input, opts)

    def all_to_all_single(self, output, input, output_splits, input_splits, opts=None):
        p = self.size()
        sent = self._count("all_to_all", [input], (p - 1) / p)
        return self._throttled(
            self._run("alltoall_base", output, input, output_splits, input_splits, opts), sent)

    def alltoall_base(self, output, input, output_splits, input_splits, opts=None):
        return self.all_to_all_single(output, input, output_splits, input_splits, opts)

    def gather(self, outputs, inputs, opts=None):
        root = opts.rootRank if opts is not None else 0
        sent = self._count("gather", inputs, 0 if self.rank() == root else 1)
        return self._throttled(self._run("gather", outputs, inputs, opts), sent)

    def barrier(self, opts=None):
        return self._run("barrier", opts)


def _create(store, rank: int, size: int, timeout) -> CountingProcessGroup:
    return CountingProcessGroup(dist.ProcessGroupGloo(store, rank, size, timeout), rank, size)


def register_counting_backend() -> str:
    """Make ``init_process_group("counting_gloo")`` available (idempotent); returns the name."""
    if BACKEND.upper() not in dist.Backend._plugins:
        dist.Backend.register_backend(BACKEND, _create, devices=["cpu"])
    return BACKEND


def counting_group() -> CountingProcessGroup:
    """The default group, which must have been created with the counting backend."""
    group = dist.group.WORLD
    if not isinstance(group, CountingProcessGroup):
        raise RuntimeError(f"the default process group is {type(group).__name__}; create it with "
                           f"init_process_group({BACKEND!r}) after register_counting_backend()")
    return group
