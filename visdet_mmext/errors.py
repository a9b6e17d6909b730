"""Every exception this package raises on purpose (standard library only, so raising is cheap).

``visdet-mmext train`` (and the checkout's ``tools/train.py``) turns any :class:`VisdetError` into
exit code 2 and its message, without a traceback: each one says what is wrong and how to fix it.
"""
from __future__ import annotations

import pickle


class VisdetError(Exception):
    """A problem with the user's config, checkpoint or environment, explained in the message."""


class OptimizerConfigError(VisdetError, ValueError):
    """The ``optim_wrapper`` part of a config cannot work."""


class RoutingError(OptimizerConfigError):
    """Muon routing rules contradict each other or the shapes."""


class DeepSpeedConfigError(OptimizerConfigError):
    """The DeepSpeed part of the strategy config cannot work as written."""


class RunnerConfigError(VisdetError, ValueError):
    """A part of the config the Runner builds besides the optim wrapper (model, schedulers, hooks,
    datasets, ``train_cfg``, ``work_dir``, ``load_from``) cannot work as written."""


class ConfigFileError(VisdetError, ValueError):
    """A config file cannot be read (syntax, or a merge with its base that mmengine refuses)."""


class CheckpointError(VisdetError):
    """A checkpoint cannot be used."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint holds an object outside the allowlist; nothing in it was run."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or its bytes do not match their checksums."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint being resumed was saved from another model, or its optimizer state with
    another optimizer, grouping or Muon routing."""


class CheckpointSaveError(CheckpointError, OSError):
    """A checkpoint could not be written; the run stopped, earlier checkpoints are intact."""


class WorkDirInUseError(VisdetError, RuntimeError):
    """Another run is training into the same work dir."""


class NeedsCudaError(VisdetError, RuntimeError):
    """An optimizer's kernel does not exist on this machine's accelerator."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason  # short form, for the availability report


class ProviderError(VisdetError, RuntimeError):
    """An optimizer provider failed while ``VISDET_MMEXT_STRICT=1``."""


class ConfigNotFoundError(VisdetError, FileNotFoundError):
    """A command names a config that is neither a file nor a packaged config."""


class CommandLineError(VisdetError, ValueError):
    """A command-line flag asks for something the config cannot do."""


class ConfigImportError(VisdetError, ImportError):
    """A module named in a config's ``custom_imports`` cannot be imported."""
