"""Clear the lock a killed DeepSpeed JIT build leaves behind, so later builds do not hang.

torch builds an extension under ``<TORCH_EXTENSIONS_DIR>/<op>/lock``: the builder creates the
file, keeps it open for the whole build and deletes it at the end; everyone else waits while it
exists, with no timeout. A build killed midway (Ctrl-C, a CI time limit) leaves the file, and
every later ``DeepSpeedCPUAdam(...)`` or ZeRO-Offload run in that cache then waits forever.

A lock that no live process holds open belongs to no build: it is removed, with a warning.
Where ``/proc`` is missing (not Linux) nothing is removed; the warning names the file instead.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..deepspeed.ops import extensions_root
from . import patch, replace_attribute

logger = logging.getLogger("visdet_mmext")


def _held_open(path: Path) -> bool | None:
    """True if a live process has ``path`` open, None where that cannot be told."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    target = str(path.resolve())
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            descriptors = list((pid / "fd").iterdir())
        except OSError:  # process ended, or another user's: it cannot hold our cache's lock
            continue
        for fd in descriptors:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:
                continue
    return False


def clear_stale_build_lock(op_name: str) -> bool:
    """Remove ``<root>/<op_name>/lock`` if no process holds it; True if one was removed."""
    lock = extensions_root() / op_name / "lock"
    if not lock.exists():
        return False
    held = _held_open(lock)
    if held is None:
        logger.warning("visdet_mmext: %s exists; if no build of %s is running, delete it, or this "
                       "build waits forever", lock, op_name)
        return False
    if held:
        return False  # a live build: waiting for it is right
    try:
        lock.unlink()
    except FileNotFoundError:  # that build just finished
        return False
    logger.warning("visdet_mmext: removed %s, left by a killed build of DeepSpeed's %s op "
                   "(no process held it); building again", lock, op_name)
    return True


@patch(package="deepspeed", versions=">=0.16,<0.20", module="deepspeed.ops.op_builder.builder",
       fixes="""a JIT build of a DeepSpeed op that was killed midway leaves a lock file, and every
       later build of that op waits for it forever""")
def deepspeed_stale_build_locks(module) -> None:
    """Clear a stale lock before every ``OpBuilder.jit_load``."""
    def make(jit_load):
        def jit_load_without_stale_lock(self, *args, **kwargs):
            clear_stale_build_lock(self.name)
            return jit_load(self, *args, **kwargs)
        return jit_load_without_stale_lock

    replace_attribute(module.OpBuilder, "jit_load", make)
