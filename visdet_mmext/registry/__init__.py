"""Registration: every provider registers its catalog rows into mmengine's OPTIMIZERS.

``load_providers()`` runs them once (this package's, then third-party entry points) and returns
the :class:`Report` of what is available here and why the rest is not; ``lazy`` holds the names of
packages not imported yet; ``probe`` resolves DeepSpeed's ops and takes real steps (``list``/``check``).
"""
from .availability import Availability
from .loader import Report, load_providers

__all__ = ["Availability", "Report", "load_providers"]
