"""torch.distributed process groups: one for a single process (the sharding engines need one even
alone), and the end of a run's group, on every rank at once."""
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


@contextlib.contextmanager
def ended_together():
    """A multi-process group created inside the block is ended when the block completes: every
    rank waits for the others, then destroys it. A rank that exits with its gloo group alive can
    abort a peer still using or tearing down its own ("terminate called after throwing an
    instance of 'gloo::IoException'"). A one-process group stays: DeepSpeed keeps its groups for
    the rest of the process, and a later run in it needs them. A block that raises leaves the
    group as it is: the other ranks may never reach the barrier."""
    import torch.distributed as dist
    created_here = not (dist.is_available() and dist.is_initialized())
    yield
    if created_here and dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1:
        dist.barrier()
        dist.destroy_process_group()
