"""Multi-tensor CPU kernels written in C, built once per machine with the system C compiler.

For the cheapest update (Lion) the code torch.compile generates for CPU costs a quarter more
than the memory traffic: it reloads every hyperparameter from memory in every vector iteration
and needs one guarded Python call per few tensors. A C kernel takes every tensor of a step in
one call, splits them into blocks over torch's OpenMP threads, and computes the eager formula
operation by operation (``-ffp-contract=off``: no fused multiply-adds), so its results equal the
single-tensor path bit for bit.

Built with ``$CC`` (default ``cc``) ``-O3 -march=native -fopenmp`` in well under a second and
cached under ``$VISDET_MMEXT_CACHE`` (default ``~/.cache/visdet-mmext``)``/cpu_kernels/<key>/``,
the key hashing the source, the flags, the compiler and the CPU. Where no compiler works the
kernel is unavailable, the reason is logged once and the caller takes another path.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..cache import cache_root

logger = logging.getLogger(__name__)
progress = logging.getLogger("visdet_mmext.progress")

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared")

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
