"""The GPU check's dry run (``make gpu-check DRY=1``): its plan with a budget per step, and every
test, benchmark case and DeepSpeed op the check names, found on this machine."""
import os
import re
import subprocess
import sys

from subprocess_utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import gpu_check  # noqa: E402


def test_dry_run_lists_every_step_and_finds_everything_it_runs():
    done = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in (*gpu_check.STEPS, gpu_check.BUILD_OPS):
        assert re.search(rf"^\s+\+? ?{step.name}\s+{step.budget_s}\s", done.stdout, re.M), step
    for check in ("budget", "cuda tests", "benchmark", "deepspeed ops", "wheels", "summary"):
        assert f"check {check}: ok" in done.stdout, check
    for name in gpu_check.CUDA_TEST_FILES:
        assert name in done.stdout and f"{os.path.basename(name)} 0" not in done.stdout


def test_the_dry_run_notices_a_missing_case_or_target_and_an_overrun(monkeypatch):
    monkeypatch.setattr(gpu_check, "BENCHMARK_CASES", (*gpu_check.BENCHMARK_CASES, "no such"))
    monkeypatch.setattr(gpu_check, "TARGETS", (*gpu_check.TARGETS, "no such target"))
    problems, _ = gpu_check.dry_check_benchmark()
    assert problems == ["benchmark case 'no such' does not exist",
                        "the benchmark has no target 'no such target'"]
    step = gpu_check.Step("extra", 30, "one step too many")
    monkeypatch.setattr(gpu_check, "STEPS", (*gpu_check.STEPS, step))
    assert gpu_check.dry_check_budget() == [
        f"steps add up to {gpu_check.TOTAL_BUDGET_S + 30} s > {gpu_check.TOTAL_BUDGET_S}"]
