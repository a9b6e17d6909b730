"""visdet-mmext: every documented optimizer for MMEngine under fixed names.

Importing the package registers every provider's optimizers (``registry``), the package's
constructors and wrappers (``optim``), and schedules its fixes of mmengine and DeepSpeed
(``compat``), which wait for their modules to be imported.
"""
from . import compat, runtime  # noqa: F401  (runtime registers CpuThreadsHook)
from .errors import OptimizerConfigError, VisdetError
from .optim import OPTIMIZERS
from .optim.build import build_optimizer
from .registry import load_providers

__version__ = "0.2.0"

REPORT = load_providers()
compat.install()

__all__ = ["OPTIMIZERS", "OptimizerConfigError", "REPORT", "VisdetError", "build_optimizer",
           "load_providers", "__version__"]
