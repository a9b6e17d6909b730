"""What a provider says about one catalog name: registered or not, and why."""
from __future__ import annotations

from dataclasses import dataclass

AVAILABLE = "available"
MISSING_PACKAGE = "missing package"
NEEDS_CUDA = "needs CUDA"
REMOVED = "removed in installed version"
IMPORT_ERROR = "import error"

#: Statuses under which the name is registered and can be built on this machine.
USABLE = frozenset({AVAILABLE})


@dataclass(frozen=True)
class Availability:
    status: str
    reason: str = ""
    resolved: str = ""  # "module.Class" the name builds, when known
    provider: str = ""

    @property
    def usable(self) -> bool:
        return self.status in USABLE


def qualified_name(obj) -> str:
    """``module.QualName`` of a class or function, or of an instance's class."""
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{named.__module__}.{named.__qualname__}"


def import_failure(error: BaseException, package: str) -> tuple[str, str]:
    """Classify an import failure: the package is absent, or present but broken."""
    if isinstance(error, ModuleNotFoundError) and error.name == package:
        return MISSING_PACKAGE, f"{package} is not installed"
    return IMPORT_ERROR, f"importing {package} failed: {type(error).__name__}: {error}"
