"""One catalog row: everything this package knows about one optimizer name.

A row names the class and says how it behaves with mmengine and DeepSpeed; every other module
looks facts up here (``CATALOG[name]``, or ``CATALOG.spec_of(optimizer)`` for a built one) instead
of keeping its own list.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: pip extra -> what to install. `None` means the package is a core dependency.
INSTALL_HINTS = {
    None: "pip install visdet-mmext",
    "bnb": "pip install 'visdet-mmext[bnb]'  (bitsandbytes >= 0.50 runs on CPU too)",
    "deepspeed": "pip install 'visdet-mmext[deepspeed]'",
    "dadapt": "pip install 'visdet-mmext[dadapt]'",
    "hf": "pip install 'visdet-mmext[hf]'",
    "schedulefree": "pip install 'visdet-mmext[schedulefree]'",
    "prodigy": "pip install 'visdet-mmext[prodigy]'",
    "pytorch-optimizer": "pip install 'visdet-mmext[pytorch-optimizer]'",
}

#: How ZeRO (DeepSpeed) can run an optimizer. Under ZeRO each param group becomes one flat 1-D
#: partition per rank, and with ``offload_optimizer`` DeepSpeed steps only its own CPU classes.
ZERO_AS_ADAM = "DeepSpeedCPUAdam"  # offload: rebuilt as DeepSpeedCPUAdam
ZERO_AS_LION = "DeepSpeedCPULion"  # offload: rebuilt as DeepSpeedCPULion
ZERO_AS_ADAGRAD = "DeepSpeed config Adagrad"  # offload: DeepSpeed builds its CPU Adagrad itself
ZERO_AS_MUON = "DeepSpeed Muon"  # ZeRO >= 1: DeepSpeed's Muon, with this package's routing
ZERO_NATIVE = "itself"  # already what ZeRO-Offload wants (DeepSpeed's CPU classes)


@dataclass(frozen=True)
class Impossible:
    """Why an optimizer can never train under a sharding engine (DeepSpeed ZeRO, FSDP2), and
    what to use instead."""
    reason: str
    fix: str
    from_stage: int = 1  # ZeRO: the lowest stage it fails at (0: under DeepSpeed at all)


@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # the registry name users write in `optimizer=dict(type=...)`
    provider: str  # the provider that registers it (registry.loader.OWN_PROVIDERS)
    target: str  # "module:attribute" of the class
    doc: str  # one line for the README and `list`
    extra: str | None = None  # pip extra that brings the package
    devices: tuple[str, ...] = ("cpu", "cuda")  # where it can step
    op_builder: str | None = None  # DeepSpeed op that must exist on the accelerator
    removed_in: str | None = None  # first version of the package without the class
    example: Mapping = field(default_factory=lambda: MappingProxyType({"lr": 1e-3}))
    adapter: Callable | None = None  # fits an mmengine build to the optimizer (catalog.adapters)
    wrapper: str | None = None  # OptimWrapper the constructor picks instead of OptimWrapper
    hooks: tuple[str, ...] = ()  # Runner hooks the run needs, added when the optim wrapper is built
    swallows_kwargs: bool = False  # takes **kwargs and ignores unknown ones: check named settings
    routes_muon: bool = False  # takes use_muon-flagged groups; the package constructor routes
    zero_as: str | None = None  # how ZeRO-Offload runs it (ZERO_AS_*), None: it cannot
    elementwise: bool = False  # per-element update: ZeRO's flat partitions change nothing
    zero_impossible: Impossible | None = None  # never under ZeRO (from its from_stage)
    zero_loses: str | None = None  # per-parameter behaviour flat ZeRO partitions change
    fsdp_impossible: Impossible | None = None  # why it cannot step FSDP2 shards (DTensor)
    #                                            exactly; None: it equals the unsharded run (tested)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.target.partition(":")[2]

    @property
    def install_hint(self) -> str:
        return INSTALL_HINTS[self.extra]

    @property
    def cuda_only(self) -> bool:
        return self.devices == ("cuda",)

    @property
    def notes(self) -> str:
        """What this package adds to make the optimizer train (README, `list`)."""
        notes = []
        if self.adapter is not None:
            notes.append(self.adapter.__doc__.strip().splitlines()[0].rstrip("."))
        if self.wrapper is not None:
            notes.append(f"trains through {self.wrapper}, chosen automatically")
        notes += [f"{hook} added to the Runner automatically" for hook in self.hooks]
        return "; ".join(notes)

    def loaded_class(self):
        """The class, if its module is already imported (never imports anything), else None."""
        module = sys.modules.get(self.module)
        return getattr(module, self.attribute, None) if module is not None else None


class Catalog(Mapping):
    """Name -> :class:`OptimizerSpec`, in table order."""

    def __init__(self, rows):
        self._rows = {}
        for spec in rows:
            if spec.name in self._rows:
                raise ValueError(f"catalog name {spec.name!r} appears twice")
            self._rows[spec.name] = spec

    def __getitem__(self, name: str) -> OptimizerSpec:
        return self._rows[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def rows_of(self, provider: str) -> list[OptimizerSpec]:
        return [spec for spec in self._rows.values() if spec.provider == provider]

    def spec_of(self, optimizer_or_class) -> OptimizerSpec | None:
        """The row whose class built ``optimizer_or_class`` (subclasses count), if any."""
        cls = optimizer_or_class if isinstance(optimizer_or_class, type) else type(optimizer_or_class)
        for base in cls.__mro__:
            for spec in self._rows.values():
                if spec.loaded_class() is base:
                    return spec
        return None
