"""A checkpoint that cannot be written stops the run with one sentence, not a traceback.

``Runner.save_checkpoint`` raises whatever the file system does (a read-only or full disk, a
directory where the file goes) from inside a hook, deep in the training loop. Now it raises
:class:`CheckpointSaveError` saying what failed, where, and what is still intact (the newest
usable checkpoint, which the save did not touch), and ``visdet-mmext train`` exits with code 2.
A file the failed save began is removed; one that was there before is left as it is.
"""
from __future__ import annotations

import inspect
import os

from . import patch, replace_attribute

#: torch's zip writer reports a failed write as a RuntimeError with these words.
_WRITER_FAILURES = ("PytorchStreamWriter", "file write failed", "open file failed")


def _save_failure(error: BaseException) -> bool:
    return isinstance(error, OSError) or (
        isinstance(error, RuntimeError) and any(words in str(error) for words in _WRITER_FAILURES))


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).strip().splitlines()[-1][:200]


def _intact(work_dir: str, failed: str) -> str:
    from ..checkpoint.resume import find_resume_checkpoint
    newest = find_resume_checkpoint(work_dir).chosen
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
    return (f"Could not save checkpoint {filepath} ({_reason(error)}), so training stopped"
            f"{_where(filepath)}{' (the partial file was removed)' if removed else ''}; "
            f"{_intact(runner.work_dir, filepath)}. Fix the cause (free space, write permission, "
            "or whatever occupies that path) and continue with --resume and the same --work-dir.")


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner.runner",
       fixes="""a checkpoint that cannot be written (read-only or full disk, a directory in its
       place) ends the run with a traceback from inside the training loop""")
def mmengine_save_failure_message(module) -> None:
    from ..errors import CheckpointSaveError
    signature = inspect.signature(module.Runner.save_checkpoint)

    def make(save_checkpoint):
        def reporting_save_checkpoint(self, *args, **kwargs):
            arguments = signature.bind(self, *args, **kwargs).arguments
            filepath = os.path.join(str(arguments["out_dir"]), str(arguments["filename"]))
            existed = os.path.lexists(filepath)
            try:
                return save_checkpoint(self, *args, **kwargs)
            except Exception as error:
                if not _save_failure(error):
                    raise
                removed = not existed and os.path.isfile(filepath)
                if removed:
                    os.remove(filepath)
                raise CheckpointSaveError(failed_save_message(self, filepath, error, removed)) \
                    from error
        return reporting_save_checkpoint

    replace_attribute(module.Runner, "save_checkpoint", make)
