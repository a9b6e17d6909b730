"""Known third-party log messages that say nothing actionable here, filtered at their source logger.

Each entry names the logger, the start of the message's format string, the versions it is
written for, when it is expected, and what it means. A filter on exactly that logger drops only
records whose format string starts that way (any other message of the logger passes), and keeps
a count; ``visdet-mmext list`` prints what each dropped message meant, ``list --json`` lists all
entries, and the ``visdet_mmext`` logger records each drop at DEBUG level.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version

logger = logging.getLogger("visdet_mmext")


def _cpu_only_torch() -> bool:
    import torch
    return torch.version.cuda is None and torch.version.hip is None and not (
        hasattr(torch, "xpu") and torch.xpu.is_available())


@dataclass(frozen=True)
class KnownMessage:
    package: str  # distribution that logs it
    versions: str  # PEP 440 range the text was checked against
    logger: str  # the logger it is emitted on
    starts: str  # start of the record's format string (record.msg)
    explanation: str
    expected: Callable[[], bool] = lambda: True  # False: the message may mean a real problem

    def matches(self, record: logging.LogRecord) -> bool:
        return isinstance(record.msg, str) and record.msg.startswith(self.starts)


KNOWN = (
    KnownMessage(
        "bitsandbytes", ">=0.50,<0.51", "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward from kernels-community",
        "bitsandbytes could not fetch its optional fused 4-bit CPU matmul from the Hugging Face "
        "kernels hub (it needs the `kernels` package and a network) and uses its own kernel; only "
        "4-bit layers (Linear4bit) call it, no optimizer does."),
    KnownMessage(
        "deepspeed", ">=0.19,<0.20", "DeepSpeed", "Setting accelerator to CPU",
        "DeepSpeed uses its CPU accelerator because this torch is a CPU-only build (printed by "
        "each process); DeepSpeedCPUAdam and ZeRO-Offload run there. With a CUDA build of torch "
        "the message is shown, since it then means no GPU was found.",
        expected=_cpu_only_torch),
)

_dropped: dict[KnownMessage, int] = {}


class KnownMessageFilter(logging.Filter):
    def __init__(self, known: KnownMessage):
        super().__init__()
        self.known = known

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.known.matches(record) or not self.known.expected():
            return True
        _dropped[self.known] = _dropped.get(self.known, 0) + 1
        logger.debug("visdet_mmext: dropped %s's %r (%s)", self.known.package,
                     record.getMessage(), self.known.explanation)
        return False


def _covers(known: KnownMessage) -> bool:
    from . import installed_version
    version = installed_version(known.package)
    return version is not None and SpecifierSet(known.versions).contains(Version(version),
                                                                         prereleases=True)


def install() -> None:
    """Attach each in-range filter to its logger (idempotent; imports nothing)."""
    for known in KNOWN:
        target = logging.getLogger(known.logger)
        if _covers(known) and not any(isinstance(f, KnownMessageFilter) and f.known == known
                                      for f in target.filters):
            target.addFilter(KnownMessageFilter(known))


def explanations() -> list[str]:
    """What each message dropped in this process meant."""
    return [f"{known.package} logged {known.starts!r}... ({count}x, hidden): {known.explanation}"
            for known, count in _dropped.items()]


def report() -> list[dict]:
    return [dict(package=k.package, versions=k.versions, logger=k.logger, message=k.starts,
                 explanation=k.explanation, installed=_covers(k), dropped=_dropped.get(k, 0))
            for k in KNOWN]
