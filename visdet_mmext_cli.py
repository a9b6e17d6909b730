"""The ``visdet-mmext`` command's entry point, and the list of the packaged configs.

It sits beside the package, not in it: importing ``visdet_mmext`` registers every optimizer
(torch, mmengine and the optimizer packages: seconds), which ``visdet-mmext configs`` does not
need, so that command answers here without importing the package; every other command runs
``visdet_mmext.cli``.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import sys


def config_dir() -> str:
    """The packaged configs' folder, found without importing the package."""
    package = importlib.util.find_spec("visdet_mmext")
    return osp.join(next(iter(package.submodule_search_locations)), "configs")


def packaged_configs() -> dict[str, str]:
    """name (path below the configs folder, no ``.py``) -> absolute path; ``_base_`` files and
    ``_``-prefixed ones excluded."""
    root, found = config_dir(), {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        for name in sorted(files):
            if name.endswith(".py") and not name.startswith("_"):
                path = osp.join(folder, name)
                found[osp.relpath(path, root)[:-3].replace(os.sep, "/")] = path
    return found


def print_configs() -> int:
    configs = packaged_configs()
    width = max(map(len, configs))
    for name, path in configs.items():
        print(f"{name:<{width}}  {path}")
    return 0


def main(argv=None, prog: str = "visdet-mmext") -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["configs"]:
        return print_configs()
    from visdet_mmext.cli import main as run
    return run(argv, prog)


if __name__ == "__main__":
    sys.exit(main())
