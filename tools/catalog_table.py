"""Print the README's optimizer table from the catalog (name -> class -> extra -> devices).

    python tools/catalog_table.py > /tmp/table.md

tests/test_readme.py checks that the README lists every catalog name with these columns.
"""
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


def main() -> None:
    print("\n".join(rows()))
    print()
    print("Extras: " + "; ".join(f"`{extra}`: `{hint}`" for extra, hint in INSTALL_HINTS.items()
                                  if extra))


if __name__ == "__main__":
    main()
