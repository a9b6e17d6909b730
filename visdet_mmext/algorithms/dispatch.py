"""How a native optimizer step is executed: single-tensor, foreach, native CPU, or compiled.

Optimizer steps are memory bound: the eager and foreach paths read and write every tensor once per
elementary op, a fused kernel once. Fused kernels come from ``torch.compile`` applied to the same
per-tensor Python function the single-tensor path runs eagerly, so every path computes one
formula; on CPU a ``Kernel`` may also carry a C multi-tensor kernel (``native_cpu``) that must
equal the eager function bit for bit.

Compiled strategies: ``chunked`` on CPU (a few tensors per compiled call on flattened views,
dynamic shapes, hyperparameters as a tensor: no model or lr schedule recompiles it; small tensors
stay on the foreach path), ``grouped`` on CUDA (every tensor of the step in one static graph).
With ``fast=None`` a CPU step compiles only when its tensors pay the compilation back within
``PAYBACK_STEPS`` steps; ``fast=True`` always compiles. Compilations are announced in the log
with their expected duration. ``VISDET_MMEXT_COMPILE`` = ``off`` | ``chunked`` | ``grouped``
overrides the choice; when compiling fails the step runs eagerly and says why once.

Only plain dense tensors reach the C and compiled kernels (``shards``): an element-by-element
kernel (``elementwise=True``) steps FSDP2's DTensors as their local shards; other DTensors and
tensor subclasses take the eager paths, where their own operators apply.

fp16/bf16 tensors are stepped through fp32 copies and rounded once when written back (what a
compiled kernel does inside), so no path overflows or rounds where another does not.
Measurements behind the constants: docs/benchmarks.md.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import shards

logger = logging.getLogger(__name__)
#: User-facing progress (compilations): forwarded to mmengine's current logger by the package.
progress = logging.getLogger("visdet_mmext.progress")

#: Below this many elements a compiled call's Python overhead costs more than it saves (CPU).
MIN_NUMEL = 1 << 16
#: Default tensors per compiled call on CPU: fewer Python calls, against a longer first
#: compilation (which grows with the chunk). Cheap kernels gain most from large chunks.
CHUNK = 8

#: fast=None compiles (CPU) only where the compilation is paid back within this many steps
#: (a short fine-tune; the compile time assumed is a cold cache's).
PAYBACK_STEPS = 500

SINGLE, FOREACH, COMPILED = "single", "foreach", "compiled"
CHUNKED, GROUPED = "chunked", "grouped"
_ENV = "VISDET_MMEXT_COMPILE"


def _foreach_default(device: torch.device) -> bool:
    # torch's rule: foreach kernels exist for accelerators; on CPU they are plain loops.
    from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices
    return device.type in _get_foreach_kernels_supported_devices()


def _forced() -> str:
    return os.environ.get(_ENV, "").strip().lower()


def strategy_for(device: torch.device) -> str | None:
    """The compiled strategy for ``device``, or None when compiling should not be tried."""
    forced = _forced()
    if forced in ("off", "0", "false", "no"):
        return None
    if forced in (CHUNKED, GROUPED):
        return forced
    if not hasattr(torch, "compile"):
        return None
    return GROUPED if device.type == "cuda" else CHUNKED if device.type == "cpu" else None


def choose_path(fast: bool | None, foreach: bool | None, device: torch.device) -> tuple[str, str]:
    """Resolve the ``fast``/``foreach`` constructor flags for one step on ``device``.

    Returns ``(main, rest)``: the path for tensors the compiled kernel takes, and the path for the
    others (small or non-contiguous ones). Without compilation both are the same.
    """
    if foreach is None:
        # The automatic choice is the fastest path: foreach (on CPU it is no slower than a loop).
        # With fast=False, ``foreach`` keeps torch's meaning: foreach kernels on accelerators only.
        use_foreach = True if fast is not False else _foreach_default(device)
    else:
        use_foreach = foreach
    rest = FOREACH if use_foreach else SINGLE
    # Inside a user's torch.compile of the whole step, let dynamo trace the plain ops.
    if torch.compiler.is_compiling() or fast is False:
        return rest, rest
    if strategy_for(device) is None or _BROKEN:
        if fast:
            _log_once("visdet_mmext: fast=True but no compiled path on %s (%s); using %s",
                      device.type, _BROKEN or "torch.compile unsupported or disabled", rest)
        return rest, rest
    return COMPILED, rest


_LOGGED: set[str] = set()
_BROKEN: str = ""  # why compiling failed in this process ("" while it has not failed)


def _log_once(msg: str, *args: Any, level: int = logging.WARNING) -> None:
    text = msg % args
    if text not in _LOGGED:
        _LOGGED.add(text)
        logger.log(level, text)


def _disable(reason: BaseException) -> None:
    global _BROKEN
    _BROKEN = f"{type(reason).__name__}: {str(reason).splitlines()[0] if str(reason) else ''}"
    _log_once("visdet_mmext: torch.compile fast path disabled for this process, using the eager "
              "paths (%s)", _BROKEN)


def compilable(*tensors: Tensor) -> bool:
    """Flattened views of these tensors line up element by element."""
    return all(t.is_contiguous() for t in tensors)


def _renamed(fn: Callable, name: str) -> Callable:
    # dynamo keeps its compile cache (and recompile limit) per code object: give each algorithm's
    # wrapper its own, so Lion, LAMB and AdamW never compete for entries.
    names = {"co_name": name}
    if hasattr(fn.__code__, "co_qualname"):  # Python >= 3.11
        names["co_qualname"] = name
    code = fn.__code__.replace(**names)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _no_duck_shapes():
    # Equal sizes would otherwise share a symbol, and a later chunk with other sizes recompile.
    try:
        from torch.fx.experimental import _config
        return _config.patch(use_duck_shape=False)
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


class Kernel:
    """A per-tensor update ``fn(param, grad, *states, hp)`` and its compiled forms.

    ``fn`` mutates its tensors in place and reads scalars as ``hp[i]``, where ``hp`` is a tuple of
    floats (eager) or a 1-D tensor (compiled), so one body of code serves every path.

    ``elementwise``: each output element depends only on the same element of the inputs, so the
    update of a shard is the shard of the update (FSDP2's DTensors are stepped as local shards).

    ``compile_s``/``cached_s`` (the first step's compilation on CPU with inductor's cache cold /
    warm) and ``saved_ns`` (foreach minus compiled time per element and step) are measured on
    2 CPU cores (docs/benchmarks.md); they set ``min_elements`` and the announced estimate.
    """

    def __init__(self, fn: Callable[..., None], name: str, *, compile_s: float, cached_s: float,
                 saved_ns: float, chunk: int = CHUNK, elementwise: bool = False,
                 native: Callable[[list], list | None] | None = None):
        self.fn = fn
        self.name = name
        self.elementwise = elementwise
        self.chunk = chunk
        self.compile_s = compile_s
        self.cached_s = cached_s
        #: Elements (of tensors the compiled kernel takes) from which fast=None compiles on CPU.
        self.min_elements = int(compile_s / (saved_ns * 1e-9 * PAYBACK_STEPS))
        #: A CPU multi-tensor kernel (``native_cpu``) used instead of the compiled one: takes the
        #: work items it can, returns the rest (None: not available here).
        self.native = native
        self._chunked: Callable[..., None] | None = None
        self._grouped: Callable[..., None] | None = None
        self._scratch: dict[tuple, list[tuple[Tensor, ...]]] = {}
        self._compiled_for: set[tuple] = set()

    def _call(self, compiled: Callable[..., None], key: tuple, *args) -> None:
        """Call a compiled form; its first call for ``key`` (strategy, dtypes) compiles, which
        is announced with an estimate, then timed."""
        if key in self._compiled_for:
            compiled(*args)
            return
        progress.info("visdet_mmext: compiling the fused %s kernel (torch.compile, %s, once per "
                      "process): about %.0f s on 2 CPU cores, %.0f s when inductor's cache holds "
                      "it from an earlier run; fast=False skips it", self.name, key[0],
                      self.compile_s, self.cached_s)
        started = time.perf_counter()
        compiled(*args)
        self._compiled_for.add(key)
        progress.info("visdet_mmext: %s kernel compiled in %.1f s", self.name,
                      time.perf_counter() - started)

    def _compiled_chunked(self) -> Callable[..., None]:
        if self._chunked is None:
            fn, size = self.fn, self.chunk

            def chunked(tensor_lists: list[list[Tensor]], hp: Tensor) -> None:
                for i in range(size):
                    fn(*(ts[i] for ts in tensor_lists), hp[i])

            self._chunked = torch.compile(_renamed(chunked, f"{fn.__name__}_chunked"),
                                          dynamic=True, fullgraph=True)
        return self._chunked

    def _compiled_grouped(self) -> Callable[..., None]:
        if self._grouped is None:
            fn = self.fn

            def grouped(tensor_lists: list[list[Tensor]], hp: Tensor) -> None:
                for i in range(len(tensor_lists[0])):
                    fn(*(ts[i] for ts in tensor_lists), hp[i])

            self._grouped = torch.compile(_renamed(grouped, f"{fn.__name__}_grouped"),
                                          dynamic=False, fullgraph=True)
        return self._grouped

    def _padding(self, like: Sequence[Tensor], count: int) -> list[tuple[Tensor, ...]]:
        """Distinct 2-element scratch tensor sets that fill a short chunk (their update is
        thrown away; distinct, because dynamo guards against repeated inputs)."""
        key = tuple((t.dtype, t.device) for t in like)
        pool = self._scratch.setdefault(key, [])
        while len(pool) < count:
            pool.append(tuple(torch.zeros(2, dtype=t.dtype, device=t.device) for t in like))
        return pool[:count]

    def run_chunked(self, sets: list[tuple[Tensor, ...]], hps: list[tuple]) -> None:
        """Tensor sets (param, grad, states...) of one dtype signature, ``chunk`` per call."""
        size = self.chunk
        for start in range(0, len(sets), size):
            # flattened, then detached: a plain alias without ``_base``, on which dynamo would
            # otherwise guard (and recompile for every base shape)
            chunk = [tuple(t.view(-1).detach() for t in ts) for ts in sets[start:start + size]]
            rows = list(hps[start:start + size])
            real = len(chunk)
            pad = size - real
            if pad:
                chunk += self._padding(chunk[0], pad)
                rows += [rows[0]] * pad
            if not _BROKEN:
                try:
                    with _no_duck_shapes():
                        self._call(self._compiled_chunked(),
                                   (CHUNKED, *(t.dtype for t in chunk[0])),
                                   [list(ts) for ts in zip(*chunk)], hp_tensor(rows))
                    continue
                except Exception as exc:  # noqa: BLE001 - any compiler failure means "eager"
                    _disable(exc)
            for tensors, row in zip(chunk[:real], rows):
                self.fn(*tensors, row)

    def run_grouped(self, tensor_lists: list[list[Tensor]], hp: Tensor) -> None:
        """Every tensor set of the step in one compiled call; ``hp`` has one row per set."""
        if not _BROKEN:
            try:
                self._call(self._compiled_grouped(),
                           (GROUPED, *(ts[0].dtype for ts in tensor_lists)), tensor_lists, hp)
                return
            except Exception as exc:  # noqa: BLE001
                _disable(exc)
        for i in range(len(tensor_lists[0])):
            self.fn(*(ts[i] for ts in tensor_lists), hp[i])


def pays_back(kernel: Kernel, batches) -> bool:
    """Whether compiling ``kernel`` for these work items pays back within PAYBACK_STEPS steps."""
    elements = sum(w[0][0].numel() for items in batches for w in items)
    if elements >= kernel.min_elements:
        return True
    _log_once("visdet_mmext: %s stays on the foreach path: %d elements repay its ~%.0f s "
              "compilation only after %d steps (fast=True compiles anyway)", kernel.name,
              elements, kernel.compile_s, PAYBACK_STEPS * kernel.min_elements // max(elements, 1),
              level=logging.DEBUG)
    return False


def hp_tensor(values: Sequence, device: torch.device | None = None) -> Tensor:
    """Hyperparameters for a compiled call: float64 on CPU (bias corrections stay exact),
    float32 on accelerators. A tuple gives a 1-D tensor, a list of tuples one row per tensor."""
    if device is None or device.type == "cpu":
        return torch.tensor(values, dtype=torch.float64)
    return torch.tensor(values, dtype=torch.float32).to(device, non_blocking=True)


def closure_loss(closure: Callable[[], Any] | None):
    """``closure()`` evaluated with gradients on (torch's ``step(closure)`` convention), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_grad(name: str, p: Tensor, maximize: bool = False) -> Tensor:
    """The gradient of ``p`` (negated to maximize), refusing what the kernels cannot take."""
    grad = p.grad
    if grad.is_sparse:
        raise RuntimeError(f"{name} does not support sparse gradients")
    if torch.is_complex(p):
        raise RuntimeError(f"{name} does not support complex parameters")
    return torch.neg(grad) if maximize else grad


LOW_PRECISION = (torch.float16, torch.bfloat16)


def _in_fp32(works: list) -> tuple[list, list]:
    """Work items with fp32 copies of low-precision tensors, and (original, copy) pairs to write
    back (parameters and states; the gradient is only read)."""
    converted, write_back = [], []
    for tensors, hp in works:
        for t in tensors:
            if t.dtype in LOW_PRECISION:
                break
        else:
            converted.append((tensors, hp))
            continue
        copies = tuple(t.float() for t in tensors)
        converted.append((copies, hp))
        write_back += [(t, c) for i, (t, c) in enumerate(zip(tensors, copies)) if i != 1 and t is not c]
    return converted, write_back


ForeachFn = Callable[..., None]  # foreach_fn(tensor_lists, hp_tuple) for one bucket


def run(kernel: Kernel, foreach_fn: ForeachFn, works: list[tuple[tuple[Tensor, ...], tuple]],
        fast: bool | None, foreach: bool | None) -> None:
    """Apply one algorithm to every ``(tensors, hp)`` work item along the chosen path.

    ``tensors`` is ``(param, grad, *states)``; ``hp`` a tuple of floats (the same values for the
    eager, foreach and compiled paths, so they compute the same formula).
    """
    if not works:
        return
    if kernel.elementwise:
        works = [shards.local_work(w) for w in works]
    works, write_back = _in_fp32(works)
    _run(kernel, foreach_fn, works, fast, foreach)
    for original, copy in write_back:
        original.copy_(copy)


def _addressable(tensors: tuple[Tensor, ...]) -> bool:
    shape = tensors[0].shape
    return all(shards.plain(t) and t.shape == shape for t in tensors)


def _run(kernel: Kernel, foreach_fn: ForeachFn, works: list, fast: bool | None,
         foreach: bool | None) -> None:
    device = works[0][0][0].device
    main, rest = choose_path(fast, foreach, device)
    if main == COMPILED and device.type == "cpu" and kernel.native is not None \
            and _forced() not in (CHUNKED, GROUPED):
        # it checks what it takes itself (one look at each tensor: a step's overhead)
        native = kernel.native(works)
        if native is not None:
            _eager(kernel, foreach_fn, rest, native)
            return
    # the kernels address raw memory: DTensors, other subclasses and mismatched shapes (a state
    # loaded for another parameter) stay on the eager paths, whose operators check them
    fits = [_addressable(w[0]) for w in works]
    held_back = [w for w, ok in zip(works, fits) if not ok]
    works = [w for w, ok in zip(works, fits) if ok]
    leftover = works
    if works and main == COMPILED:
        leftover = []
        if strategy_for(device) == GROUPED:
            mine = [w for w in works if w[0][0].device == device]
            leftover = [w for w in works if w[0][0].device != device]
            lists = [list(ts) for ts in zip(*(w[0] for w in mine))]
            kernel.run_grouped(lists, hp_tensor([w[1] for w in mine], device))
        else:
            by_dtypes: dict[tuple, list] = {}
            for tensors, hp in works:
                if tensors[0].numel() >= MIN_NUMEL and compilable(*tensors):
                    by_dtypes.setdefault(tuple((t.dtype, t.device) for t in tensors), []).append(
                        (tensors, hp))
                else:
                    leftover.append((tensors, hp))
            if fast is None and _forced() != CHUNKED and not pays_back(kernel, by_dtypes.values()):
                leftover = works
                by_dtypes = {}
            for items in by_dtypes.values():
                kernel.run_chunked([w[0] for w in items], [w[1] for w in items])
    _eager(kernel, foreach_fn, rest, leftover + held_back)


def _eager(kernel: Kernel, foreach_fn: ForeachFn, path: str, works: list) -> None:
    if path == SINGLE:
        for tensors, hp in works:
            kernel.fn(*tensors, hp)
        return
    buckets: dict[tuple, list[list[Tensor]]] = {}
    for tensors, hp in works:
        key = (type(tensors[0]), tensors[0].device, tensors[0].dtype, hp)
        lists = buckets.setdefault(key, [[] for _ in tensors])
        for dst, t in zip(lists, tensors):
            dst.append(t)
    for (_, _, _, hp), lists in buckets.items():
        foreach_fn(lists, hp)
