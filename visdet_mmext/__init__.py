"""visdet-mmext: every documented optimizer for MMEngine under fixed names.

Importing the package runs every optimizer provider once (see ``visdet_mmext.optim.loader``)
and installs the checked optimizer-wrapper constructor.
"""
from .deepspeed import install as _install_deepspeed_support
from .engine import safe_checkpoint as _safe_checkpoint
from .optim import OPTIMIZERS, OptimizerConfigError, load_providers

__version__ = "0.1.0"

REPORT = load_providers()
_install_deepspeed_support()
_safe_checkpoint.install_when_imported()  # weights-only checkpoint loading for mmengine

__all__ = ["OPTIMIZERS", "OptimizerConfigError", "REPORT", "load_providers", "__version__"]
