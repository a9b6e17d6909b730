"""A checkpoint write that fails on one rank stops every rank alike.

``DeepSpeedEngine.save_checkpoint`` has every rank write its own files between collectives (a
barrier once the folder exists, the tag check, a barrier at the end). A write that raises on one
rank skips the rest of its save, and the other ranks wait in the last barrier until that rank's
exit closes the connection (a gloo traceback on each of them) or the timeout ends it. Now each
rank keeps its failed writes until the save's collectives are done; the ranks then share what
failed, and every rank raises the same error, naming the first failed file and its rank, which
``mmengine_save_failure`` turns into its one sentence.
"""
from __future__ import annotations

import contextlib
import os

from . import patch, replace_attribute
from .mmengine_save_failure import reason_of, save_failure

#: What writes files inside a save: (the engine's attribute holding it, or None: the engine;
#: its name). DeepSpeed itself logs and skips a folder it cannot make; the writes then fail.
WRITERS = (("checkpoint_engine", "save"), (None, "_copy_recovery_script"))


def _path(name: str, args: tuple, kwargs: dict) -> str:
    if name == "save":  # save(state_dict, path)
        return str(kwargs.get("path", args[1] if len(args) > 1 else ""))
    folder = str(args[0] if args else next(iter(kwargs.values()), ""))  # the recovery script's
    return os.path.join(folder, "zero_to_fp32.py")


def _refusal(path: str) -> OSError | None:
    """The OS's reason for a write torch's writer gave up on without one ("unexpected pos"):
    one more byte at the end of that file, which the failed save removes anyway."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "ab") as file:
            file.write(b"\0")
            file.flush()
            os.fsync(file.fileno())
    except OSError as refused:
        return refused
    return None


@contextlib.contextmanager
def _writes_kept(engine, failures: list):
    """While inside, a write that fails is appended to ``failures`` instead of raising."""
    replaced = []
    for holder_name, name in WRITERS:
        holder = engine if holder_name is None else getattr(engine, holder_name, None)
        write = getattr(holder, name, None)
        if write is None:
            continue

        def kept(*args, _write=write, _name=name, **kwargs):
            try:
                return _write(*args, **kwargs)
            except Exception as error:
                if not save_failure(error):
                    raise
                path = getattr(error, "filename", None) or _path(_name, args, kwargs)
                refused = _refusal(path) if isinstance(error, RuntimeError) else None
                failures.append((path, refused or error))
                return None
        replaced.append((holder, name, vars(holder).get(name)))
        setattr(holder, name, kept)  # this instance only, for this save
    try:
        yield
    finally:
        for holder, name, own in replaced:
            if own is None:
                delattr(holder, name)
            else:
                setattr(holder, name, own)


def _first_failure(failures: list, folder: str) -> OSError | None:
    """The first failed write of the lowest rank that had one, as the same error on every rank;
    collective when there are several ranks."""
    import torch.distributed as dist
    mine = None
    if failures:
        path, error = failures[0]
        mine = (path, getattr(error, "errno", None), reason_of(error))
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    shared = [mine]
    if world > 1:
        shared = [None] * world
        dist.all_gather_object(shared, mine)
    for rank, failure in enumerate(shared):
        if failure is not None:
            path, number, reason = failure
            where = os.path.relpath(path, folder)
            if world > 1:  # which of the ranks' files
                reason += f", writing {path if where.startswith('..') else where} on rank {rank}"
            return OSError(number, reason, path)
    return None


@patch(package="deepspeed", versions=">=0.16,<0.20", module="deepspeed.runtime.engine",
       fixes="""a checkpoint file that one rank cannot write leaves the other ranks waiting in the
       save's last barrier, until a closed connection or the timeout ends them with a traceback""")
def deepspeed_save_failure_on_every_rank(module) -> None:
    def make(save_checkpoint):
        def save_checkpoint_failing_together(self, save_dir, tag=None, *args, **kwargs):
            failures: list = []
            with _writes_kept(self, failures):
                saved = save_checkpoint(self, save_dir, tag, *args, **kwargs)
            tag = f"global_step{self.global_steps}" if tag is None else str(tag)  # DeepSpeed's
            error = _first_failure(failures, os.path.join(save_dir, tag))
            if error is None:
                return saved
            raise error from (failures[0][1] if failures else None)
        return save_checkpoint_failing_together

    replace_attribute(module.DeepSpeedEngine, "save_checkpoint", make)
