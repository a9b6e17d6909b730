"""``python -m visdet_mmext list|check``: what is available here, and does it really step."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .catalog import CATALOG
from .registry.availability import Availability


def _rows(report, registry) -> list[dict]:
    from .registry.probe import resolve_lazy
    rows = []
    for spec in CATALOG.values():
        info = report.availability(spec.name) or Availability("unknown")
        info = resolve_lazy(spec.name, info, registry.module_dict.get(spec.name))
        rows.append(dict(name=spec.name, status=info.status, reason=info.reason,
                         resolves_to=info.resolved, provider=spec.provider, extra=spec.extra or "",
                         devices=", ".join(spec.devices), install=spec.install_hint, doc=spec.doc))
    for name in sorted(set(registry.module_dict) - set(CATALOG)):
        info = report.availability(name)
        obj = registry.module_dict[name]
        rows.append(dict(name=name, status=info.status if info else "registered by mmengine",
                         reason=(info.reason if info else "not in the catalog"),
                         resolves_to=f"{obj.__module__}.{obj.__qualname__}",
                         provider=info.provider if info else "mmengine", extra="", devices="",
                         install="", doc=""))
    return rows


def _print_table(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows)
    status_width = max(len(r["status"]) for r in rows)
    for row in rows:
        detail = row["resolves_to"] or (row["install"] if row["status"] == "missing package" else "")
        reason = f"  ({row['reason']})" if row["reason"] else ""
        print(f"{row['name']:<{width}}  {row['status']:<{status_width}}  {detail}{reason}")
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print("\n" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


def command_list(args) -> int:
    import visdet_mmext

    from . import compat
    from .optim import OPTIMIZERS
    # Resolving DeepSpeed's names imports it, and it logs to stdout: keep stdout for the table.
    with contextlib.redirect_stdout(sys.stderr):
        rows = _rows(visdet_mmext.REPORT, OPTIMIZERS)
    if args.json:
        json.dump(dict(optimizers=rows, providers={name: dict(value=p.value, distribution=p.distribution,
                                                              error=p.error, registered=p.registered)
                                                   for name, p in visdet_mmext.REPORT.providers.items()},
                       patches=compat.report(), notes=visdet_mmext.REPORT.notes), sys.stdout, indent=2)
        print()
    else:
        _print_table(rows)
        for provider in visdet_mmext.REPORT.providers.values():
            if not provider.ok:
                print(f"provider {provider.name} ({provider.distribution}) failed: {provider.error}")
        for note in visdet_mmext.REPORT.notes:
            print(f"note: {note}")
    return 0


def command_check(args) -> int:
    import visdet_mmext
    from .registry.probe import take_one_step
    names = args.names or visdet_mmext.REPORT.usable_names()
    failures = 0
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name} ...", end=" ", flush=True)
        result = take_one_step(name)
        failures += not result.ok
        print(f"{'ok' if result.ok else 'FAILED'} ({result.seconds:.2f} s) {result.detail}")
    print(f"\n{len(names) - failures}/{len(names)} optimizers took a real step")
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visdet_mmext",
                                     description="Optimizers for mmengine: availability and checks")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every catalog optimizer and its status here")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=command_list)
    check = commands.add_parser("check", help="build each available optimizer and take one step")
    check.add_argument("names", nargs="*", help="only these names (default: every available one)")
    check.set_defaults(run=command_check)
    args = parser.parse_args(argv)
    return args.run(args)
