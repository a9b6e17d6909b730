"""Where this package keeps what it builds (C kernels, DeepSpeed's ops): one folder per machine.

``$VISDET_MMEXT_CACHE``, else ``$XDG_CACHE_HOME/visdet-mmext``, else ``~/.cache/visdet-mmext``.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("VISDET_MMEXT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "visdet-mmext"))
