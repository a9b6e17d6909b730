"""DeepSpeed checkpoints are data too: every state file, every ZeRO stage, with and without offload.

A payload in the model states or in any ZeRO optimizer shard is refused by mmengine's real
DeepSpeedStrategy.resume -> DeepSpeed's engine.load_checkpoint (which asks torch.load for
weights_only=False) before anything in it runs; a flipped byte in any of them is caught; the
untouched checkpoint still resumes. One subprocess per configuration
(``tests/jobs/deepspeed_checkpoint_attacks.py``); ``tools/train.py --resume`` end to end below.
"""
import json
import os
import subprocess
import sys

import pytest

from demo_utils import subprocess_env
from subprocess_utils import REPO

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]
JOB = os.path.join(REPO, "tests", "jobs", "deepspeed_checkpoint_attacks.py")
CONFIG = os.path.join(REPO, "visdet_mmext", "configs", "deepspeed", "zero2_offload_adamw.py")
NO_OFFLOAD = "strategy.zero_optimization.offload_optimizer={'device': 'none'}"
CASES = {
    "stage 0": ["strategy.zero_optimization.stage=0", NO_OFFLOAD],
    "stage 1": ["strategy.zero_optimization.stage=1", NO_OFFLOAD],
    "stage 2": ["strategy.zero_optimization.stage=2", NO_OFFLOAD],
    "stage 2 offload": ["strategy.zero_optimization.stage=2"],
    "stage 3": ["strategy.zero_optimization.stage=3", NO_OFFLOAD],
    "stage 3 offload": ["strategy.zero_optimization.stage=3"],
}


def _clean_env():
    env = subprocess_env()
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


@pytest.mark.parametrize("case", list(CASES))
def test_every_state_file_is_checked_and_refused(tmp_path, case):
    result = tmp_path / "result.json"
    done = subprocess.run([sys.executable, JOB, CONFIG, str(tmp_path / "work"), str(result),
                           *CASES[case]], cwd=REPO, env=_clean_env(), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    out = json.loads(result.read_text())
    expected_files = 1 if case == "stage 0" else 2  # model states (+ the ZeRO optimizer shard)
    assert len(out["files"]) == expected_files, out["files"]
    for name in out["files"]:
        assert out["results"][f"payload {name}"].startswith("UnsafeCheckpointError"), out["results"]
        assert "system" in out["results"][f"payload {name}"]
        assert out["results"][f"flipped {name}"].startswith("CorruptCheckpointError"), out["results"]
    assert out["results"]["clean"] == "loaded"
    assert out["markers"] == []  # no payload ran


def test_train_tool_resume_refuses_a_poisoned_deepspeed_checkpoint(tmp_path):
    """The reported chain: tools/train.py CFG --resume DIR with a payload in the model states."""
    work = tmp_path / "work"
    options = ["--cfg-options", "strategy.zero_optimization.stage=0",
               "strategy.zero_optimization.offload_optimizer.device=none", "train_dataloader.batch_size=8",
               "train_dataloader.dataset.num_train=32", "val_dataloader.dataset.num_val=16",
               "train_cfg.max_epochs=1", "default_hooks.logger.interval=1"]
    train = [sys.executable, os.path.join(REPO, "tools", "train.py"), CONFIG, "--work-dir", str(work)]
    first = subprocess.run([*train, *options], cwd=REPO, env=_clean_env(), capture_output=True,
                           text=True, timeout=900)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    checkpoint = work / "epoch_1.pth"
    marker = tmp_path / "pwned"
    poison = ("import os, sys, torch\n"
              "from visdet_mmext.checkpoint.safe_load import allowlist\n"
              "class P:\n"
              "    def __reduce__(self):\n"
              f"        return os.system, ('touch {marker}',)\n"
              "path = sys.argv[1]\n"
              "with allowlist(deepspeed=True):\n"
              "    state = torch.load(path, weights_only=True)\n"
              "state['evil'] = P()\n"
              "torch.save(state, path)\n")
    subprocess.run([sys.executable, "-c", poison, str(checkpoint / "mp_rank_00_model_states.pt")],
                   cwd=REPO, env=_clean_env(), check=True, timeout=300)
    resumed = subprocess.run([*train, "--resume", str(checkpoint), *options[:1],
                              *options[1:], "train_cfg.max_epochs=2"], cwd=REPO, env=_clean_env(),
                             capture_output=True, text=True, timeout=900)
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 2, output[-5000:]
    assert "UnsafeCheckpointError" in output and "Traceback" not in output
    assert not marker.exists()
