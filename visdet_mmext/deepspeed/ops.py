"""DeepSpeed's JIT-built ops: where they are built, whether they are, and how long a build takes.

DeepSpeed compiles an op's C++ sources on its first use (``OpBuilder.jit_load`` ->
``torch.utils.cpp_extension.load``) into ``TORCH_EXTENSIONS_DIR``; later runs load the build in
about a second. Where that variable is unset this package sets it, before DeepSpeed's first build,
to one folder: ``torch_extensions`` in the package's cache (``visdet_mmext.cache``), so every run
on the machine, inside or outside ``make``, reuses the same builds.

A build compiles its sources in parallel, one per core (ninja), so it takes
``ceil(sources / cores)`` waves, each slowed by whatever else keeps the cores busy (the load
average). The seconds of one wave start at ``DEFAULT_WAVE_S`` and are replaced by what the
builds on this machine measured (kept in ``build_times.json`` beside them).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_root

ENV = "TORCH_EXTENSIONS_DIR"
#: Seconds one wave of compilation takes on an idle core before anything was measured here
#: (docs/benchmarks.md: 40-60 s per op, one or two sources, on an idle 2-core machine).
DEFAULT_WAVE_S = 60.0
TIMES_FILE = "build_times.json"


def default_root() -> Path:
    return cache_root() / "torch_extensions"


def extensions_root() -> Path:
    """Where torch builds (and looks for) JIT extensions in this process."""
    return Path(os.environ.get(ENV) or default_root())


def use_default_root() -> bool:
    """Point ``TORCH_EXTENSIONS_DIR`` at the package's folder if it is unset; True if it was."""
    if os.environ.get(ENV):
        return False
    os.environ[ENV] = str(default_root())
    return True


#: Compiler flags DeepSpeed passes that this package's builds leave out (compat's
#: ``deepspeed_build_without_debug_info``): ``-g`` makes a build a third slower and its library
#: 50 times larger, for debug information nothing loads.
DROPPED_FLAGS = ("-g",)


def sources(builder) -> list[str]:
    """The C++ files ``builder`` (a DeepSpeed ``OpBuilder``) compiles, as its ``jit_load`` names
    them."""
    return [os.path.abspath(builder.deepspeed_src_path(path)) for path in builder.sources()]


def is_built(op_name: str, compiled: list[str]) -> bool:
    """Whether loading ``op_name`` here compiles nothing: its library exists, newer than these
    ``compiled`` files (:func:`sources`), which its ``build.ninja`` compiled against this torch's
    headers with this package's flags. ninja compiles again when paths, flags or sources change,
    as for a build left by another virtual environment (a fresh clone) or with DeepSpeed's own
    flags."""
    folder = extensions_root() / op_name
    try:
        build = (folder / "build.ninja").read_text()
        built_at = (folder / f"{op_name}.so").stat().st_mtime
        newest_source = max((os.stat(path).st_mtime for path in compiled), default=0.0)
    except OSError:
        return False
    from torch.utils.cpp_extension import include_paths
    flags = next((line.split()[2:] for line in build.splitlines() if line.startswith("cflags")), [])
    return (all(f"compile {path}" in build for path in compiled) and include_paths()[0] in build
            and not set(DROPPED_FLAGS) & set(flags) and newest_source <= built_at)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _slowdown(jobs: int) -> float:
    """How much slower each of ``jobs`` parallel compilations runs than on an idle machine."""
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1.0, (busy + jobs) / cores())


def _waves(sources: int) -> int:
    return max(1, math.ceil(sources / cores()))


def _recorded() -> dict[str, float]:
    try:
        return json.loads((extensions_root() / TIMES_FILE).read_text())
    except (OSError, ValueError):  # nothing measured yet (or a damaged file): the default holds
        return {}


def wave_seconds(op_name: str) -> float:
    """Seconds of one idle wave: this op's last measured build, else the others', else the default."""
    recorded = _recorded()
    if op_name in recorded:
        return recorded[op_name]
    return statistics.median(recorded.values()) if recorded else DEFAULT_WAVE_S


def build_estimate(op_name: str, sources: int) -> float:
    """Seconds a build of ``op_name`` with ``sources`` C++ files should take here, now."""
    return wave_seconds(op_name) * _waves(sources) * _slowdown(min(sources, cores()))


def record_build(op_name: str, sources: int, seconds: float, slowdown: float) -> None:
    """Keep what a finished build measured, as idle seconds per wave, for later estimates."""
    recorded = _recorded()
    recorded[op_name] = round(seconds / _waves(sources) / slowdown, 1)
    path = extensions_root() / TIMES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # whole or not at all: ranks and test workers build ops side by side and read this file
    partial = path.with_name(f"{TIMES_FILE}.{os.getpid()}")
    partial.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    os.replace(partial, path)


def about(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 90 else f"~{seconds / 60:.0f} min"


@contextmanager
def timed_build(op_name: str, sources: int, say: Callable[[str], None],
                every: float = 30.0) -> Iterator[None]:
    """Announce a build with its estimate, report progress every ``every`` seconds while it
    runs, then its duration, and record that duration for later estimates."""
    slowdown = _slowdown(min(sources, cores()))
    estimate = build_estimate(op_name, sources)
    default = "; the package's default folder, TORCH_EXTENSIONS_DIR chooses another" \
        if extensions_root() == default_root() else ""
    say(f"building DeepSpeed's {op_name} op (a one-time JIT build into {extensions_root()}"
        f"{default}): {about(estimate)} here ({sources} C++ source(s) on {cores()} core(s)"
        f"{f', load {os.getloadavg()[0]:.1f}' if slowdown > 1 else ''})")
    started = time.perf_counter()
    done = threading.Event()

    def heartbeat():
        while not done.wait(every):
            say(f"  ... building {op_name}: {time.perf_counter() - started:.0f} s of "
                f"{about(estimate)}")

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    seconds = time.perf_counter() - started
    record_build(op_name, sources, seconds, slowdown)
    say(f"built DeepSpeed's {op_name} op in {seconds:.0f} s (cached for later runs)")


@dataclass(frozen=True)
class PendingBuild:
    """A DeepSpeed op that a catalog name needs and that is neither prebuilt nor JIT-built here."""
    op_name: str
    sources: int
    builder: object  # DeepSpeed's OpBuilder instance

    def estimate(self) -> float:
        return build_estimate(self.op_name, self.sources)


def accelerator_builder(spec):
    """DeepSpeed's builder of ``spec``'s op on this machine's accelerator, None where the
    accelerator has no such op (imports DeepSpeed)."""
    from deepspeed.accelerator import get_accelerator
    builder = get_accelerator().create_op_builder(spec.op_builder)
    return None if builder is None or type(builder).__name__ == "NotImplementedBuilder" else builder


def pending_build(spec) -> PendingBuild | None:
    """The build ``spec``'s first use would start here, or None (imports DeepSpeed)."""
    if spec.op_builder is None:
        return None
    from deepspeed.git_version_info import installed_ops
    builder = accelerator_builder(spec)
    if builder is None or installed_ops.get(builder.name) \
            or is_built(builder.name, sources(builder)):
        return None
    return PendingBuild(builder.name, len(builder.sources()), builder)
