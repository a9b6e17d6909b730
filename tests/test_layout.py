"""The package's shape: no import cycles, and each layer imports only what it may.

Read from the source, every import statement wherever it sits (an import inside a function
closes a cycle as surely as one at the top, only later), plus ``importlib.import_module`` of a
constant name, so a cycle or a layering leak fails here rather than as an import-order accident
somewhere else.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "visdet_mmext"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules imported anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for item in ast.walk(ast.parse(path.read_text())):
        if isinstance(item, ast.Import):
            found |= {alias.name for alias in item.names}
        elif isinstance(item, ast.ImportFrom):
            base = item.module or ""
            if item.level:
                anchor = package.split(".")[:len(package.split(".")) - item.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in item.names}
        elif isinstance(item, ast.Call) and getattr(item.func, "attr", None) == "import_module" \
                and item.args and isinstance(item.args[0], ast.Constant):
            found.add(item.args[0].value)
    return found


MODULES = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _internal(names):
    return {n for n in names if n in MODULES}


def test_the_walk_sees_imports_inside_functions():
    assert "visdet_mmext.registry.probe" in MODULES["visdet_mmext.cli"]  # inside functions


def test_no_import_cycles():
    graph = {module: _internal(imports) - {module} for module, imports in MODULES.items()}
    visiting, done, cycles = set(), set(), []

    def visit(module, path):
        if module in visiting:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        visiting.add(module)
        for target in sorted(graph[module]):
            # importing a submodule runs its package's __init__ first, which is not a cycle
            if not module.startswith(target + "."):
                visit(target, path + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, cycles


@pytest.mark.parametrize("layer, forbidden", [
    ("visdet_mmext.algorithms", ("mmengine", "visdet_mmext.optim", "visdet_mmext.registry",
                                 "visdet_mmext.deepspeed", "visdet_mmext.compat")),
    ("visdet_mmext.catalog", ("mmengine", "deepspeed", "bitsandbytes", "transformers",
                              "visdet_mmext.optim", "visdet_mmext.registry")),
    ("visdet_mmext.errors", ("torch", "mmengine", "visdet_mmext.")),
    ("visdet_mmext.checkpoint", ("visdet_mmext.optim", "visdet_mmext.registry", "deepspeed")),
])
def test_layers_import_only_what_they_may(layer, forbidden):
    leaks = {module: sorted(n for n in imports if n.startswith(forbidden))
             for module, imports in MODULES.items() if module == layer or
             module.startswith(layer + ".")}
    assert not any(leaks.values()), {m: v for m, v in leaks.items() if v}
