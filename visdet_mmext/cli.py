"""visdet-mmext: train, compare, inspect, and what is available here.

    visdet-mmext train CONFIG [flags]     train (CONFIG: a file or a packaged config's name)
    visdet-mmext compare [ITEMS]          several optimizers on the demo, one picture
    visdet-mmext groups CONFIG [--trace]  the param groups and Muon routing, without training
    visdet-mmext configs                  the packaged configs
    visdet-mmext list [NAMES]             every catalog optimizer and its status here
    visdet-mmext check [NAMES] [--build]  build each available optimizer and take one step
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import json
import sys

from .catalog import CATALOG
from .registry.availability import Availability, qualified_name

#: Commands that are whole tools: the rest of the command line is theirs (module, help).
TOOLS = {
    "train": ("visdet_mmext.tools.train", "train with a config file or a packaged config"),
    "compare": ("visdet_mmext.tools.compare", "train several optimizers on the demo and compare"),
    "groups": ("visdet_mmext.tools.param_groups",
               "print a config's param groups and Muon routing, without training"),
}


def _rows(report, registry, scope_registry=None) -> list[dict]:
    from .registry.probe import resolve_lazy
    from .registry.scopes import explain, shadowing
    rows = []
    for spec in CATALOG.values():
        info = report.availability(spec.name) or Availability("unknown")
        info = resolve_lazy(spec.name, info, registry.module_dict.get(spec.name))
        row = dict(name=spec.name, status=info.status, reason=info.reason,
                   resolves_to=info.resolved, provider=spec.provider, extra=spec.extra or "",
                   devices=", ".join(spec.devices), install=spec.install_hint, doc=spec.doc,
                   fsdp2=_fsdp2(spec))
        shadowed = scope_registry is not None and shadowing(registry, scope_registry, spec.name)
        if shadowed:
            theirs = shadowed[1]
            row.update(status=f"{scope_registry.scope}'s class",
                       resolves_to=qualified_name(theirs),
                       reason=explain(spec.name, scope_registry.scope, *shadowed))
        rows.append(row)
    for name in sorted(set(registry.module_dict) - set(CATALOG)):
        info = report.availability(name)
        obj = registry.module_dict[name]
        rows.append(dict(name=name, status=info.status if info else "registered by mmengine",
                         reason=(info.reason if info else "not in the catalog"),
                         resolves_to=qualified_name(obj),
                         provider=info.provider if info else "mmengine", extra="", devices="",
                         install="", doc="", fsdp2=""))
    return rows


def _fsdp2(spec) -> str:
    """How the optimizer steps FSDP2 shards (FullyShardStrategy): exact, or refused and why."""
    refusal = spec.fsdp_impossible
    return "exact" if refusal is None else f"refused: it {refusal.reason}. Fix: {refusal.fix}"


def _matches(name: str, patterns: list[str]) -> bool:
    """A glob (``*8bit``) matches the whole name, a plain word any part; case ignored."""
    lowered = name.lower()
    return not patterns or any(
        fnmatch.fnmatchcase(lowered, p.lower()) if any(c in p for c in "*?[") else p.lower() in lowered
        for p in patterns)


def _print_table(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows)
    status_width = max(len(r["status"]) for r in rows)
    print(f"{'name':<{width}}  {'status':<{status_width}}  {'FSDP2':<7}  class")
    for row in rows:
        detail = row["resolves_to"] or (row["install"] if row["status"] == "missing package" else "")
        reason = f"  ({row['reason']})" if row["reason"] else ""
        fsdp2 = row["fsdp2"].partition(":")[0]
        print(f"{row['name']:<{width}}  {row['status']:<{status_width}}  {fsdp2:<7}  "
              f"{detail}{reason}")
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print("\n" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


def command_list(args) -> int:
    import visdet_mmext

    from . import compat
    from .optim import OPTIMIZERS
    from .registry.scopes import scope_registry
    # Resolving DeepSpeed's names imports it, and it logs to stdout: keep stdout for the table.
    with contextlib.redirect_stdout(sys.stderr):
        scoped = scope_registry(OPTIMIZERS, args.scope) if args.scope else None
        rows = _rows(visdet_mmext.REPORT, OPTIMIZERS, scoped)
    rows = [row for row in rows if _matches(row["name"], args.names)]
    if args.json:
        json.dump(dict(optimizers=rows, providers={name: dict(value=p.value, distribution=p.distribution,
                                                              error=p.error, registered=p.registered)
                                                   for name, p in visdet_mmext.REPORT.providers.items()},
                       patches=compat.report(), filtered_messages=compat.noise.report(),
                       notes=visdet_mmext.REPORT.notes), sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        print(f"no optimizer name matches {' '.join(args.names)}", file=sys.stderr)
        return 1
    _print_table(rows)
    for provider in visdet_mmext.REPORT.providers.values():
        if not provider.ok:
            print(f"provider {provider.name} ({provider.distribution}) failed: {provider.error}")
    for note in visdet_mmext.REPORT.notes + compat.noise.explanations():
        print(f"note: {note}")
    return 0


def _pending_builds(names: list[str]) -> dict:
    """name -> the DeepSpeed op build its first use would start here (imports DeepSpeed only
    when a DeepSpeed name is asked for)."""
    from .deepspeed.ops import pending_build
    specs = [CATALOG[name] for name in names if name in CATALOG and CATALOG[name].op_builder]
    if not specs:
        return {}
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed logs to stdout as it is imported
        found = {spec.name: pending_build(spec) for spec in specs}
    return {name: build for name, build in found.items() if build is not None}


def _build_ops(pending: dict) -> None:
    """Build each op once, in this process (the build announces itself, with progress)."""
    from .deepspeed.ops import about
    builds = {build.op_name: build for build in pending.values()}
    for index, build in enumerate(builds.values(), 1):
        users = ", ".join(name for name, b in pending.items() if b.op_name == build.op_name)
        print(f"[build {index}/{len(builds)}] DeepSpeed's {build.op_name} op for {users}: "
              f"{about(build.estimate())} here", flush=True)
        build.builder.load(verbose=False)


def command_check(args) -> int:
    import visdet_mmext
    from .deepspeed.ops import about, extensions_root
    from .registry.probe import take_one_step
    names = args.names or visdet_mmext.REPORT.usable_names()
    pending = _pending_builds(names)
    if pending and args.build:
        _build_ops(pending)
        pending = {}
    failures = 0
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name} ...", end=" ", flush=True)
        if name in pending:
            build = pending[name]
            print(f"not built: DeepSpeed's {build.op_name} op builds on first use, "
                  f"{about(build.estimate())} here (check --build builds it now)")
            continue
        result = take_one_step(name)
        failures += not result.ok
        print(f"{'ok' if result.ok else 'FAILED'} ({result.seconds:.2f} s) {result.detail}")
    stepped = len(names) - len(pending)
    print(f"\n{stepped - failures}/{stepped} optimizers took a real step")
    if pending:
        ops = sorted({build.op_name for build in pending.values()})
        total = sum({b.op_name: b.estimate() for b in pending.values()}.values())
        print(f"{len(pending)} wait for DeepSpeed ops not built yet ({', '.join(ops)}: "
              f"{about(total)} here, into {extensions_root()}); `check --build` builds them")
    return 1 if failures else 0


def command_configs(args) -> int:
    from visdet_mmext_cli import print_configs
    return print_configs()


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="`%s COMMAND --help` shows a command's flags." % prog)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in TOOLS.items():
        commands.add_parser(name, help=summary, add_help=False)
    configs = commands.add_parser("configs", help="list the packaged configs (names and files)")
    configs.set_defaults(run=command_configs)
    listing = commands.add_parser("list", help="every catalog optimizer and its status here")
    listing.add_argument("names", nargs="*", help="only names containing these words, or "
                                                  "matching these globs (e.g. adam '*8bit')")
    listing.add_argument("--scope", help="resolve names as configs with this default_scope do "
                                         "(e.g. mmpretrain)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=command_list)
    check = commands.add_parser("check", help="build each available optimizer and take one step")
    check.add_argument("names", nargs="*", help="only these names (default: every available one)")
    check.add_argument("--build", action="store_true",
                       help="first JIT-build the DeepSpeed ops that are not built yet (minutes)")
    check.set_defaults(run=command_check)
    return parser


def main(argv=None, prog: str = "visdet-mmext") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from .errors import VisdetError
    try:
        if argv and argv[0] in TOOLS:  # the tool parses its own flags (as tools/train.py does)
            module = importlib.import_module(TOOLS[argv[0]][0])
            return module.main(argv[1:], prog=f"{prog} {argv[0]}")
        args = _parser(prog).parse_args(argv)
        return args.run(args)
    except VisdetError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 2
