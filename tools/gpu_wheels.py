#!/usr/bin/env python
"""Fill the wheel cache that ``make gpu-check`` installs from on a GPU machine (``make gpu-wheels``).

The GPU machine's image (tools/gpu_image.py: Python 3.12, a CUDA torch, Triton, transformers,
pytest, ...) reaches no package index (docs/gpu.md). What the check needs beyond it travels with
the checkout as wheels for CPython 3.12 on manylinux x86-64:

* downloaded: mmengine and its small dependencies, bitsandbytes (slimmed to its CPU and CUDA
  ``--cuda`` kernels), DeepSpeed's Python dependencies, the optional optimizer packages
  (schedulefree, prodigyopt, pytorch-optimizer, lion-pytorch; transformers in the tested version,
  which the image has in another), zlib-ng;
* built here: DeepSpeed and dadaptation (published as sdists only; both build to pure-Python
  wheels, DeepSpeed with no op compiled in, so its ops JIT-build on the GPU machine), and this
  package from the checkout.

Versions are constraints/tested.txt's, else this environment's (the versions the suite runs on).

    python tools/gpu_wheels.py                    # into gpu_wheels/ (ignored by git)
    python tools/gpu_wheels.py --dest DIR --cuda 130
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from gpu_image import CUDA, PYTHON as PYTHON_VERSION, normalize  # noqa: E402

#: what the device tool carries per call: the working tree and the wheels together
CARRY_LIMIT = 64 * 2 ** 20
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
#: distribution -> what it is for on the GPU machine
DISTRIBUTIONS = {
    "visdet-mmext": "this package, built from the checkout",
    "mmengine": "the Runner and optim wrappers",
    "addict": "mmengine", "termcolor": "mmengine", "yapf": "mmengine", "platformdirs": "yapf",
    "zlib-ng": "this package (checkpoint CRCs)",
    "bitsandbytes": "8-bit and paged optimizers",
    "deepspeed": "FusedAdam/FusedLamb/FusedLion, ZeRO",
    "hjson": "deepspeed", "pydantic": "deepspeed", "pydantic-core": "pydantic",
    "annotated-types": "pydantic", "typing-inspection": "pydantic",
    "typing-extensions": "pydantic (newer than the machine's)",
    "dadaptation": "D-Adaptation optimizers",
    "lion-pytorch": "the Lion peer of the benchmark",
    "transformers": "Adafactor (the tested version; the image's is older)",
    "schedulefree": "the schedule-free optimizers",
    "prodigyopt": "Prodigy",
    "pytorch-optimizer": "ADOPT, Adan, SOAP, SophiaH",
}
#: published as sdists only (or the checkout): built into pure-Python wheels here
BUILT_HERE = ("deepspeed", "dadaptation")


def pinned_versions() -> dict[str, str]:
    """Distribution -> version: constraints/tested.txt, else the installed one, else pyproject."""
    tested = {}
    for line in (ROOT / "constraints" / "tested.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if match:
            tested[normalize(match[1])] = match[2]
    project = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    versions = {}
    for name in DISTRIBUTIONS:
        if name == "visdet-mmext":
            versions[name] = project
        elif name in tested:
            versions[name] = tested[name]
        else:
            versions[name] = metadata.version(name)
    return versions


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution, version) of a wheel file."""
    name, version = path.name.split("-")[:2]
    return normalize(name), version


def pip(*args: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True,
                   env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", **(env or {})))


def download(dest: Path, requirements: list[str]) -> None:
    if not requirements:
        return
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    pip("download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
        "--implementation", "cp", *platforms, "-d", str(dest), *requirements)


def build(dest: Path, requirements: list[str]) -> None:
    if not requirements:
        return
    # DS_BUILD_OPS=0: no op compiled in, so the wheel is pure Python and its ops JIT-build
    # against the GPU machine's torch and CUDA
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), *requirements,
        env={"DS_BUILD_OPS": "0"})


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def slim_bitsandbytes(wheel: Path, cuda: str) -> int:
    """Keep only the CPU library and the ``cuda`` one (e.g. 130 for torch's CUDA 13.0); returns
    the bytes saved. The wheel's RECORD is rewritten to match."""
    keep = {"libbitsandbytes_cpu.so", f"libbitsandbytes_cuda{cuda}.so"}
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as source:
        names = source.namelist()
        libraries = [n for n in names if re.fullmatch(r"bitsandbytes/libbitsandbytes_\w+\.so", n)]
        if not {f"bitsandbytes/{lib}" for lib in keep} <= set(libraries):
            raise SystemExit(f"{wheel.name} has no libbitsandbytes_cuda{cuda}.so; it has "
                             f"{', '.join(sorted(Path(n).name for n in libraries))}")
        dropped = {n for n in libraries if Path(n).name not in keep}
        if not dropped:
            return 0
        slim = wheel.with_suffix(".slim")
        with zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                if info.filename in dropped:
                    continue
                data = source.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    lines = [line for line in data.decode().splitlines()
                             if line.split(",")[0] not in dropped]
                    data = ("\n".join(lines) + "\n").encode()
                target.writestr(info, data)
    slim.replace(wheel)
    return before - wheel.stat().st_size


def tree_bytes() -> int:
    """Bytes of what the device tool sends besides carried folders: tracked and untracked files
    that git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed
               if name and (ROOT / name.decode()).is_file())


def check(dest: Path, versions: dict[str, str]) -> list[str]:
    """Problems with the cache: a distribution missing, present twice, or in another version."""
    found: dict[str, list[str]] = {}
    for wheel in dest.glob("*.whl"):
        name, version = wheel_name(wheel)
        found.setdefault(name, []).append(version)
    problems = []
    for name, version in versions.items():
        have = found.pop(normalize(name), [])
        if have != [version]:
            problems.append(f"{name}: want {version}, have {', '.join(have) or 'none'}")
    problems += [f"{name}: not needed (remove it; pip installs every wheel there)"
                 for name in found]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=str(ROOT / "gpu_wheels"))
    parser.add_argument("--cuda", default=CUDA,
                        help="bitsandbytes kernels to keep: torch.version.cuda without the dot "
                             f"on the GPU machine ({CUDA}: the image's, tools/gpu_image.py)")
    args = parser.parse_args(argv)
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    versions = pinned_versions()
    for wheel in dest.glob("*.whl"):  # one version of each: two would stop the install there
        name, version = wheel_name(wheel)
        if versions.get(name) != version:
            wheel.unlink()
    wanted = {normalize(n) for n in versions}
    have = {wheel_name(w)[0] for w in dest.glob("*.whl")} & wanted
    missing = [n for n in versions if normalize(n) not in have]
    download(dest, [f"{n}=={versions[n]}" for n in missing
                    if n not in BUILT_HERE and n != "visdet-mmext"])
    build(dest, [f"{n}=={versions[n]}" for n in missing if n in BUILT_HERE])
    for stale in dest.glob("visdet_mmext-*.whl"):  # always rebuilt: the checkout changes
        stale.unlink()
    build(dest, [str(ROOT)])
    saved = slim_bitsandbytes(next(dest.glob("bitsandbytes-*.whl")), args.cuda)

    problems = check(dest, versions)
    wheels = sorted(dest.glob("*.whl"), key=lambda w: -w.stat().st_size)
    total = sum(w.stat().st_size for w in wheels)
    tree = tree_bytes()
    print(f"\n{'wheel':<72} {'KiB':>8}")
    for wheel in wheels:
        print(f"{wheel.name:<72} {wheel.stat().st_size / 1024:>8.0f}")
    print(f"{len(wheels)} wheels, {total / 2 ** 20:.1f} MiB (bitsandbytes slimmed by "
          f"{saved / 2 ** 20:.1f} MiB); working tree {tree / 2 ** 20:.1f} MiB; together "
          f"{(total + tree) / 2 ** 20:.1f} of the {CARRY_LIMIT / 2 ** 20:.0f} MiB one call carries")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if total + tree > CARRY_LIMIT:
        print("too large for one device call", file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
