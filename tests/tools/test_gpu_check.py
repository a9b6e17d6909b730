"""The GPU check (tools/gpu_check.py): its dry run (``make gpu-check DRY=1``), the test files it
derives from the cuda marker, the modules it requires, how it judges and reports a run, and a test
step stopped at its deadline. ``make gpu-rehearsal`` runs the check itself without CUDA."""
import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from subprocess_utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
import gpu_check  # noqa: E402

CUDA_FILES = ["tests/algorithms/test_cuda_native.py", "tests/deepspeed/test_cuda_zero.py",
              "tests/optim/test_cuda_runner.py", "tests/registry/test_cuda_bnb.py",
              "tests/registry/test_cuda_catalog.py"]


@pytest.mark.slow
def test_dry_run_lists_every_step_and_finds_everything_it_runs():
    done = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    for step in (*gpu_check.STEPS, gpu_check.BUILD_OPS):
        assert re.search(rf"^\s+\+? ?{step.name}\s+{step.budget_s}\s", done.stdout, re.M), step
    for check in ("budget", "cuda tests", "imports", "benchmark", "deepspeed ops", "wheels",
                  "summary"):
        assert f"check {check}: ok" in done.stdout, check
    for name in gpu_check.cuda_test_files():
        assert name in done.stdout and f"{os.path.basename(name)} 0" not in done.stdout


@pytest.mark.slow
def test_the_dry_run_notices_a_missing_case_or_target_and_an_overrun(monkeypatch):
    monkeypatch.setattr(gpu_check, "BENCHMARK_CASES", (*gpu_check.BENCHMARK_CASES, "no such"))
    monkeypatch.setattr(gpu_check, "TARGETS", (*gpu_check.TARGETS, "no such target"))
    problems, _ = gpu_check.dry_check_benchmark()
    assert problems == ["benchmark case 'no such' does not exist",
                        "the benchmark has no target 'no such target'"]
    total = sum(step.budget_s for step in gpu_check.STEPS)
    spare = gpu_check.TOTAL_BUDGET_S - gpu_check.MARGIN_S - total
    step = gpu_check.Step("extra", spare + 1, "one step too many")
    monkeypatch.setattr(gpu_check, "STEPS", (*gpu_check.STEPS, step))
    assert gpu_check.dry_check_budget() == [
        f"steps add up to {total + spare + 1} s > {gpu_check.TOTAL_BUDGET_S} s less a margin "
        f"of {gpu_check.MARGIN_S} s"]


def test_the_test_files_come_from_the_cuda_marker():
    assert set(CUDA_FILES) <= set(gpu_check.cuda_test_files())
    assert "tests/registry/test_optimizer_sweep.py" not in gpu_check.cuda_test_files()
    marked = ast.parse("pytestmark = [pytest.mark.cuda]\n@pytest.mark.cuda\ndef test(): pass")
    text_only = ast.parse("'''pytest.mark.cuda in a docstring'''\nmark = pytest.mark.slow")
    assert any(map(gpu_check._is_cuda_mark, ast.walk(marked)))
    assert not any(map(gpu_check._is_cuda_mark, ast.walk(text_only)))
    # the dry run's comparison with what pytest collects, both ways
    assert gpu_check.compare_test_files(CUDA_FILES, dict.fromkeys(CUDA_FILES, 3)) == []
    problems = gpu_check.compare_test_files(
        CUDA_FILES[1:], {**dict.fromkeys(CUDA_FILES, 3), CUDA_FILES[2]: 0})
    assert problems == [f"{CUDA_FILES[2]} marks tests cuda but none was collected",
                        f"{CUDA_FILES[0]} holds cuda tests that the check would not run (mark "
                        "them with pytest.mark.cuda in the file itself)"]


def test_the_modules_the_tests_import_are_found_through_helpers_and_jobs():
    source = textwrap.dedent("""
        import torch
        from mmengine.optim import build_optim_wrapper
        try:
            import optional_thing
        except ImportError:
            optional_thing = None

        def later():
            import scipy.linalg
            return __import__("lion_pytorch"), importlib.import_module("bitsandbytes.optim")
        """)
    assert gpu_check._imports(ast.parse(source)) == {
        "torch", "mmengine", "scipy", "lion_pytorch", "bitsandbytes"}
    needed = gpu_check.needed_modules(CUDA_FILES)
    assert {"torch", "mmengine", "pytest", "deepspeed", "bitsandbytes"} <= needed.keys()
    # deepspeed through the job script a helper names by path, the benchmark's peers by string
    assert "tests/jobs/deepspeed_train.py" in needed["deepspeed"]
    assert needed["lion_pytorch"] == ["tools/benchmark_optimizers.py"]
    assert not {"os", "toy", "cuda_utils", "visdet_mmext", "benchmark_optimizers"} & needed.keys()


def outcomes(**statuses):
    return {step.name: gpu_check.Outcome(step, statuses.get(step.name, "ok"))
            for step in gpu_check.STEPS}


def results(passed=0, failed=0, skipped=0, reasons=None):
    return dict(passed=passed, failed=failed, skipped=skipped, failed_tests=[],
                skip_reasons=reasons or ({"needs CUDA": skipped} if skipped else {}))


def test_the_verdict_fails_on_a_failed_or_unreached_test_or_step():
    plan = gpu_check.Plan(tests={"cuda-tests": ["t"] * 10, "deepspeed-tests": ["t"] * 4})
    ok = {"cuda-tests": results(passed=9, skipped=1, reasons={"needs 2 CUDA devices": 1}),
          "deepspeed-tests": results(passed=4)}
    assert gpu_check.verdict(outcomes(), ok, plan, rehearse=False) == []
    bad = {"cuda-tests": results(passed=8, failed=1), "deepspeed-tests": {"missing": True}}
    assert gpu_check.verdict(outcomes(**{"cuda-tests": "failed (exit 1)", "summary": "not run"}),
                             bad, plan, rehearse=False) == [
        "step cuda-tests: failed (exit 1)", "cuda-tests: 1 failed",
        "cuda-tests: 1 of 10 tests not reached", "deepspeed-tests: 4 tests, no results"]
    # a rehearsal passes only where every test skipped for want of CUDA
    rehearsed = {"cuda-tests": results(skipped=10), "deepspeed-tests": results(skipped=4)}
    assert gpu_check.verdict(outcomes(), rehearsed, plan, rehearse=True) == []
    rehearsed["cuda-tests"] = results(passed=1, skipped=9)
    assert gpu_check.verdict(outcomes(), rehearsed, plan, rehearse=True) == [
        "cuda-tests: without CUDA every test must skip for want of it: 1 passed, "
        "skip reasons {'needs CUDA': 9}"]


def test_the_summary_ends_with_each_target_measured_or_why_not():
    bench = {"copy_bandwidth_GBps": 4000.0, "skipped": {"DeepSpeed FusedLamb": "ImportError: x"},
             "targets": [dict(target=t, value=None if "FusedLamb" in t else 0.9, goal=">= 0.75",
                              met=None if "FusedLamb" in t else True)
                         for t in gpu_check.TARGETS]}
    plan = gpu_check.Plan(tests={"cuda-tests": ["t"] * 3})
    tests = {"cuda-tests": results(passed=2), "deepspeed-tests": {"missing": True}}
    lines = gpu_check.summary_lines(list(outcomes().values()), tests, bench, {}, plan, "")
    assert lines[-5].startswith("H200 target")
    assert [line[:51].strip() for line in lines[-4:]] == [t[:51] for t in gpu_check.TARGETS]
    assert lines[-3].endswith("not reached: DeepSpeed FusedLamb skipped (ImportError: x)")
    assert re.search(r" 0\.90 +- +>= 0\.75 +yes$", lines[-4]), lines[-4]
    assert "cuda-tests: 2 passed, 0 failed, 0 skipped, 1 not reached" in lines
    assert "deepspeed-tests: no results" in lines
    stopped = gpu_check.summary_lines(list(outcomes().values()), tests, {"missing": True}, {},
                                      plan, "the benchmark step timed out")
    assert all(line.endswith("not reached: the benchmark step timed out")
               for line in stopped[-4:])


SLOW_TESTS = '''
import time
import pytest

pytestmark = pytest.mark.cuda


def test_quick():
    pass


def test_hangs():
    time.sleep(300)
'''


@pytest.mark.slow
def test_a_test_step_past_its_deadline_is_stopped_and_its_junit_still_read(tmp_path):
    """The step's pytest gets SIGINT GRACE_S before the deadline: the JUnit XML it writes then
    counts the test that ran, and the one cut off is not reached. Also when the check itself
    was started with SIGINT ignored (a shell's background job)."""
    (tmp_path / "test_slow.py").write_text(SLOW_TESTS)
    plan = gpu_check.Plan(files=[str(tmp_path / "test_slow.py")],
                          tests={"cuda-tests": ["test_quick", "test_hangs"]})
    log = gpu_check.Log(tmp_path / "log")
    env = dict(os.environ, PYTHONPATH=REPO)
    began = time.monotonic()
    deadline = began + gpu_check.GRACE_S + 12  # pytest's start-up, then SIGINT mid-sleep
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the step without the fix
    try:
        status = gpu_check.run_tests("cuda-tests", plan, tmp_path, env, log, deadline)
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert status == "timed out", log.tail(30)
    assert time.monotonic() - began < 12 + 2 * gpu_check.GRACE_S
    junit = gpu_check.read_junit(tmp_path / "junit-cuda-tests.xml")
    assert not junit.get("missing"), log.tail(30)
    assert (junit["passed"], junit["failed"], junit["skipped"]) == (1, 0, 0), junit
    lines = gpu_check.results_lines("cuda-tests", junit, 2)
    assert lines[0] == "cuda-tests: 1 passed, 0 failed, 0 skipped, 1 not reached"
    assert gpu_check.verdict(outcomes(**{"cuda-tests": status}), {"cuda-tests": junit}, plan,
                             rehearse=False) == ["step cuda-tests: timed out",
                                                 "cuda-tests: 1 of 2 tests not reached"]
