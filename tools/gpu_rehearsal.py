#!/usr/bin/env python
"""``make gpu-rehearsal``: the GPU check replayed on a machine without CUDA, in an environment
built like the GPU machine's, so that the rare GPU slot fails on nothing but CUDA (docs/gpu.md).

1. The environment: a virtual environment of the image's Python holding the image's packages
   alone (tools/gpu_image.py: torch 2.11 with its CUDA libraries, Triton, transformers, pytest,
   ...; every distribution pip adds must be an image package too). Built once (a ~2 GB download,
   ~4.5 GB on disk) and reused while tools/gpu_image.py's requirements stay the same.
2. The check: ``tools/gpu_check.py --rehearse --wheels gpu_wheels``, run by that environment's
   Python: the wheels installed as on the GPU machine, every requirement met, the package's import
   and ``list``, the test files derived from the cuda marker collected with every module they
   import, the benchmark's plan, and every CUDA test run (each must skip for want of CUDA).
3. A negative control: the same check, with wheels the GPU tests need taken out of the cache,
   must fail naming each (a rehearsal that cannot fail proves nothing).
4. The CPU tests of what the GPU check exercises, on the image's torch (the subset below).

    python tools/gpu_rehearsal.py --wheels gpu_wheels       # what make gpu-rehearsal runs
    python tools/gpu_rehearsal.py --env-only                # build the environment, nothing else
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from gpu_image import PACKAGES, PYTHON, normalize, rehearsal_requirements  # noqa: E402
from gpu_wheels import DISTRIBUTIONS as CARRIED  # noqa: E402

#: where the environments live (one per requirements hash; an older one is removed)
CACHE = Path(os.environ.get("VISDET_MMEXT_REHEARSAL_CACHE")
             or Path.home() / ".cache" / "visdet-mmext" / "gpu-rehearsal")
#: wheel -> what the check must report without it: each caught by another of its checks
CONTROLS = {
    "schedulefree": "AdamWScheduleFree: missing package",  # a catalog row the CUDA sweep trains
    "pydantic": "deepspeed needs pydantic",  # a requirement of another carried wheel
    "lion-pytorch": "lion_pytorch (imported by tools/benchmark_optimizers.py) is not installed",
}
#: The CPU tests run on the image's torch: the CPU twins of what the GPU check runs and the code
#: that reads torch's internals: the native optimizers and their compiled paths (dynamo,
#: inductor), every catalog optimizer's training and state round trip, bitsandbytes' 8-bit state,
#: the autograd graph Muon's routing walks, torch.load's weights-only allowlist. Not here: the
#: DeepSpeed and multi-process suites (their JIT builds for a second torch would double the
#: rehearsal; the GPU check builds its own ops against the machine's torch), the tools' tests and
#: the registry's entry-point and naming tests (subprocesses that read no torch internals).
CPU_TESTS = ("tests/algorithms", "tests/registry/test_optimizer_sweep.py",
             "tests/registry/test_bnb_8bit.py", "tests/optim/test_routing.py",
             "tests/checkpoint/test_safe_load.py")
CPU_MARKS = "not slow and not deepspeed and not cuda"


def say(message: str) -> None:
    print(f"[rehearsal] {message}", flush=True)


def find_python() -> str:
    """The image's Python version here, else the nearest (then said: the rehearsal is weaker)."""
    candidates = [shutil.which(f"python{PYTHON}"), *sorted(glob.glob(
        os.path.expanduser(f"~/.pyenv/versions/{PYTHON}*/bin/python{PYTHON}")))]
    for found in filter(None, candidates):  # a pyenv shim may name a version it does not run
        if subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
            return found
    say(f"no python{PYTHON} here: rehearsing with {sys.executable} "
        f"(Python {sys.version.split()[0]}); the GPU machine runs {PYTHON}")
    return sys.executable


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=ROOT, check=True, **kwargs)


@contextlib.contextmanager
def locked(path: Path):
    """One builder at a time: rehearsals of several checkouts share the environment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def environment(python: str) -> Path:
    """The rehearsal environment's Python, built unless an identical one is complete."""
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    requirements = rehearsal_requirements()
    key = hashlib.sha256(json.dumps([version, requirements]).encode()).hexdigest()[:12]
    env = CACHE / f"py{version}-{key}"
    done = env / "rehearsal.json"
    with locked(CACHE / ".lock"):
        if done.exists():
            say(f"environment {env} (reused)")
            return env / "bin" / "python"
        for old in CACHE.glob("py*"):  # a stale or half-built one (~4.5 GB each)
            shutil.rmtree(old)
        began = time.monotonic()
        say(f"building {env}: Python {version}, {len(requirements)} image packages and what "
            "they need (torch's CUDA build with its libraries: ~2 GB to fetch, a few minutes)")
        run([python, "-m", "venv", env])
        run([env / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile",
             *requirements], env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
        listed = json.loads(run([env / "bin" / "python", "-m", "pip", "list", "--format=json"],
                                capture_output=True, text=True).stdout)
        # The image's list misses some dependencies of its own packages (matplotlib's pyparsing):
        # one outside it is noted; one the wheels carry would hide their absence, so it stops this
        foreign = sorted(normalize(p["name"]) for p in listed
                         if normalize(p["name"]) not in PACKAGES)
        masking = [name for name in foreign if name in map(normalize, CARRIED)]
        if masking:
            shutil.rmtree(env)
            raise SystemExit(f"the rehearsal environment holds {', '.join(masking)}, which the "
                             "GPU image lacks and the wheels carry: pin what pulls them in "
                             "(tools/gpu_image.py)")
        if foreign:
            say(f"not in the image's package list, pulled in by its packages: "
                f"{', '.join(foreign)}")
        done.write_text(json.dumps(dict(python=version, requirements=requirements,
                                        seconds=round(time.monotonic() - began),
                                        outside_the_list=foreign,
                                        packages={p["name"]: p["version"] for p in listed}),
                                   indent=1) + "\n")
        say(f"built in {time.monotonic() - began:.0f} s")
    return env / "bin" / "python"


def check_env(python: Path) -> dict:
    """The rehearsal's own caches, beside its environment (ops built for its torch)."""
    home = python.parent.parent
    return dict(os.environ, TORCH_EXTENSIONS_DIR=str(home / "torch_extensions"),
                TORCHINDUCTOR_CACHE_DIR=str(home / "inductor"), PYTHONUNBUFFERED="1")


def rehearse(python: Path, wheels: Path, out: Path) -> int:
    say(f"the GPU check, rehearsed: {python} tools/gpu_check.py --rehearse --wheels {wheels}")
    return subprocess.run([python, "tools/gpu_check.py", "--rehearse", "--wheels", wheels,
                           "--out", out], cwd=ROOT, env=check_env(python)).returncode


def control(python: Path, wheels: Path, out: Path) -> list[str]:
    """The check with the CONTROLS' wheels taken out of the cache must fail, naming each."""
    with tempfile.TemporaryDirectory() as cut:
        taken = {normalize(name) for name in CONTROLS}
        for wheel in wheels.glob("*.whl"):
            if normalize(wheel.name.split("-")[0]) not in taken:
                os.symlink(wheel.resolve(), Path(cut) / wheel.name)
        say(f"control: the check without {', '.join(CONTROLS)} must fail, naming each")
        done = subprocess.run([python, "tools/gpu_check.py", "--rehearse", "--wheels", cut,
                               "--stop-after", "install", "--out", out], cwd=ROOT,
                              env=check_env(python), capture_output=True, text=True)
    missed = [f"without {name} the check did not say {expected!r}"
              for name, expected in CONTROLS.items() if expected not in done.stdout]
    if done.returncode != 1:
        missed.append(f"without {', '.join(CONTROLS)} the check exited {done.returncode}")
    if missed:
        missed[-1] += f":\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
    say("control: " + ("caught each" if not missed else "MISSED"))
    return missed


def cpu_tests(python: Path, wheels: Path) -> int:
    """The CPU subset on the image's torch. Tests set PYTHONPATH for their own subprocesses, so
    the path is laid by a small environment of its own instead: the checkout, then the wheels
    (installed as the check installs them), then the image's packages."""
    with tempfile.TemporaryDirectory(prefix="visdet-mmext-rehearsal-") as folder:
        site, overlay = Path(folder) / "site", Path(folder) / "env"
        run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--target", site, *sorted(wheels.glob("*.whl"))])
        image_site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True).stdout.strip()
        run([python, "-m", "venv", "--without-pip", overlay])
        overlay_python = overlay / "bin" / "python"
        overlay_site = run([overlay_python, "-c",
                            "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           capture_output=True, text=True).stdout.strip()
        # the image's folder as a site folder, so that its own .pth files run (setuptools'
        # distutils shim, which mmengine needs on Python 3.12)
        (Path(overlay_site) / "rehearsal.pth").write_text(
            f"{ROOT}\n{site}\nimport site; site.addsitedir({image_site!r})\n")
        say(f"CPU tests on the image's torch: pytest -m '{CPU_MARKS}' {' '.join(CPU_TESTS)}")
        return subprocess.run([overlay_python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-m", CPU_MARKS, "--durations=10", *CPU_TESTS], cwd=ROOT,
                              env=check_env(python)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", default=str(ROOT / "gpu_wheels"),
                        help="the wheel cache to rehearse with (make gpu-wheels fills it)")
    parser.add_argument("--out", default=str(ROOT / "gpu_rehearsal_out"))
    parser.add_argument("--env-only", action="store_true", help="build the environment only")
    args = parser.parse_args(argv)
    began = time.monotonic()
    python = environment(find_python())
    if args.env_only:
        return 0
    wheels, out = Path(args.wheels).resolve(), Path(args.out).resolve()
    failures = []
    if rehearse(python, wheels, out / "check"):
        failures.append("the rehearsed check failed (its summary is above)")
    failures += control(python, wheels, out / "control")
    if cpu_tests(python, wheels):
        failures.append("CPU tests failed on the image's torch")
    for failure in failures:
        print(f"REHEARSAL FAILED: {failure}", flush=True)
    say(f"{'failed' if failures else 'passed'} in {time.monotonic() - began:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
