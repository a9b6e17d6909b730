"""``FlexibleRunner`` with a config that has no ``env_cfg``.

``FlexibleRunner.from_cfg`` passes ``env_cfg=None`` then, and ``build_strategy`` fails with
``TypeError: ... not NoneType``; ``None`` now means ``build_strategy``'s own default.
"""
from __future__ import annotations

import copy
import inspect

from . import patch, replace_attribute


@patch(package="mmengine", versions=">=0.10.7,<0.11", module="mmengine.runner._flexible_runner",
       fixes="a FlexibleRunner config without env_cfg fails in build_strategy with a TypeError")
def mmengine_flexible_runner_env_cfg(module) -> None:
    signature = inspect.signature(module.FlexibleRunner.build_strategy)
    default = signature.parameters["env_cfg"].default

    def make(build_strategy):
        def build_strategy_with_default_env(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            if bound.arguments.get("env_cfg", default) is None:
                bound.arguments["env_cfg"] = copy.deepcopy(default)
            return build_strategy(*bound.args, **bound.kwargs)
        return build_strategy_with_default_env

    replace_attribute(module.FlexibleRunner, "build_strategy", make)
