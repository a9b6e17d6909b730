"""No deprecation warnings about the FileClients mmengine builds for itself and never uses.

mmengine 0.10 keeps a ``FileClient.infer_client(file_client_args, path)`` call "to avoid breaking
backward compatibility" in CheckpointHook, LoggerHook and ``save_checkpoint``; without
``file_client_args`` (the default) the client is never used, yet building it logs
'"FileClient" will be deprecated' and '"HardDiskBackend" is the alias of "LocalBackend"' at
WARNING on every run. Exactly those two messages are dropped during ``infer_client`` calls
without ``file_client_args``; a FileClient built any other way still warns.
"""
from __future__ import annotations

import contextlib
import functools
import logging

from . import patch

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


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.fileio.file_client",
       fixes="""every run logs two mmengine deprecation warnings about a FileClient that mmengine
       builds for itself and does not use""")
def mmengine_unused_file_client(module) -> None:
    infer_client = module.FileClient.__dict__["infer_client"].__func__

    @functools.wraps(infer_client)
    def quiet_infer_client(cls, file_client_args=None, uri=None):
        if file_client_args is not None:
            return infer_client(cls, file_client_args, uri)
        with _without_notices():
            return infer_client(cls, file_client_args, uri)

    quiet_infer_client.__wrapped__ = infer_client
    module.FileClient.infer_client = classmethod(quiet_infer_client)
