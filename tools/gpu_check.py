#!/usr/bin/env python
"""The GPU check: on a CUDA machine, one command proves the package's CUDA paths and measures the
H200 targets, inside a fixed time budget (docs/gpu.md).

    python3 tools/gpu_check.py --wheels gpu_wheels     # on the GPU machine (make gpu-check)
    python tools/gpu_check.py --dry-run                # anywhere: the plan, each reference checked
    python tools/gpu_check.py --rehearse --wheels W    # without CUDA (make gpu-rehearsal)

Steps run one after another, each stopped at its deadline (time a step leaves unused goes to the
next); DeepSpeed's ops build in the background while the benchmark compiles. Results land in
``--out`` (default ``$OUT``): the log, one JUnit XML file per test step, the benchmark's
``cuda.json/.md/.png`` and ``summary.json``. The last lines printed are the summary, ending with
each H200 target: its measured ratio and whether it is met, or why it was not reached. Exit
status 1 when a step failed, a test failed or a test was not reached.

``--rehearse`` runs the same steps on a machine without CUDA, in an environment built like the
GPU machine's (``make gpu-rehearsal``): everything up to CUDA itself is exercised, the benchmark
is replaced by its plan, and every CUDA test must come back skipped for want of CUDA.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from gpu_image import PROVIDED_BY, VERSIONS as IMAGE_VERSIONS  # noqa: E402
from gpu_wheels import (CARRY_LIMIT, DISTRIBUTIONS, check as check_wheels, pinned_versions,  # noqa: E402
                        tree_bytes)

#: the slot the check is written for, from a machine with the checkout and the wheels to the
#: summary; the steps' budgets add up to MARGIN_S less, for what they cannot see (start-up)
TOTAL_BUDGET_S = 480
MARGIN_S = 40


@dataclass(frozen=True)
class Step:
    name: str
    budget_s: int
    what: str


STEPS = (
    Step("environment", 15, "GPU, driver, nvcc, torch and CPU facts"),
    Step("install", 45, "pip install --no-index --target the wheel cache; every requirement of "
                        "every wheel met; every module the tests and the benchmark import "
                        "found; import and `visdet_mmext list`: no catalog row missing"),
    Step("collect", 20, "pytest --collect-only over the test files that mark tests cuda"),
    Step("benchmark", 180, "tools/benchmark_optimizers.py --device cuda (1.31 B parameters)"),
    Step("cuda-tests", 110, "pytest -m 'cuda and not deepspeed' (pytest-xdist workers)"),
    Step("deepspeed-tests", 60, "pytest -m 'cuda and deepspeed' (needs the ops built beside the "
                                "benchmark; ZeRO trainings in subprocesses)"),
    Step("summary", 10, "tests, targets, measured ratios, met or not; summary.json"),
)
#: Runs beside the benchmark from its start: its warm-up compiles the native optimizers for a
#: minute or two, while its DeepSpeed peers, built last, wait on torch's build lock if need be.
#: Joined before the DeepSpeed tests.
BUILD_OPS = Step("deepspeed-ops", 150, "JIT-build DeepSpeed's ops, one process each")
#: the pytest runs: step -> marker expression (the DeepSpeed tests need the built ops)
TEST_STEPS = {"cuda-tests": "cuda and not deepspeed", "deepspeed-tests": "cuda and deepspeed"}
#: pytest-timeout per test: a hang fails one test, not the check
TEST_TIMEOUT_S = 90
#: pytest-xdist workers per test step (the tests are small: the host's CPU bounds them)
WORKERS = 4
#: DeepSpeed op builders the tests and the benchmark load (ZeRO-Offload steps DeepSpeedCPUAdam)
DEEPSPEED_OPS = ("FusedAdamBuilder", "FusedLambBuilder", "FusedLionBuilder", "CPUAdamBuilder")
#: the benchmark rows the check reports: the native optimizers and the issue's peers
BENCHMARK_CASES = (
    "native Lion", "native LAMB", "native Muon (2-D)", "native Muon (all params)",
    "native Muon per-matrix loop", "torch AdamW fused", "torch AdamW foreach",
    "lion-pytorch Lion", "bitsandbytes Lion (32-bit)", "bitsandbytes LAMB (32-bit)",
    "bitsandbytes AdamW8bit", "DeepSpeed FusedAdam", "DeepSpeed FusedLamb", "DeepSpeed FusedLion",
    "torch.optim.Muon (2-D)",
)
#: the H200 targets, as the benchmark names them on CUDA
TARGETS = (
    "native Lion copy-bandwidth fraction",
    "native LAMB / DeepSpeed FusedLamb (ms)",
    "native Muon / torch.optim.Muon, 2-D subset (ms)",
    "ResNet-50: per-matrix loop / batched (speed-up)",
)
#: everything the check writes (a transfer back from a lent machine takes at most 8 files)
OUTPUTS = ("gpu_check.log", "summary.json", *(f"junit-{step}.xml" for step in TEST_STEPS),
           "cuda.json", "cuda.md", "cuda.png")
#: a step past its deadline gets SIGINT this long before it (pytest then writes its JUnit XML)
GRACE_S = 10
#: a rehearsal's budgets are this many times the GPU host's: a busy 2-core machine without the
#: host's caches is no measure of it (the budgets are not what a rehearsal checks)
REHEARSAL_SLACK = 10
#: what the test files may import without a package: the tests' own modules and this checkout
LOCAL_CODE = (ROOT / "tests" / "helpers", ROOT / "tests" / "jobs", ROOT / "tools")


@dataclass
class Outcome:
    step: Step
    status: str = "not run"  # ok | failed ... | timed out | skipped | not run
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Plan:
    """What the collect step found: the test files and each test step's test ids."""
    files: list[str] = field(default_factory=list)
    tests: dict[str, list[str]] = field(default_factory=dict)


class Log:
    """Everything the steps print goes to the log file; the console gets one line per step."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "a", buffering=1)

    def write(self, text: str) -> None:
        self.file.write(text if text.endswith("\n") else text + "\n")

    def tail(self, lines: int) -> str:
        return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- processes
def _interruptible() -> None:
    # a shell's background job ignores SIGINT, and so would the step: pytest then could not
    # write its JUnit XML when a deadline stops it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(command: list[str], log: Log, env: dict) -> subprocess.Popen:
    log.write(f"$ {' '.join(command)}")
    # a session of its own: a deadline stops the step with everything it started
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.file,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_interruptible)


def stop(process: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGINT to the process group, SIGKILL after ``grace_s``."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def finish(process: subprocess.Popen, deadline: float) -> str:
    """Wait for ``process``, stopping it so that it has ended by ``deadline`` (monotonic)."""
    try:
        code = process.wait(max(0.0, deadline - GRACE_S - time.monotonic()))
    except subprocess.TimeoutExpired:
        stop(process)
        return "timed out"
    return "ok" if code == 0 else f"failed (exit {code})"


def run_python(code: str, env: dict, timeout: float, *args: str) -> str:
    """The last line ``code`` prints, run by this Python in ``env``."""
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"python -c {code.strip().splitlines()[0][:40]!r}... took longer "
                           f"than the {timeout:.0f} s left") from None
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                           else f"exit {done.returncode}")
    return done.stdout.strip().splitlines()[-1]


# --------------------------------------------------------------------------- the test files
def _is_cuda_mark(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "cuda"
            and isinstance(node.value, ast.Attribute) and node.value.attr == "mark")


def cuda_test_files() -> list[str]:
    """Every test file that marks a test ``cuda`` (``pytest.mark.cuda`` anywhere in its code):
    the files the check runs. The dry run compares this with what pytest collects."""
    return sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")
                  if any(_is_cuda_mark(node) for node in ast.walk(ast.parse(path.read_text()))))


def _optional(handlers: list[ast.ExceptHandler]) -> bool:
    """An import in a ``try`` that catches its failure: the code copes without the module."""
    names = {"ImportError", "ModuleNotFoundError", "Exception"}
    for handler in handlers:
        caught = handler.type
        types = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if caught is None or any(isinstance(t, ast.Name) and t.id in names for t in types):
            return True
    return False


def _imports(tree: ast.AST) -> set[str]:
    """Top-level names of the modules ``tree`` imports, anywhere (function bodies and
    ``__import__("x")`` included), except where it catches the import's failure."""
    found: set[str] = set()

    def visit(node, optional):
        if isinstance(node, ast.Try):
            for child in node.body:
                visit(child, optional or _optional(node.handlers))
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, optional)
            return
        if not optional and isinstance(node, ast.Call) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "__import__", "import_module"):
            found.add(node.args[0].value.split(".")[0])  # __import__("x"), import_module("x")
        elif not optional and isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif not optional and isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, optional)

    visit(tree, False)
    return found


def needed_modules(files: list[str]) -> dict[str, list[str]]:
    """Module -> the files that import it: the check's test files, the benchmark, and the test
    helpers and job scripts they reach (by import, or by a path naming a job), followed through."""
    local = {path.stem: path for folder in LOCAL_CODE for path in folder.glob("*.py")}
    todo = [ROOT / name for name in files] + [ROOT / "tools" / "benchmark_optimizers.py",
                                              ROOT / "tests" / "conftest.py"]
    seen, needed = set(), {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text())
        jobs = {node.value[:-3] for node in ast.walk(tree) if isinstance(node, ast.Constant)
                and isinstance(node.value, str) and node.value.endswith(".py")}
        for name in sorted(_imports(tree) | (jobs & local.keys())):
            if name in local:
                todo.append(local[name])
            elif name not in sys.stdlib_module_names and name not in ("visdet_mmext", "tests"):
                needed.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return needed


# --------------------------------------------------------------------------- the steps
def environment(env: dict, timeout: float) -> dict:
    facts = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
             "python": platform.python_version(), "cpu_count": os.cpu_count(),
             "platform": platform.platform()}
    facts.update(json.loads(run_python(
        "import json, torch\n"
        "n = torch.cuda.device_count()\n"
        "print(json.dumps(dict(torch=torch.__version__, cuda=torch.version.cuda, devices=n,\n"
        "    gpus=[torch.cuda.get_device_name(i) for i in range(n)],\n"
        "    capability='.'.join(map(str, torch.cuda.get_device_capability(0))) if n else None,\n"
        "    memory_GiB=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)\n"
        "    if n else None)))", env, timeout)))
    for name, command in (("nvidia_smi", ["nvidia-smi", "--query-gpu=name,driver_version,"
                                          "memory.total,clocks.max.sm", "--format=csv,noheader"]),
                          ("nvcc", ["nvcc", "--version"])):
        if shutil.which(command[0]):
            out = subprocess.run(command, capture_output=True, text=True, timeout=timeout).stdout
            facts[name] = out.strip().splitlines()[-1] if out.strip() else ""
        else:
            facts[name] = "not found"
    return facts


def install(wheels: Path, site: Path, env: dict, log: Log, deadline: float) -> str:
    process = start([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                     "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                     *map(str, sorted(wheels.glob("*.whl")))], log, env)
    return finish(process, deadline)


#: run in the check's environment: each installed wheel's requirements (markers evaluated here)
#: against the versions importlib finds on the path, where the carried ones come first
REQUIREMENTS = r"""
import json, re, sys
import importlib.metadata as metadata
from packaging.requirements import Requirement
site, provided = sys.argv[1], json.loads(sys.argv[2])
problems = []
for dist in metadata.distributions(path=[site]):
    for text in dist.requires or []:
        need = Requirement(text)
        if need.marker is not None and not need.marker.evaluate({"extra": ""}):
            continue
        name = provided.get(re.sub(r"[-_.]+", "-", need.name).lower(), need.name)
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{dist.metadata['Name']} needs {text}: not installed")
            continue
        if not need.specifier.contains(have, prereleases=True):
            problems.append(f"{dist.metadata['Name']} needs {text}: {name} {have} is installed")
print(json.dumps(problems))
"""

#: run in the check's environment: the console command's ``list`` and every catalog row usable
#: or refused for a reason the machine cannot change (no CUDA here, removed upstream)
CATALOG = r"""
import contextlib, io, json
from visdet_mmext.cli import main
from visdet_mmext.registry.availability import IMPORT_ERROR, MISSING_PACKAGE
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(["list", "--json"])
listing = json.loads(out.getvalue())
rows = listing["optimizers"]
problems = [f"{r['name']}: {r['status']} ({r['reason']})" for r in rows
            if r["status"] in (IMPORT_ERROR, MISSING_PACKAGE)]
problems += [f"provider {name}: {p['error']}" for name, p in listing["providers"].items()
             if p["error"]]
statuses = {}
for r in rows:
    statuses[r["status"]] = statuses.get(r["status"], 0) + 1
print(json.dumps(dict(code=code, problems=problems, statuses=statuses)))
"""

#: run in the check's environment: which of the modules named on the command line are missing
FIND_MODULES = ("import importlib.util, json, sys\n"
                "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]))")


def package_versions(env: dict, timeout: float) -> dict:
    return json.loads(run_python(
        "import json, sys, importlib.metadata as m\n"
        "def version(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({name: version(name) for name in sys.argv[1:]}))", env, timeout,
        *DISTRIBUTIONS, *IMAGE_VERSIONS, "pytest", "pytest-xdist"))


def image_notes(packages: dict) -> list[str]:
    """Where the machine's own packages differ from tools/gpu_image.py (what the rehearsal
    rebuilt): the rehearsal then rehearsed another machine."""
    return [f"{name} {packages.get(name)} here, {version} in tools/gpu_image.py"
            for name, version in IMAGE_VERSIONS.items()
            if name not in DISTRIBUTIONS  # a carried one hides the machine's own
            and packages.get(name) and packages[name].split("+")[0] != version]


def missing_modules(env: dict, timeout: float) -> list[str]:
    """Modules the check's tests and benchmark import that the environment lacks."""
    needed = needed_modules(cuda_test_files())
    missing = json.loads(run_python(FIND_MODULES, env, timeout, *needed))
    return [f"{name} (imported by {', '.join(needed[name])}) is not installed"
            for name in missing]


def collect(plan: Plan, env: dict, log: Log, deadline: float) -> list[str]:
    """The test ids of each test step (both collected at once), or the collection's problems."""
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for step, marks in TEST_STEPS.items():
            output = open(Path(folder) / step, "w+")
            runs[step] = (output, subprocess.Popen(
                [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                 "-m", marks, *plan.files], cwd=ROOT, env=env, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True))
        problems = []
        for step, (output, process) in runs.items():
            status = finish(process, deadline)
            output.seek(0)
            lines = output.read().splitlines()
            log.write("\n".join(lines[-20:]))
            if status not in ("ok", "failed (exit 5)"):  # 5: no test selected
                problems.append(f"pytest -m '{TEST_STEPS[step]}' --collect-only {status}: "
                                + " | ".join(lines[-3:]))
            plan.tests[step] = [line for line in lines if "::" in line]
    return problems


BUILD_OP = """
import sys, time
from deepspeed.accelerator import get_accelerator
start = time.perf_counter()
get_accelerator().create_op_builder(sys.argv[1]).load(verbose=False)
print(f"built {sys.argv[1]} in {time.perf_counter() - start:.1f} s")
"""


def start_op_builds(env: dict, log: Log) -> dict[str, subprocess.Popen]:
    jobs = max(2, (os.cpu_count() or 2) // len(DEEPSPEED_OPS))
    env = dict(env, MAX_JOBS=str(jobs))
    return {op: start([sys.executable, "-c", BUILD_OP, op], log, env) for op in DEEPSPEED_OPS}


def run_tests(step: str, plan: Plan, out: Path, env: dict, log: Log, deadline: float) -> str:
    if not plan.tests.get(step):
        return "skipped"
    # the machine's own pytest-xdist (this Python's): without it the tests run one by one
    workers = ["-n", str(WORKERS)] if importlib.util.find_spec("xdist") else []
    process = start([sys.executable, "-m", "pytest", "-m", TEST_STEPS[step], "-q", "-rfEs",
                     "-p", "no:cacheprovider", *workers, f"--timeout={TEST_TIMEOUT_S}",
                     f"--junitxml={out / f'junit-{step}.xml'}", *plan.files], log, env)
    return finish(process, deadline)


def benchmark(out: Path, env: dict, log: Log, deadline: float) -> str:
    process = start([sys.executable, "tools/benchmark_optimizers.py", "--device", "cuda",
                     "--out", str(out)], log, env)
    return finish(process, deadline)


# --------------------------------------------------------------------------- reading results
def read_junit(path: Path) -> dict:
    """Counts, the failed tests and the skip reasons of a pytest JUnit XML file."""
    if not path.exists():
        return {"missing": True}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failed, skip_reasons = [], {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.get("name") is None:  # the test a stop interrupted: written blank, not reached
            continue
        node = f"{case.get('classname')}::{case.get('name')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")),
                       None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
            reason = (outcome.get("message") or "").removeprefix("Skipped: ")
            skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
        else:
            counts["failed"] += 1
            failed.append(f"{node}: {(outcome.get('message') or '').splitlines()[0][:160]}"
                          if outcome.get("message") else node)
    return dict(counts, failed_tests=failed, skip_reasons=skip_reasons)


def read_benchmark(path: Path) -> dict:
    if not path.exists():
        return {"missing": True}
    report = json.loads(path.read_text())
    rows = {row["name"]: row for row in report["results"]}
    return {"copy_bandwidth_GBps": report["copy_bandwidth_GBps"],
            "targets": report["targets"],
            "ms_per_step": {name: row.get("ms_per_step") for name, row in rows.items()},
            "skipped": {name: row["skipped"] for name, row in rows.items() if row.get("skipped")}}


def results_lines(step: str, tests: dict, expected: int | None) -> list[str]:
    """One line of counts for a test step, then its failed tests."""
    if tests.get("missing"):
        return [f"{step}: no results" + (f" ({expected} tests not reached)" if expected else "")]
    ran = tests["passed"] + tests["failed"] + tests["skipped"]
    unreached = max(0, (expected or 0) - ran)
    lines = [f"{step}: {tests['passed']} passed, {tests['failed']} failed, "
             f"{tests['skipped']} skipped, {unreached} not reached"
             + "".join(f"; skipped {n}: {r}" for r, n in tests["skip_reasons"].items())]
    lines += [f"  FAILED {node}" for node in tests["failed_tests"][:10]]
    if len(tests["failed_tests"]) > 10:
        lines.append(f"  ... {len(tests['failed_tests']) - 10} more in junit-{step}.xml")
    return lines


def target_lines(bench: dict, why_not: str) -> list[str]:
    """The H200 targets, last: measured with the goal and whether it is met, or not reached and
    why (``why_not``: what stopped the benchmark step, "" when it ended well)."""
    lines = [f"{'H200 target':<52}{'measured':>9}{'best':>7}  {'goal':<8}met"]
    if bench.get("missing"):
        return lines + [f"{target[:51]:<52}  not reached: "
                        f"{why_not or 'the benchmark wrote no results'}" for target in TARGETS]
    rows = {row["target"]: row for row in bench["targets"]}
    skipped = "; ".join(f"{name} skipped ({why})" for name, why in bench["skipped"].items())
    for target in TARGETS:
        row = rows.get(target)
        if row is None or row["value"] is None:
            reason = skipped or why_not or "a benchmark case it compares did not run"
            lines.append(f"{target[:51]:<52}  not reached: {reason}")
            continue
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        best = row.get("value_best_round")
        lines.append(f"{target[:51]:<52}{row['value']:>9.2f}"
                     f"{'-' if best is None else format(best, '.2f'):>7}  {row['goal']:<8}{met}")
    return lines


def summary_lines(outcomes: list[Outcome], tests: dict, bench: dict, facts: dict, plan: Plan,
                  why_not: str) -> list[str]:
    """The one screen the check ends with; its last lines are the targets (``why_not``: why
    they were not reached, should the benchmark have left no results)."""
    gpus = facts.get("gpus") or ["no CUDA device"]
    smi = str(facts.get("nvidia_smi", "")).split(", ")
    lines = [f"GPU check {facts.get('date', '')}: {gpus[0]} x{len(gpus)}, torch "
             f"{facts.get('torch')} (CUDA {facts.get('cuda')}), driver "
             f"{smi[1] if len(smi) > 1 else '?'}"]
    lines += [f"  differs from the rehearsed image: {note}" for note in facts.get("image", [])]
    lines += ["", f"{'step':<16}{'budget s':>9}{'took s':>8}  result"]
    for o in outcomes:
        lines.append(f"{o.step.name:<16}{o.step.budget_s:>9}{o.seconds:>8.0f}  {o.status}"
                     + (f": {o.detail}" if o.detail else ""))
        built = facts.get("build_seconds") or {}
        if o.step.name == "benchmark" and built:
            lines.append(f"{'+ ' + BUILD_OPS.name:<16}{BUILD_OPS.budget_s:>9}"
                         f"{max(built.values()):>8.0f}  built "
                         + ", ".join(f"{op.removesuffix('Builder')} {t:.0f} s"
                                     for op, t in built.items())
                         + "".join(f"; {op} NOT built" for op in DEEPSPEED_OPS
                                   if op not in built))
    lines.append("")
    for step in TEST_STEPS:
        lines += results_lines(step, tests.get(step, {"missing": True}),
                            len(plan.tests[step]) if step in plan.tests else None)
    lines.append("")
    if not bench.get("missing"):
        lines.append(f"copy bandwidth {bench['copy_bandwidth_GBps']:.0f} GB/s (same run)")
        lines += [f"  benchmark skipped {name}: {why}" for name, why in bench["skipped"].items()]
    return lines + target_lines(bench, why_not)


# --------------------------------------------------------------------------- the check
def check_env(site: Path | None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    path = [str(ROOT)] + ([str(site)] if site else [])  # the checkout's code wins over its wheel
    env["PYTHONPATH"] = os.pathsep.join(path + [p for p in [os.environ.get("PYTHONPATH")] if p])
    # DeepSpeed's CUDA-version table ends at 12.x: it would refuse nvcc 13.x next to torch's 13.0
    env["DS_SKIP_CUDA_CHECK"] = "1"
    return env


def run_check(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # an earlier run's results would be read as this one's
        (out / name).unlink(missing_ok=True)
    log = Log(out / "gpu_check.log")
    began = time.monotonic()
    outcomes = {step.name: Outcome(step) for step in STEPS}
    wheels = Path(args.wheels) if args.wheels else None
    site = Path(tempfile.mkdtemp(prefix="visdet-mmext-gpu-site-")) if wheels else None
    env = check_env(site)
    facts, builds, results, plan = {}, {}, {}, Plan()

    def do_environment(until):
        facts.update(environment(env, until - time.monotonic()))
        if args.rehearse:
            outcomes["environment"].detail = (f"rehearsal: torch {facts['torch']}, CUDA build "
                                              f"{facts['cuda']}, {facts['devices']} devices")
            if facts["devices"]:
                raise RuntimeError("a rehearsal is for a machine without CUDA: this one has it")
            return "ok"
        if not facts["devices"]:
            raise RuntimeError("torch sees no CUDA device")
        env["TORCH_CUDA_ARCH_LIST"] = facts["capability"]  # DeepSpeed builds for this GPU only
        outcomes["environment"].detail = (f"{facts['gpus'][0]}, sm {facts['capability']}, "
                                          f"{facts['memory_GiB']} GiB, {facts['nvcc']}")

    def do_install(until):
        """Each check runs whatever the others found: the summary lists every problem."""
        outcome, problems = outcomes["install"], []
        if wheels is None:
            outcome.detail = "no --wheels: this python's own packages"
        else:
            if not any(wheels.glob("*.whl")):
                raise RuntimeError(f"no wheels in {wheels} (make gpu-wheels fills it)")
            status = install(wheels, site, env, log, until)
            if status != "ok":
                return status
            problems += json.loads(run_python(REQUIREMENTS, env, until - time.monotonic(),
                                              str(site), json.dumps(PROVIDED_BY)))
            outcome.detail = f"{len(list(wheels.glob('*.whl')))} wheels"
        facts["packages"] = package_versions(env, until - time.monotonic())
        facts["image"] = image_notes(facts["packages"])
        problems += missing_modules(env, until - time.monotonic())
        catalog = json.loads(run_python(CATALOG, env, until - time.monotonic()))
        facts["catalog"] = catalog["statuses"]
        problems += [f"catalog row {problem}" for problem in catalog["problems"]]
        if catalog["code"]:
            problems.append(f"visdet_mmext list exited {catalog['code']}")
        if problems:
            raise RuntimeError("; ".join(problems))
        outcome.detail += ("; " if outcome.detail else "") + (
            "every requirement met, every module found, list: " + ", ".join(
                f"{n} {status}" for status, n in catalog["statuses"].items()))

    def do_collect(until):
        plan.files = cuda_test_files()
        problems = collect(plan, env, log, until)
        if problems:
            raise RuntimeError("; ".join(problems))
        outcomes["collect"].detail = (
            f"{len(plan.files)} files, " + ", ".join(f"{step} {len(ids)}"
                                                     for step, ids in plan.tests.items()))

    def do_benchmark(until):
        if args.rehearse:  # no GPU to measure on: its plan, in this environment
            problems, note = dry_check_benchmark(env, until - time.monotonic())
            outcomes["benchmark"].detail = "; ".join(problems) or f"plan only: {note}"
            return "failed" if problems else "ok"
        builds.update(start_op_builds(env, log))
        facts["builds_until"] = time.monotonic() + BUILD_OPS.budget_s
        return benchmark(out, env, log, until)

    def do_cuda_tests(until):
        return run_tests("cuda-tests", plan, out, env, log, until)

    def do_deepspeed_tests(until):
        for op, process in builds.items():  # the tests load them
            status = finish(process, min(until, facts["builds_until"]))
            outcomes["deepspeed-tests"].detail += "" if status == "ok" else f"{op}: {status}; "
        return run_tests("deepspeed-tests", plan, out, env, log, until)

    def do_summary(until):
        facts["build_seconds"] = built_op_seconds(log)
        results.update(benchmark=read_benchmark(out / "cuda.json"))
        results["tests"] = {step: read_junit(out / f"junit-{step}.xml") for step in TEST_STEPS}

    actions = {"environment": do_environment, "install": do_install, "collect": do_collect,
               "benchmark": do_benchmark, "cuda-tests": do_cuda_tests,
               "deepspeed-tests": do_deepspeed_tests, "summary": do_summary}
    deadline = began
    try:
        for step in STEPS:
            action = actions[step.name]
            outcome = outcomes[step.name]
            # a step that ends early leaves its time to the next
            deadline += step.budget_s * (REHEARSAL_SLACK if args.rehearse else 1)
            print(f"[{time.monotonic() - began:4.0f} s] {step.name} "
                  f"(until {deadline - began:.0f} s)", flush=True)
            log.write(f"\n===== {step.name} =====")
            step_start = time.monotonic()
            try:
                outcome.status = action(deadline) or "ok"
            except Exception as exc:  # noqa: BLE001 - the step fails, the summary still comes
                outcome.status = "failed"
                outcome.detail = f"{type(exc).__name__}: {exc}"
                log.write(outcome.detail)
            outcome.seconds = time.monotonic() - step_start
            if outcome.status not in ("ok", "skipped"):
                print(log.tail(25), flush=True)
                if step.name == "environment":
                    break  # nothing after it can run as planned
            if step.name == args.stop_after:
                break
    finally:
        for process in builds.values():
            stop(process, grace_s=2)
        if site is not None:
            shutil.rmtree(site, ignore_errors=True)
    tests = results.get("tests") or {s: read_junit(out / f"junit-{s}.xml") for s in TEST_STEPS}
    bench = results.get("benchmark") or read_benchmark(out / "cuda.json")
    (out / "summary.json").write_text(json.dumps(dict(
        facts=facts, seconds=round(time.monotonic() - began), budget_s=TOTAL_BUDGET_S,
        rehearsal=args.rehearse,
        steps=[dict(name=o.step.name, budget_s=o.step.budget_s, seconds=round(o.seconds, 1),
                    status=o.status, detail=o.detail) for o in outcomes.values()],
        tests=tests, expected_tests=plan.tests, benchmark=bench), indent=1) + "\n")
    step = outcomes["benchmark"]
    why_not = ("a rehearsal measures nothing: no GPU" if args.rehearse else
               "" if step.status == "ok" else f"the benchmark step {step.status}"
               + (f" ({step.detail})" if step.detail else ""))
    lines = summary_lines(list(outcomes.values()), tests, bench, facts, plan, why_not)
    log.write("\n".join(lines))
    print("\n" + "\n".join(lines), flush=True)
    problems = verdict(outcomes, tests, plan, args.rehearse)
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    return 1 if problems else 0


def verdict(outcomes: dict, tests: dict, plan: Plan, rehearse: bool) -> list[str]:
    """Why the check failed ([] when it passed): a step that did not end ok, a failed test, a
    test not reached; in a rehearsal also a test that was not skipped for want of CUDA."""
    problems = [f"step {o.step.name}: {o.status}" for o in outcomes.values()
                if o.status not in ("ok", "skipped", "not run")]
    for step, results in tests.items():
        expected = len(plan.tests.get(step, []))
        if results.get("missing"):
            problems += [f"{step}: {expected} tests, no results"] if expected else []
            continue
        ran = results["passed"] + results["failed"] + results["skipped"]
        if results["failed"]:
            problems.append(f"{step}: {results['failed']} failed")
        if ran < expected:
            problems.append(f"{step}: {expected - ran} of {expected} tests not reached")
        if rehearse and (results["passed"] or any("CUDA" not in r for r in results["skip_reasons"])):
            problems.append(f"{step}: without CUDA every test must skip for want of it: "
                            f"{results['passed']} passed, skip reasons {results['skip_reasons']}")
    return problems


def built_op_seconds(log: Log) -> dict:
    return {m[1]: float(m[2]) for m in re.finditer(r"built (\w+) in ([\d.]+) s",
                                                   log.path.read_text(errors="replace"))}


# --------------------------------------------------------------------------- the dry run
def dry_check_budget() -> list[str]:
    total = sum(step.budget_s for step in STEPS)
    problems = [] if total + MARGIN_S <= TOTAL_BUDGET_S else [
        f"steps add up to {total} s > {TOTAL_BUDGET_S} s less a margin of {MARGIN_S} s"]
    beside = next(step for step in STEPS if step.name == "benchmark")
    if BUILD_OPS.budget_s > beside.budget_s:
        problems.append("the DeepSpeed builds outlast the benchmark they run beside")
    return problems


def file_of_test(classname: str) -> str:
    """The test file of a JUnit ``classname`` (``tests.registry.test_x`` or ``...test_x.Class``)."""
    parts = classname.split(".")
    while parts and not (ROOT / ("/".join(parts) + ".py")).is_file():
        parts.pop()
    return "/".join(parts) + ".py"


def dry_check_tests(junit: Path) -> tuple[list[str], str]:
    """Collect every ``cuda`` test of the suite: the files the check derives from the marker
    must be exactly those that hold them. Without CUDA they are run, and each must come back
    skipped for want of CUDA."""
    import torch
    files_run = cuda_test_files()
    problems = [] if files_run else ["no test file marks a test cuda"]
    if "cuda:" not in (ROOT / "pyproject.toml").read_text():
        problems.append("the cuda marker is not registered in pyproject.toml")
    has_cuda = torch.cuda.is_available()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
         f"--junitxml={junit}", "tests", *(["--collect-only"] if has_cuda else [])],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")])))
    if has_cuda:
        files = [line.split("::")[0] for line in done.stdout.splitlines() if "::" in line]
        note = f"{len(files)} cuda tests collected"
    else:
        results = read_junit(junit)
        if results.get("missing"):
            return problems + [f"pytest: {done.stdout[-1500:]}{done.stderr[-1500:]}"], ""
        files = [file_of_test(case.get("classname", ""))
                 for case in ET.parse(junit).getroot().iter("testcase")]
        reasons = results["skip_reasons"]
        if results["passed"] or results["failed"] or any("CUDA" not in r for r in reasons):
            problems.append(f"without CUDA every cuda test must skip for want of it: "
                            f"{results['passed']} passed, {results['failed']} failed "
                            f"{results['failed_tests'][:3]}, skip reasons {reasons}")
        note = (f"{results['skipped']} cuda tests, all skipped here: "
                + ", ".join(f"{n} {r!r}" for r, n in reasons.items()))
    counts = {name: files.count(name) for name in dict.fromkeys(files)}
    problems += compare_test_files(files_run, counts)
    return problems, note + "; " + ", ".join(f"{Path(n).name} {c}" for n, c in counts.items())


def compare_test_files(files_run: list[str], collected: dict[str, int]) -> list[str]:
    """The files the check derives from the marker against pytest's count of cuda tests per file."""
    return [f"{name} marks tests cuda but none was collected" for name in files_run
            if not collected.get(name)] + [
        f"{name} holds cuda tests that the check would not run (mark them with pytest.mark.cuda "
        "in the file itself)" for name in collected if name not in files_run]


#: run in the environment checked: the benchmark's CUDA cases and targets, each one resolved
BENCHMARK_PLAN = r"""
import json, sys
import torch
sys.path.insert(0, "tools")
import benchmark_optimizers as tool
cases_wanted, targets_wanted = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cuda = torch.device("cuda")
names = {case.name for case in tool.cases(cuda)}
problems = [f"benchmark case {name!r} does not exist" for name in cases_wanted if name not in names]
# every case measured once: a target that names a missing case stays unresolved
results = {(case.set, case.name): {"ms_per_step": 1.0, "ms_all": [1.0], "bw_fraction": 1.0}
           for case in tool.cases(cuda)}
rows = {row["target"]: row for row in tool.targets(results, cuda)}
for target in targets_wanted:
    if target not in rows:
        problems.append(f"the benchmark has no target {target!r}")
    elif rows[target]["value"] is None:
        problems.append(f"target {target!r} names a benchmark case that does not exist")
print(json.dumps(dict(problems=problems, cases=len(names))))
"""


def dry_check_benchmark(env: dict | None = None, timeout: float = 300) -> tuple[list[str], str]:
    found = json.loads(run_python(BENCHMARK_PLAN, env or dict(os.environ), timeout,
                                  json.dumps(BENCHMARK_CASES), json.dumps(TARGETS)))
    return found["problems"], f"{found['cases']} CUDA cases, {len(TARGETS)} targets resolved"


def dry_check_deepspeed() -> tuple[list[str], str]:
    if importlib.util.find_spec("deepspeed") is None:
        return [], "deepspeed not installed here: op builders not checked"
    from deepspeed.ops import op_builder
    missing = [op for op in DEEPSPEED_OPS if not hasattr(op_builder, op)]
    return [f"DeepSpeed has no {op}" for op in missing], ", ".join(DEEPSPEED_OPS)


def dry_check_wheels(wheels: Path | None) -> tuple[list[str], str]:
    if wheels is None or not wheels.is_dir():
        return [], f"no wheel cache at {wheels} (make gpu-wheels fills it)"
    problems = check_wheels(wheels, pinned_versions())
    size = sum(w.stat().st_size for w in wheels.glob("*.whl")) + tree_bytes()
    if size > CARRY_LIMIT:
        problems.append(f"wheels and working tree: {size / 2 ** 20:.1f} MiB > 64 MiB")
    return problems, f"{len(list(wheels.glob('*.whl')))} wheels; with the tree " \
                     f"{size / 2 ** 20:.1f} of {CARRY_LIMIT / 2 ** 20:.0f} MiB"


def dry_check_summary(junit: Path) -> tuple[list[str], str]:
    """The summary drawn from real files: the skipped tests' JUnit XML and the CPU benchmark (its
    targets are the CPU's, so the CUDA ones read 'not reached'), then with no benchmark at all."""
    report = ROOT / "docs" / "benchmarks" / "cpu.json"
    outcomes = [Outcome(step, "ok") for step in STEPS]
    tests = {step: read_junit(junit) for step in TEST_STEPS}
    lines = summary_lines(outcomes, tests, read_benchmark(report), {}, Plan(), "")
    unmeasured = summary_lines(outcomes, tests, {"missing": True}, {}, Plan(), "it timed out")
    problems = [f"the summary does not end with the {len(TARGETS)} targets"
                for text in (lines, unmeasured)
                if [line.split("  ")[0].strip() for line in text[-len(TARGETS):]]
                != [target[:51] for target in TARGETS]]
    if not all(line.endswith("not reached: it timed out")
               for line in unmeasured[-len(TARGETS):]):
        problems.append("targets without a benchmark do not say why they were not reached")
    return problems, f"{len(lines)} lines, drawn from {report.relative_to(ROOT)} and without it"


def dry_run(args) -> int:
    print(f"GPU check plan (budget {TOTAL_BUDGET_S} s with {MARGIN_S} s to spare; each step "
          "stops at its deadline):")
    print(f"  {'step':<16}{'budget s':>9}  what")
    for step in STEPS:
        print(f"  {step.name:<16}{step.budget_s:>9}  {step.what}")
        if step.name == "benchmark":
            print(f"  {'+ ' + BUILD_OPS.name:<16}{BUILD_OPS.budget_s:>9}  {BUILD_OPS.what}"
                  f" ({', '.join(DEEPSPEED_OPS)}), beside the benchmark")
        if step.name == "collect":
            print("\n".join(f"  {'':<25}  {name}" for name in cuda_test_files()))
    print(f"  {'total':<16}{sum(s.budget_s for s in STEPS):>9}")
    junit = Path(tempfile.mkdtemp()) / "junit.xml"
    checks = [("budget", lambda: (dry_check_budget(), "")),
              ("cuda tests", lambda: dry_check_tests(junit)),
              ("imports", dry_check_imports),
              ("benchmark", dry_check_benchmark), ("deepspeed ops", dry_check_deepspeed),
              ("wheels", lambda: dry_check_wheels(Path(args.wheels) if args.wheels else None)),
              ("summary", lambda: dry_check_summary(junit))]
    problems = []
    for name, checker in checks:
        found, note = checker()
        problems += found
        print(f"check {name}: {'ok' if not found else 'FAILED'}" + (f" ({note})" if note else ""))
        for problem in found:
            print(f"  - {problem}")
    shutil.rmtree(junit.parent)
    return 1 if problems else 0


def dry_check_imports() -> tuple[list[str], str]:
    """Every module the check's tests and benchmark import is found here (the development
    environment; the rehearsal checks the GPU machine's)."""
    needed = needed_modules(cuda_test_files())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    return ([f"{name} (imported by {', '.join(needed[name])}) is not installed"
             for name in missing], f"{len(needed)} modules: {', '.join(sorted(needed))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", help="wheel cache to install from (make gpu-wheels)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu_check_out"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="list the steps and check every test, case and op they name")
    mode.add_argument("--rehearse", action="store_true",
                      help="on a machine without CUDA: every step up to CUDA itself")
    parser.add_argument("--stop-after", choices=[step.name for step in STEPS],
                        help="end after this step (the summary still comes)")
    args = parser.parse_args(argv)
    return dry_run(args) if args.dry_run else run_check(args)


if __name__ == "__main__":
    sys.exit(main())
