"""A torch.distributed process group for one process, as the sharding engines need even alone."""
from __future__ import annotations

import contextlib
import os
import socket


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def single_process_env() -> dict[str, str]:
    """Fill the torch.distributed variables of a one-process world (only those absent)."""
    values = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    if "MASTER_PORT" not in os.environ:
        values["MASTER_PORT"] = str(free_port())
    added = {key: value for key, value in values.items() if key not in os.environ}
    os.environ.update(added)
    return added
