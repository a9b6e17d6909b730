"""Multi-node launches: torchrun with ``--nnodes 2 --node_rank`` twice on this host (2 "nodes" x 2
processes, one static rendezvous on 127.0.0.1) trains the 1-bit optimizers and distributed Muon
exactly like one node with 4 processes (tests/jobs/onebit/multinode_job.py)."""
import subprocess
import sys

import pytest
import torch

from demo_utils import ROOT, subprocess_env
from onebit_launch import HELPERS, JOBS
from visdet_mmext.runtime.process_group import free_port

JOB = f"{JOBS}/multinode_job.py"


def launch(out, tag, *placement: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", *placement, JOB, str(out), tag]
    env = subprocess_env(PYTHONPATH=f"{ROOT}:{HELPERS}:{JOBS}")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]


@pytest.mark.slow
def test_two_nodes_train_like_one_node_of_the_same_world_size(tmp_path):
    port = str(free_port())
    nodes = [launch(tmp_path, "nodes", "--nnodes", "2", "--node_rank", str(node),
                    "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port)
             for node in (0, 1)]
    for node in nodes:
        finish(node)
    finish(launch(tmp_path, "single", "--standalone", "--nproc_per_node", "4"))
    for rank in range(4):
        nodes = torch.load(tmp_path / f"nodes_rank{rank}.pt", weights_only=True)
        single = torch.load(tmp_path / f"single_rank{rank}.pt", weights_only=True)
        # really two nodes: ranks 0-1 on node 0, ranks 2-3 on node 1, local ranks 0-1 on each
        assert nodes["placement"] == dict(RANK=rank, WORLD_SIZE=4, LOCAL_RANK=rank % 2,
                                          LOCAL_WORLD_SIZE=2, GROUP_RANK=rank // 2)
        assert single["placement"]["LOCAL_RANK"] == rank
        for name, params in nodes["params"].items():
            assert not torch.equal(params[0], nodes["initial"][0]), name  # it trained
            for ours, theirs in zip(params, single["params"][name]):
                assert torch.equal(ours, theirs), (name, rank)
