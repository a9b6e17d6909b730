"""Multi-tensor CPU kernels written in C, built once per machine with the system C compiler.

For memory-bound updates the code torch.compile generates for CPU costs a quarter more than the
memory traffic: it reloads every hyperparameter from memory in every vector iteration and needs
one guarded Python call per few tensors. A C kernel takes every tensor of a step in one call,
splits them into blocks over torch's OpenMP threads, and computes the eager formula operation by
operation (``-ffp-contract=off``: no fused multiply-adds), so its element-wise results equal the
single-tensor path bit for bit.

Every kernel has one signature, ``int NAME_step(KERNEL_ARGS)`` (:data:`PRELUDE` defines it, the
shared block table and ``each_block``, which runs an element-wise kernel's per-block function on
every block of every tensor over the threads; :func:`elementwise` writes that ``NAME_step``): ``lists[k * count + t]`` is tensor ``k`` (param,
grad, states... in the order of the work item) of tensor set ``t``; ``hp[t * width + i]`` its
hyperparameters; nonzero return: out of memory.

Built with ``$CC`` (default ``cc``) ``-O3 -march=native -fopenmp`` in well under a second and
cached under ``$VISDET_MMEXT_CACHE`` (default ``~/.cache/visdet-mmext``)``/cpu_kernels/<key>/``,
the key hashing the source, the flags, the compiler and the CPU. Where no compiler works the
kernel is unavailable, the reason is logged once and the caller takes another path.
"""
from __future__ import annotations

import array
import ctypes
import functools
import hashlib
import itertools
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..cache import cache_root
from .shards import PLAIN_TYPES

logger = logging.getLogger(__name__)
progress = logging.getLogger("visdet_mmext.progress")

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp", "-fPIC",
         "-shared")

_loaded: dict[str, ctypes.CDLL | None] = {}


def kernel_root() -> Path:
    return cache_root() / "cpu_kernels"


def _cpu() -> str:
    """What -march=native compiles for: the CPU model and its feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> tuple[str, str]:
    """The C compiler's path and version line (part of the cache key)."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise FileNotFoundError(f"no C compiler {os.environ.get('CC', 'cc')!r} on PATH")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    return compiler, version


def _build(name: str, source: str) -> Path:
    compiler, version = _compiler()
    key = hashlib.sha256("\0".join((source, " ".join(FLAGS), version, _cpu())).encode())
    directory = kernel_root() / f"{name}-{key.hexdigest()[:16]}"
    library = directory / f"{name}.so"
    if library.is_file():
        return library
    progress.info("visdet_mmext: building the native CPU %s kernel (C, once per machine, under "
                  "a second) into %s", name, directory)
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        c_file, built = Path(scratch) / f"{name}.c", Path(scratch) / f"{name}.so"
        c_file.write_text(source)
        result = subprocess.run([compiler, *FLAGS, str(c_file), "-o", str(built)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise OSError(f"{Path(compiler).name} failed: {result.stderr.strip()[-500:]}")
        os.replace(built, library)  # atomic: processes building at once each finish whole
    progress.info("visdet_mmext: built the native CPU %s kernel in %.1f s", name,
                  time.perf_counter() - started)
    return library


def library(name: str, source: str) -> ctypes.CDLL | None:
    """The compiled ``source`` (built on first use), or None where it cannot be built."""
    if name not in _loaded:
        try:
            _loaded[name] = ctypes.CDLL(str(_build(name, source)))
        except (OSError, subprocess.CalledProcessError) as error:
            _loaded[name] = None
            logger.warning("visdet_mmext: native CPU %s kernel unavailable (%s); using the "
                           "torch.compile path", name, error)
    return _loaded[name]


#: Shared by every kernel: the blocks (of at most ``block`` elements) of all tensors, as pairs
#: (tensor, first element); NULL when out of memory.
PRELUDE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static int64_t *make_blocks(int64_t count, const int64_t *numel, int64_t block, int64_t *total)
{
    int64_t blocks = 0;
    for (int64_t t = 0; t < count; ++t) blocks += (numel[t] + block - 1) / block;
    int64_t *owner = malloc(sizeof(int64_t) * 2 * (blocks ? blocks : 1));
    if (!owner) return NULL;
    for (int64_t t = 0, b = 0; t < count; ++t)
        for (int64_t start = 0; start < numel[t]; start += block, ++b) {
            owner[2 * b] = t;
            owner[2 * b + 1] = start;
        }
    *total = blocks;
    return owner;
}

#define KERNEL_ARGS int64_t count, float *const *lists, const int64_t *numel, const double *hp, \
                    int64_t block, int threads

typedef void (*block_fn)(int64_t count, float *const *lists, const double *hp, int64_t t,
                         int64_t start, int64_t end);

static int each_block(KERNEL_ARGS, block_fn fn)
{
    int64_t blocks;
    int64_t *owner = make_blocks(count, numel, block, &blocks);
    if (!owner) return 1;
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t t = owner[2 * b], start = owner[2 * b + 1];
        fn(count, lists, hp, t, start, start + block < numel[t] ? start + block : numel[t]);
    }
    free(owner);
    return 0;
}
"""

#: Elements per block: a few arrays of 128 KiB, a unit of work for one thread.
BLOCK = 1 << 15


_F32 = torch.float32
_STRIDED = torch.strided


def _pointers(tensors: tuple) -> list[int] | None:
    """The data pointers of plain contiguous fp32 CPU tensors of one shape, else None (the other
    paths take them: DTensors, subclasses, a state loaded for another parameter). One loop, one
    look at each tensor (``shards.plain`` inlined): a step runs it for every tensor."""
    shape = tensors[0].shape
    pointers = []
    for t in tensors:
        if type(t) not in PLAIN_TYPES or t.layout != _STRIDED or t.is_nested or t.dtype != _F32 \
                or not t.is_cpu or not t.is_contiguous() or t.shape != shape:
            return None
        pointers.append(t.data_ptr())
    return pointers


def step(name: str, source: str, width: int, works: list) -> list | None:
    """Run kernel ``name`` (``PRELUDE + source`` defines ``<name>_step``) on the work items
    ``(tensors, hp)`` whose tensors are plain contiguous fp32 CPU tensors (``hp``: ``width``
    floats); return the others, or None where the kernel cannot be built."""
    lib = library(name, PRELUDE + source)
    if lib is None:
        return None
    mine, rest, rows = [], [], []
    for work in works:
        row = _pointers(work[0])
        if row is None:
            rest.append(work)
        else:
            mine.append(work)
            rows.append(row)
    if mine:
        count = len(mine)
        # arrays built in C (array.array) and shared with ctypes: a ctypes constructor call with
        # one argument per pointer costs more than the kernel on small models
        pointers = array.array("q", itertools.chain.from_iterable(zip(*rows)))
        numel = array.array("q", [w[0][0].numel() for w in mine])
        hp = array.array("d", itertools.chain.from_iterable(w[1] for w in mine))
        if len(hp) != width * count:
            raise ValueError(f"{name}: {width} hyperparameters per tensor expected")
        status = getattr(lib, f"{name}_step")(
            ctypes.c_int64(count), (ctypes.c_void_p * len(pointers)).from_buffer(pointers),
            (ctypes.c_int64 * count).from_buffer(numel),
            (ctypes.c_double * len(hp)).from_buffer(hp),
            ctypes.c_int64(BLOCK), ctypes.c_int(torch.get_num_threads()))
        if status != 0:
            raise MemoryError(f"the CPU {name} kernel could not allocate its block table")
    return rest


def elementwise(name: str, source: str, width: int) -> Callable[[list], list | None]:
    """The ``native`` of a dispatch ``Kernel`` whose C ``source`` defines ``NAME_block(count,
    lists, hp, t, start, end)``, the update of elements ``[start, end)`` of tensor set ``t``."""
    step_source = (f"{source}\nint {name}_step(KERNEL_ARGS)\n{{\n    return each_block(count, lists, "
                   f"numel, hp, block, threads, {name}_block);\n}}\n")
    return functools.partial(step, name, step_source, width)
