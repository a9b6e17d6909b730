"""Progress messages of the package's torch-only parts (compilations), shown in mmengine's log.

``visdet_mmext.algorithms`` imports no mmengine, so it logs to the standard logger
``visdet_mmext.progress``; this handler passes each record to mmengine's current logger
(``print_log(..., logger='current')``), which writes the run's log file and, under distributed
training, prints on rank 0 only.
"""
from __future__ import annotations

import logging

from mmengine.logging import print_log

LOGGER = "visdet_mmext.progress"


class ToMMEngineLogger(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print_log(record.getMessage(), logger="current", level=record.levelno)


def forward_to_mmengine() -> None:
    """Route ``visdet_mmext.progress`` to mmengine's logger (idempotent)."""
    progress = logging.getLogger(LOGGER)
    progress.setLevel(logging.INFO)
    progress.propagate = False  # mmengine's logger prints it; no second copy through the root
    if not any(isinstance(h, ToMMEngineLogger) for h in progress.handlers):
        progress.addHandler(ToMMEngineLogger())
