"""No deprecation warnings about the FileClient mmengine's own CheckpointHook builds and ignores.

``CheckpointHook.before_train`` always builds a ``FileClient`` "to avoid breaking backward
compatibility" and, without ``file_client_args``, never uses it; building one logs
'"FileClient" will be deprecated' and '"HardDiskBackend" is the alias of "LocalBackend"' at
WARNING on every run. Only during that call, and only without ``file_client_args``, those two
messages are dropped; a FileClient the user's own code builds still warns.
"""
from __future__ import annotations

import contextlib
import logging

from . import patch, replace_attribute

#: Starts of the two messages (mmengine/fileio/file_client.py).
UNUSED_CLIENT_NOTICES = ('"FileClient" will be deprecated', '"HardDiskBackend" is the alias')


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(UNUSED_CLIENT_NOTICES))


@contextlib.contextmanager
def _without_notices():
    from mmengine.logging import MMLogger
    target = MMLogger.get_current_instance()
    drop = _DropNotices()
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.hooks.checkpoint_hook",
       fixes="""every run logs two mmengine deprecation warnings about a FileClient that mmengine's
       own CheckpointHook builds and does not use""")
def mmengine_unused_file_client(module) -> None:
    def make(original):
        def before_train(self, runner):
            if self.file_client_args is not None:
                return original(self, runner)
            with _without_notices():
                return original(self, runner)
        return before_train

    replace_attribute(module.CheckpointHook, "before_train", make)
