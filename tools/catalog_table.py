"""Print docs/optimizers.md's optimizer table from the catalog (name -> class -> extra -> devices).

    python tools/catalog_table.py > /tmp/table.md
    python tools/catalog_table.py --fsdp     # docs/sharding.md's table: exact on FSDP2 shards?

tests/tools/test_readme.py checks that docs/optimizers.md lists every catalog name with these
columns;
tests/fsdp/test_sharding_docs.py that docs/sharding.md holds the --fsdp table.
"""
import sys

from visdet_mmext.catalog import CATALOG, INSTALL_HINTS


def rows() -> list[str]:
    lines = ["| name | class | extra | runs on | notes |", "|---|---|---|---|---|"]
    for spec in CATALOG.values():
        extra = f"`{spec.extra}`" if spec.extra else "core"
        removed = f" (removed in {spec.removed_in})" if spec.removed_in else ""
        notes = "; ".join(part for part in (spec.doc, spec.notes) if part)
        lines.append(f"| `{spec.name}` | `{spec.target.replace(':', '.')}` | {extra} | "
                     f"{', '.join(spec.devices)}{removed} | {notes} |")
    return lines


def fsdp_rows() -> list[str]:
    """Under FullyShardStrategy: the names that are exact on FSDP2 shards (tested), then each
    refusal with the names it applies to."""
    by_outcome: dict = {}
    for spec in CATALOG.values():
        by_outcome.setdefault(spec.fsdp_impossible, []).append(f"`{spec.name}`")
    lines = ["| names | on FSDP2 shards |", "|---|---|"]
    for refusal, names in sorted(by_outcome.items(), key=lambda item: item[0] is not None):
        outcome = "exact" if refusal is None else \
            f"refused: it {refusal.reason}. Fix: {refusal.fix}"
        lines.append(f"| {', '.join(names)} | {outcome} |")
    return lines


def main() -> None:
    if "--fsdp" in sys.argv[1:]:
        print("\n".join(fsdp_rows()))
        return
    print("\n".join(rows()))
    print()
    print("Extras: " + "; ".join(f"`{extra}`: `{hint}`" for extra, hint in INSTALL_HINTS.items()
                                  if extra))


if __name__ == "__main__":
    main()
