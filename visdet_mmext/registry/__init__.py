"""Registration: every provider (entry point) registers its catalog rows into mmengine's OPTIMIZERS.

``load_providers()`` runs them once and returns the :class:`Report` of what is available here and
why the rest is not; ``probe`` resolves lazy names and takes real steps (``list``/``check``).
"""
from .availability import Availability
from .loader import Report, load_providers

__all__ = ["Availability", "Report", "load_providers"]
