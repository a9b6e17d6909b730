#!/usr/bin/env python
"""The GPU check: on a CUDA machine, one command proves the package's CUDA paths and measures the
H200 targets, inside a fixed time budget (docs/gpu.md).

    python3 tools/gpu_check.py --wheels gpu_wheels     # on the GPU machine (make gpu-check)
    python tools/gpu_check.py --dry-run                # anywhere: the plan, each reference checked

Steps run one after another, each stopped at its deadline (time a step leaves unused goes to the
next); DeepSpeed's ops build in the background while the benchmark compiles. Results land in
``--out`` (default ``$OUT``): the log, ``junit.xml``, the benchmark's ``cuda.json/.md/.png`` and
``summary.json`` (environment, steps, tests, targets). The last lines printed are the summary:
each target, its measured ratio, met or not. Exit status 1 when a step or a test failed.
"""
from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from gpu_wheels import CARRY_LIMIT, check as check_wheels, pinned_versions, tree_bytes  # noqa: E402

#: the whole check, from a machine with the checkout and the wheels to the summary
TOTAL_BUDGET_S = 480


@dataclass(frozen=True)
class Step:
    name: str
    budget_s: int
    what: str


STEPS = (
    Step("environment", 20, "GPU, driver, nvcc, torch and CPU facts"),
    Step("install", 30, "pip install --no-index --target the wheel cache (skipped without one)"),
    Step("benchmark", 240, "tools/benchmark_optimizers.py --device cuda (1.31 B parameters)"),
    Step("cuda-tests", 180, "pytest -m cuda over the files below (junit.xml)"),
    Step("summary", 10, "targets, measured ratios, met or not; summary.json"),
)
#: Runs beside the benchmark from its start: its warm-up compiles the native optimizers for a
#: minute or two, while its DeepSpeed peers, built last, wait on torch's build lock if need be.
#: Joined before the tests.
BUILD_OPS = Step("deepspeed-ops", 150, "JIT-build DeepSpeed's ops, one process each")

CUDA_TEST_FILES = (
    "tests/algorithms/test_cuda_native.py",
    "tests/registry/test_cuda_bnb.py",
    "tests/optim/test_cuda_runner.py",
    "tests/registry/test_cuda_catalog.py",
    "tests/deepspeed/test_cuda_zero.py",
)
#: pytest-timeout per test: a hang fails one test, not the check
TEST_TIMEOUT_S = 120
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
SITE = Path(tempfile.gettempdir()) / "visdet-mmext-gpu-site"
#: everything the check writes (a transfer back from a lent machine takes at most 8 files)
OUTPUTS = ("gpu_check.log", "summary.json", "junit.xml", "cuda.json", "cuda.md", "cuda.png")
#: a step past its deadline gets SIGINT this long before it (pytest then writes its JUnit XML)
GRACE_S = 10


@dataclass
class Outcome:
    step: Step
    status: str = "not run"  # ok | failed | timed out | skipped | not run
    seconds: float = 0.0
    detail: str = ""


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
def start(command: list[str], log: Log, env: dict) -> subprocess.Popen:
    log.write(f"$ {' '.join(command)}")
    # a session of its own: a deadline stops the step with everything it started
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.file,
                            stderr=subprocess.STDOUT, start_new_session=True)


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


def run_python(code: str, env: dict, timeout: float) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return done.stdout.strip().splitlines()[-1]


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


def install(wheels: Path, env: dict, log: Log, deadline: float) -> str:
    if SITE.exists():
        shutil.rmtree(SITE)
    process = start([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                     "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(SITE),
                     *map(str, sorted(wheels.glob("*.whl")))], log, env)
    return finish(process, deadline)


def package_versions(env: dict, timeout: float) -> dict:
    return json.loads(run_python(
        "import json, importlib.metadata as m\n"
        "names = ('visdet-mmext', 'mmengine', 'bitsandbytes', 'deepspeed', 'dadaptation',\n"
        "         'lion-pytorch', 'transformers', 'triton', 'pytest')\n"
        "def version(name):\n"
        "    try:\n"
        "        return m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({name: version(name) for name in names}))", env, timeout))


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


def cuda_tests(out: Path, env: dict, log: Log, deadline: float) -> str:
    process = start([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs",
                     "-p", "no:cacheprovider", f"--timeout={TEST_TIMEOUT_S}",
                     f"--junitxml={out / 'junit.xml'}", *CUDA_TEST_FILES], log, env)
    status = finish(process, deadline)
    return "ok" if status == "failed (exit 1)" else status  # exit 1: some tests failed


def benchmark(out: Path, env: dict, log: Log, deadline: float) -> str:
    process = start([sys.executable, "tools/benchmark_optimizers.py", "--device", "cuda",
                     "--out", str(out)], log, env)
    return finish(process, deadline)


# --------------------------------------------------------------------------- reading results
def read_junit(path: Path) -> dict:
    """Counts and the failed tests of a pytest JUnit XML file."""
    if not path.exists():
        return {"missing": True}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failed, skip_reasons = [], {}
    for case in ET.parse(path).getroot().iter("testcase"):
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


def summary_lines(outcomes: list[Outcome], tests: dict, bench: dict, facts: dict) -> list[str]:
    """The one screen the check ends with."""
    gpus = facts.get("gpus") or ["no CUDA device"]
    smi = str(facts.get("nvidia_smi", "")).split(", ")
    lines = [f"GPU check {facts.get('date', '')}: {gpus[0]} x{len(gpus)}, torch "
             f"{facts.get('torch')} (CUDA {facts.get('cuda')}), driver "
             f"{smi[1] if len(smi) > 1 else '?'}",
             "", f"{'step':<15}{'budget s':>9}{'took s':>8}  result"]
    for o in outcomes:
        lines.append(f"{o.step.name:<15}{o.step.budget_s:>9}{o.seconds:>8.0f}  {o.status}"
                     + (f": {o.detail}" if o.detail else ""))
        built = facts.get("build_seconds") or {}
        if o.step.name == "benchmark" and built:
            lines.append(f"{'+ ' + BUILD_OPS.name:<15}{BUILD_OPS.budget_s:>9}"
                         f"{max(built.values()):>8.0f}  built "
                         + ", ".join(f"{op.removesuffix('Builder')} {t:.0f} s"
                                     for op, t in built.items())
                         + "".join(f"; {op} NOT built" for op in DEEPSPEED_OPS
                                   if op not in built))
    if not tests.get("missing"):
        lines.append(f"tests: {tests['passed']} passed, {tests['failed']} failed, "
                     f"{tests['skipped']} skipped "
                     + ", ".join(f"({n}: {r})" for r, n in tests["skip_reasons"].items()))
        lines += [f"  FAILED {node}" for node in tests["failed_tests"][:12]]
        if len(tests["failed_tests"]) > 12:
            lines.append(f"  ... {len(tests['failed_tests']) - 12} more in junit.xml")
    if bench.get("missing"):
        lines.append("benchmark: no results")
        return lines
    lines += ["", f"copy bandwidth {bench['copy_bandwidth_GBps']:.0f} GB/s (same run)",
              f"{'target':<52}{'measured':>9}{'best':>7}  {'goal':<8}met"]
    for row in bench["targets"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        value = "-" if row["value"] is None else f"{row['value']:.2f}"
        best = row.get("value_best_round")
        lines.append(f"{row['target'][:51]:<52}{value:>9}"
                     f"{'-' if best is None else format(best, '.2f'):>7}  {row['goal']:<8}{met}")
    lines += [f"  benchmark skipped {name}: {why}" for name, why in bench["skipped"].items()]
    return lines


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
    env = check_env(SITE if wheels else None)
    facts, builds, results = {}, {}, {}

    def do_environment(until):
        facts.update(environment(env, until - time.monotonic()))
        if not facts["devices"]:
            raise RuntimeError("torch sees no CUDA device")
        env["TORCH_CUDA_ARCH_LIST"] = facts["capability"]  # DeepSpeed builds for this GPU only
        outcomes["environment"].detail = (f"{facts['gpus'][0]}, sm {facts['capability']}, "
                                          f"{facts['memory_GiB']} GiB, {facts['nvcc']}")

    def do_install(until):
        if wheels is None:
            outcomes["install"].detail = "no --wheels: this python's own packages"
            return "skipped"
        if not any(wheels.glob("*.whl")):
            raise RuntimeError(f"no wheels in {wheels} (make gpu-wheels fills it)")
        status = install(wheels, env, log, until)
        facts["packages"] = package_versions(env, max(1.0, until - time.monotonic()))
        outcomes["install"].detail = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
        return status

    def do_benchmark(until):
        builds.update(start_op_builds(env, log))
        facts["builds_until"] = time.monotonic() + BUILD_OPS.budget_s
        return benchmark(out, env, log, until)

    def do_tests(until):
        for op, process in builds.items():  # the DeepSpeed tests need them
            status = finish(process, min(until, facts["builds_until"]))
            outcomes["cuda-tests"].detail += "" if status == "ok" else f"{op}: {status}; "
        return cuda_tests(out, env, log, until)

    def do_summary(until):
        facts["build_seconds"] = built_op_seconds(log)
        results.update(tests=read_junit(out / "junit.xml"),
                       benchmark=read_benchmark(out / "cuda.json"))

    deadline = began
    try:
        actions = dict(environment=do_environment, install=do_install, benchmark=do_benchmark,
                       cuda_tests=do_tests, summary=do_summary)
        for step in STEPS:
            action = actions[step.name.replace("-", "_")]
            outcome = outcomes[step.name]
            deadline += step.budget_s  # a step that ends early leaves its time to the next
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
                    break  # no GPU: nothing else can run
    finally:
        for process in builds.values():
            stop(process, grace_s=2)
    tests = results.get("tests") or read_junit(out / "junit.xml")
    bench = results.get("benchmark") or read_benchmark(out / "cuda.json")
    (out / "summary.json").write_text(json.dumps(dict(
        facts=facts, seconds=round(time.monotonic() - began), budget_s=TOTAL_BUDGET_S,
        steps=[dict(name=o.step.name, budget_s=o.step.budget_s, seconds=round(o.seconds, 1),
                    status=o.status, detail=o.detail) for o in outcomes.values()],
        tests=tests, benchmark=bench), indent=1) + "\n")
    lines = summary_lines(list(outcomes.values()), tests, bench, facts)
    log.write("\n".join(lines))
    print("\n" + "\n".join(lines), flush=True)
    failed = [o for o in outcomes.values() if o.status not in ("ok", "skipped")]
    return 1 if failed or tests.get("failed") or tests.get("missing") else 0


def built_op_seconds(log: Log) -> dict:
    return {m[1]: float(m[2]) for m in re.finditer(r"built (\w+) in ([\d.]+) s",
                                                   log.path.read_text(errors="replace"))}


# --------------------------------------------------------------------------- the dry run
def dry_check_budget() -> list[str]:
    total = sum(step.budget_s for step in STEPS)
    problems = [] if total <= TOTAL_BUDGET_S else [f"steps add up to {total} s > {TOTAL_BUDGET_S}"]
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
    """Collect every ``cuda`` test of the suite: the listed files must hold them all. Without CUDA
    they are run, and each must come back skipped for want of CUDA."""
    import torch
    problems = [f"{name} does not exist" for name in CUDA_TEST_FILES if not (ROOT / name).exists()]
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
    problems += [f"{name} holds no cuda test" for name in CUDA_TEST_FILES if not counts.get(name)]
    problems += [f"{name} holds cuda tests but is not in CUDA_TEST_FILES" for name in counts
                 if name not in CUDA_TEST_FILES]
    return problems, note + "; " + ", ".join(f"{Path(n).name} {c}" for n, c in counts.items())


def dry_check_benchmark() -> tuple[list[str], str]:
    import torch
    import benchmark_optimizers as tool
    cuda = torch.device("cuda")
    names = {case.name for case in tool.cases(cuda)}
    problems = [f"benchmark case {name!r} does not exist" for name in BENCHMARK_CASES
                if name not in names]
    # every case measured once: a target that names a missing case stays unresolved
    results = {(case.set, case.name): {"ms_per_step": 1.0, "ms_all": [1.0], "bw_fraction": 1.0}
               for case in tool.cases(cuda)}
    rows = {row["target"]: row for row in tool.targets(results, cuda)}
    for target in TARGETS:
        if target not in rows:
            problems.append(f"the benchmark has no target {target!r}")
        elif rows[target]["value"] is None:
            problems.append(f"target {target!r} names a benchmark case that does not exist")
    return problems, f"{len(names)} CUDA cases, {len(TARGETS)} targets resolved"


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
    """The summary drawn from real files: the skipped tests' JUnit XML and the CPU benchmark."""
    report = ROOT / "docs" / "benchmarks" / "cpu.json"
    bench = read_benchmark(report)
    lines = summary_lines([Outcome(step, "ok") for step in STEPS], read_junit(junit), bench, {})
    targets = [line for line in lines if line.endswith((" yes", " NO", " -"))]
    if bench.get("missing") or not targets:
        return [f"no target rows from {report.relative_to(ROOT)}"], ""
    return [], f"{len(lines)} lines, {len(targets)} target rows from {report.relative_to(ROOT)}"


def dry_run(args) -> int:
    print(f"GPU check plan (budget {TOTAL_BUDGET_S} s; each step stops at its deadline):")
    print(f"  {'step':<15}{'budget s':>9}  what")
    for step in STEPS:
        print(f"  {step.name:<15}{step.budget_s:>9}  {step.what}")
        if step.name == "benchmark":
            print(f"  {'+ ' + BUILD_OPS.name:<15}{BUILD_OPS.budget_s:>9}  {BUILD_OPS.what}"
                  f" ({', '.join(DEEPSPEED_OPS)}), beside the benchmark")
        if step.name == "cuda-tests":
            print("\n".join(f"  {'':<24}  {name}" for name in CUDA_TEST_FILES))
    print(f"  {'total':<15}{sum(s.budget_s for s in STEPS):>9}")
    junit = Path(tempfile.mkdtemp()) / "junit.xml"
    checks = [("budget", lambda: (dry_check_budget(), "")),
              ("cuda tests", lambda: dry_check_tests(junit)),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", help="wheel cache to install from (make gpu-wheels)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu_check_out"))
    parser.add_argument("--dry-run", action="store_true",
                        help="list the steps and check every test, case and op they name")
    args = parser.parse_args(argv)
    return dry_run(args) if args.dry_run else run_check(args)


if __name__ == "__main__":
    sys.exit(main())
