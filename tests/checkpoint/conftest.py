import os

import pytest

from demo_utils import CONFIGS, cli_options

ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")


@pytest.fixture(scope="session")
def adamw_run(tmp_path_factory):
    """The work dir of a real 4-iteration run of the AdamW demo config through ``visdet-mmext
    train``: iter_2.pth and iter_4.pth (tests copy what they damage)."""
    import torch

    import visdet_mmext.demo  # noqa: F401
    from visdet_mmext.tools import train as train_tool
    work_dir = tmp_path_factory.mktemp("adamw_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_tool.main([ADAMW, "--work-dir", str(work_dir), "--cfg-options",
                                *cli_options(iters=4, checkpoint_interval=2)]) == 0
    finally:
        torch.set_num_threads(threads)
    return work_dir
