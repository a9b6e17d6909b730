"""A checkpoint that cannot be written stops the run with one sentence, not a traceback.

``Runner.save_checkpoint`` and ``FlexibleRunner.save_checkpoint`` (its strategies: a file, or a
DeepSpeed directory of state files) raise whatever the file system does (a read-only or full
disk, a directory or file where the checkpoint goes) from inside a hook, deep in the training
loop. Now they raise :class:`CheckpointSaveError` saying what failed, where, and what is still
intact (the newest usable checkpoint, which the save did not touch), and ``visdet-mmext train``
exits with code 2. What the failed save began at that path (a file, a DeepSpeed directory) is
removed; what was there before is left as it is.
"""
from __future__ import annotations

import errno
import inspect
import os
import re
import shutil

from ..errors import CheckpointSaveError
from . import patch, replace_attribute

#: torch's zip writer reports a failed write as a RuntimeError with these words (the last two
#: when the OS refused part of a file it writes by path).
_WRITER_FAILURES = ("PytorchStreamWriter", "file write failed", "open file failed",
                    "Parent directory", "unexpected pos", "iostream error")
#: torch's words when the file's folder is missing (DeepSpeed logs and skips a failed makedirs).
_NO_FOLDER = re.compile(r"Parent directory (.+) does not exist\.?")
#: torch's words when the OS refused the file: "... open file failed with strerror: Is a directory"
_OS_WORDS = re.compile(r".*\bstrerror: (.+?)\.?")


def save_failure(error: BaseException) -> bool:
    """Whether ``error`` is a checkpoint write the file system refused."""
    return isinstance(error, OSError) or (
        isinstance(error, RuntimeError) and any(words in str(error) for words in _WRITER_FAILURES))


def reason_of(error: BaseException) -> str:
    """Why the write failed, in the OS's words where there are some."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[-1]
    missing = _NO_FOLDER.fullmatch(text)
    if missing:  # said as the OS says it when it fails to make the folder
        return os.strerror(errno.ENOTDIR if os.path.exists(missing.group(1)) else errno.ENOENT)
    refused = _OS_WORDS.fullmatch(text)
    return refused.group(1) if refused else text[:200]


def _intact(runner, failed: str) -> str:
    from ..checkpoint.resume import find_resume_checkpoint, saves_directories
    newest = find_resume_checkpoint(runner.work_dir,
                                    directories=saves_directories(runner.cfg)).chosen
    if newest is None or os.path.abspath(newest) == os.path.abspath(failed):
        return "no earlier checkpoint of this run was saved"
    return f"the newest usable checkpoint, {newest}, is intact"


def _where(filepath: str) -> str:
    """``at iteration 8`` for ``iter_8.pth`` (the runner's counter is one behind inside
    ``after_train_iter``, where checkpoints are saved)."""
    from ..checkpoint.resume import NUMBERED
    match = NUMBERED.fullmatch(os.path.basename(filepath))
    if match is None:
        return ""
    return f" at {'iteration' if match.group(1) == 'iter' else 'epoch'} {match.group(2)}"


def failed_save_message(runner, filepath: str, error: BaseException, removed: bool) -> str:
    return (f"Could not save checkpoint {filepath} ({reason_of(error)}), so training stopped"
            f"{_where(filepath)}{' (the partial file was removed)' if removed else ''}; "
            f"{_intact(runner, filepath)}. Fix the cause (free space, write permission, "
            "or whatever occupies that path) and continue with --resume and the same --work-dir.")


def _reporting(signature):
    def make(save_checkpoint):
        def reporting_save_checkpoint(self, *args, **kwargs):
            arguments = signature.bind(self, *args, **kwargs).arguments
            filepath = os.path.join(str(arguments["out_dir"]), str(arguments["filename"]))
            existed = os.path.lexists(filepath)
            try:
                return save_checkpoint(self, *args, **kwargs)
            except Exception as error:
                if not save_failure(error):
                    raise
                removed = not existed and _remove(filepath)
                raise CheckpointSaveError(failed_save_message(self, filepath, error, removed)) \
                    from error
        return reporting_save_checkpoint
    return make


def _remove(path: str) -> bool:
    """Remove what a failed save began at ``path`` (a file, or a DeepSpeed checkpoint's
    directory); whether there was one. Every rank of a run removes it, on a shared disk at
    the same time: what another rank removed first counts as removed."""
    if not os.path.lexists(path):
        return False
    while os.path.lexists(path):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:  # another rank got to this entry first: try what is left
            continue
    return True


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""a checkpoint that cannot be written (read-only or full disk, a directory in its
       place) ends the run with a traceback from inside the training loop""")
def mmengine_save_failure_message(module) -> None:
    replace_attribute(module.Runner, "save_checkpoint",
                      _reporting(inspect.signature(module.Runner.save_checkpoint)))


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner._flexible_runner",
       fixes="""a FlexibleRunner checkpoint (DeepSpeed, FSDP) that cannot be written ends the run
       with a traceback from inside the training loop""")
def mmengine_flexible_save_failure_message(module) -> None:
    cls = module.FlexibleRunner
    replace_attribute(cls, "save_checkpoint", _reporting(inspect.signature(cls.save_checkpoint)))
