"""The configs that ship with the package, and how a command line names one.

The ``.py`` files beside this one are mmengine configs (read as text by ``Config.fromfile``, never
imported). Every command that takes a config accepts a path, or a packaged config by name:
``demo_muon``, ``demo/demo_muon`` or ``demo/demo_muon.py`` (``visdet-mmext configs`` lists them).
"""
from __future__ import annotations

import os
import os.path as osp

from visdet_mmext_cli import packaged_configs  # the command lists them without this package

from ..echo import echo
from ..errors import ConfigNotFoundError
from ..suggest import did_you_mean

__all__ = ["find_config", "packaged_configs"]


def find_config(name_or_path: str) -> str:
    """A config file: an existing path as given, else the packaged config of that name."""
    if osp.isfile(name_or_path):
        return name_or_path
    configs = packaged_configs()
    key = name_or_path[:-3] if name_or_path.endswith(".py") else name_or_path
    # "configs/demo/demo_muon.py": the path these configs had in a checkout before they moved here
    key = key.replace(os.sep, "/").strip("/").removeprefix("configs/")
    if key in configs:
        return configs[key]
    by_stem = [name for name in configs if name.rsplit("/", 1)[-1] == key]
    if len(by_stem) == 1:
        return configs[by_stem[0]]
    if len(by_stem) > 1:
        raise ConfigNotFoundError(f"{echo(name_or_path, 300)} names several packaged configs: "
                                  f"{', '.join(by_stem)}; give one of these.")
    stems = {name.rsplit("/", 1)[-1] for name in configs}
    raise ConfigNotFoundError(f"No config file {echo(name_or_path, 300)}, and no packaged config "
                              f"of that name.{did_you_mean(key, set(configs) | stems)} "
                              "`visdet-mmext configs` lists the packaged ones.")
