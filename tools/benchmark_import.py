"""What ``import visdet_mmext`` costs on top of ``import mmengine.optim``, and what it imports.

    python tools/benchmark_import.py [--runs 7] [--baseline DIR] [--json out.json]

Each run is a fresh interpreter: ``python -X importtime -c "import mmengine.optim; import
visdet_mmext"``. Python's own import timer gives the cumulative time of each top-level import, so
the package's share is read apart from mmengine's (which imports torch, and bitsandbytes,
transformers and dadaptation when they are installed). Bytecode caches are on (a warm-up run
writes them), as in an installed package. Runs alternate with a plain
``import mmengine.optim`` run so that load changes hit both alike. ``--baseline DIR`` (another
source tree of the package, e.g. ``git worktree add /tmp/before main``) is measured in the same
rounds, each round running both, and the ratio per round is reported. Reports medians, the load
average, and the optional optimizer packages that importing the package pulled in beyond
mmengine's.

The first import after ``mmengine.optim`` usually sets off one of Python's full garbage
collections over everything torch and transformers left on the heap (0.5-0.7 s on a 2-core
machine), whichever module allocates next; a second number, with ``gc.collect()`` run before the
package is imported, is the package's own work.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

#: Packages a catalog provider serves; mmengine.optim itself imports some of them.
OPTIONAL = ("schedulefree", "prodigyopt", "pytorch_optimizer", "dadaptation", "transformers",
            "bitsandbytes", "deepspeed", "lion_pytorch")
PROBE = ("import sys, mmengine.optim; before = set(sys.modules); import visdet_mmext; "
         "print(sorted(m for m in {optional!r} if m in sys.modules and m not in before))")
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def cumulative_seconds(stderr: str) -> dict[str, float]:
    """Top-level module -> cumulative import seconds, from ``-X importtime`` output."""
    found = {}
    for match in _LINE.finditer(stderr):
        if not match.group(3):  # indentation 0: imported by the -c code itself
            found[match.group(4)] = int(match.group(2)) / 1e6
    return found


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def environment(tree: str) -> dict[str, str]:
    """Import the package from ``tree`` (run there: the current folder comes first on the path),
    bytecode caches on, as in an installed package (pip compiles it; a warm-up run writes them)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = tree
    return env


def one_run(code: str, tree: str = ROOT) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                            text=True, check=True, env=environment(tree), cwd=tree)
    return cumulative_seconds(result.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", help="another source tree of the package, measured alongside")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
    both = "import mmengine.optim; import visdet_mmext"
    collected = "import mmengine.optim, gc; gc.collect(); import visdet_mmext"
    for tree in trees.values():
        one_run(both, tree)  # warm-up: writes the bytecode caches
    load_before = os.getloadavg()
    mmengine_alone, package = [], {name: [] for name in trees}
    own = {name: [] for name in trees}
    for _ in range(args.runs):
        mmengine_alone.append(one_run("import mmengine.optim")["mmengine.optim"])
        for name, tree in trees.items():
            package[name].append(one_run(both, tree)["visdet_mmext"])
            own[name].append(one_run(collected, tree)["visdet_mmext"])
    numbers = dict(runs=args.runs, load_before=load_before, load_after=os.getloadavg(),
                   mmengine_optim_s=statistics.median(mmengine_alone), trees=trees)
    print(f"import mmengine.optim: {numbers['mmengine_optim_s']:.2f} s (median of {args.runs})")
    for name, tree in trees.items():
        times = package[name]
        pulled = subprocess.run([sys.executable, "-c", PROBE.format(optional=OPTIONAL)],
                                capture_output=True, text=True, check=True,
                                env=environment(tree), cwd=tree).stdout.strip()
        numbers[name] = dict(visdet_mmext_over_mmengine_s=statistics.median(times),
                             min_s=min(times), max_s=max(times),
                             own_work_s=statistics.median(own[name]),
                             optional_packages_imported=pulled)
        print(f"{name}: import visdet_mmext after mmengine.optim {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}); after a gc.collect() "
              f"{statistics.median(own[name]):.2f} s; optional packages it imported beyond "
              f"mmengine's: {pulled}")
    if args.baseline:
        for label, series in (("as imported", package), ("own work", own)):
            ratio = statistics.median(n / b for n, b in zip(series["this tree"], series["baseline"]))
            numbers[f"ratio_{label.replace(' ', '_')}"] = ratio
            print(f"this tree / baseline, {label}, median of the per-round ratios: {ratio:.2f}")
    print("load average before/after: "
          f"{' '.join(f'{x:.2f}' for x in load_before)} / "
          f"{' '.join(f'{x:.2f}' for x in numbers['load_after'])}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
