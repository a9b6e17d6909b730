"""Settings and set-ups the 1-bit optimizers cannot train with fail before training, with the
fix named."""
import os

import pytest
import torch

from demo_utils import CONFIGS, cli_options
from visdet_mmext.algorithms.onebit import OnebitAdam
from visdet_mmext.deepspeed.offload import plan_optimizer
from visdet_mmext.errors import DeepSpeedConfigError
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")

BAD = [  # config, setting, what the message must say
    ("onebit_adam.py", "freeze_step=-1", "freeze_step=-1 must be an integer >= 1"),
    ("onebit_adam.py", "freeze_step=0", "0 steps would freeze v = 0"),
    ("onebit_lamb.py", "min_coeff=20.0", "need 0 <= min_coeff <= max_coeff"),
    ("onebit_lamb.py", "factor_threshold=1.5", "factor_threshold=1.5 must be in [0, 1)"),
    ("zero_one_adam.py", "var_freeze_step=-5", "var_freeze_step=-5 must be an integer >= 1"),
    ("zero_one_adam.py", "local_step_clipper=0", "local_step_clipper=0 must be an integer >= 1"),
    ("onebit_adam.py", "cuda_aware=False", "has no setting 'cuda_aware'"),  # DeepSpeed's transport
]


@pytest.mark.parametrize("config, setting, message", BAD, ids=[b[1] for b in BAD])
def test_bad_settings_fail_before_the_first_iteration(tmp_path, capsys, config, setting, message):
    code = train_tool.main([os.path.join(CONFIGS, "optimizers", config), "--work-dir",
                            str(tmp_path), "--cfg-options", *cli_options(iters=2, validate=False),
                            "model.widths=[8,16,32]", f"optim_wrapper.optimizer.{setting}"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("iter_*.pth"))


def test_deepspeed_strategy_plan_refuses_them_at_every_zero_stage():
    optimizer = OnebitAdam(torch.nn.Linear(4, 4).parameters())
    for stage in (0, 1, 2):
        with pytest.raises(DeepSpeedConfigError, match="cannot train under DeepSpeed.*Fix: train "
                                                       "with the default Runner"):
            plan_optimizer(optimizer, {"zero_optimization": {"stage": stage}},
                           zero_tested=lambda o: False)


@pytest.mark.slow
@pytest.mark.deepspeed
def test_deepspeed_strategy_run_fails_before_training(tmp_path_factory):
    from deepspeed_jobs import ZERO2, run_job

    job = run_job(tmp_path_factory, "zero2_onebit", ZERO2,
                  "optim_wrapper.optimizer.type=OnebitAdam")
    assert job.returncode != 0 and job.result is None
    assert "DeepSpeedConfigError" in job.log
    assert "OnebitAdam cannot train under DeepSpeed" in job.log
    assert not any(name.startswith("epoch_") for name in os.listdir(job.work_dir))
