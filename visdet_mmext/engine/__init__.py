"""Engine-side pieces: safe checkpoint loading for mmengine on torch >= 2.6."""
from .safe_checkpoint import (ALLOWED_NAMES, UnsafeCheckpointError, allow, install,
                              install_when_imported, safe_torch_load)

__all__ = ["ALLOWED_NAMES", "UnsafeCheckpointError", "allow", "install", "install_when_imported",
           "safe_torch_load"]
