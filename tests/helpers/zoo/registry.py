"""What a zoo entry holds, and the fingerprint that ties a reproduction to its upstream model.

To re-record a fingerprint where the package imports: build the model the entry's
``upstream`` names (``MODELS.build(Config.fromfile(<package>/.mim/configs/<config>).model)``
after ``register_all_modules()``, or ``timm.create_model(<name>)``) and take ``fingerprint``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    upstream: str  # the package, version and config/model name the tree was read from
    #: Glob on full parameter names -> "Muon" | "AdamW" for every trainable tensor with >= 2
    #: dims; the first matching pattern wins and every pattern must match something.
    expected: dict[str, str]
    #: sha256 of ``parameter_table`` of the real upstream model, recorded from the package.
    fingerprint: str
    #: Patterns the routing's warnings and doubts must name (and no other may appear).
    warnings: tuple[str, ...] = field(default=())


def parameter_table(model: nn.Module) -> str:
    """One line per parameter, in registration order: name, shape, requires_grad and the
    class names of every module on its path (root first)."""
    modules = dict(model.named_modules())
    lines = []
    for name, param in model.named_parameters():
        parts = name.split(".")[:-1]
        chain = [type(model).__name__] + [type(modules[".".join(parts[:i + 1])]).__name__
                                          for i in range(len(parts))]
        lines.append(f"{name}|{tuple(param.shape)}|{param.requires_grad}|{'/'.join(chain)}")
    return "\n".join(lines)


def fingerprint(model: nn.Module) -> str:
    return hashlib.sha256(parameter_table(model).encode()).hexdigest()
