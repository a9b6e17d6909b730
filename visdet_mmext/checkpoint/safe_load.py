"""Load checkpoints as data: weights-only ``torch.load`` with exactly the objects checkpoints hold.

A pickle can call any function while it loads. ``torch.load(weights_only=True)`` refuses every
global outside a short list, which mmengine and DeepSpeed checkpoints go beyond. Rather than
turning weights-only off, loads here run inside :func:`allowlist`, which admits, for the length
of the load only (torch's process-wide list is not extended):

- mmengine: ``HistoryBuffer`` (the message hub's logs) and ``getattr`` restricted to its four
  statistics methods (``getattr(HistoryBuffer, 'mean')`` is how those pickle); numeric and bool
  numpy arrays, dtypes and scalars (numpy 1.x and 2.x names); ``ConfigDict``;
- DeepSpeed, when installed: its loss scalers, ``ZeroStageEnum`` and the ``fragment_address``
  tuples of ZeRO's optimizer shards.

:func:`allow` adds a trusted type. Every file is checked for damage first
(:mod:`visdet_mmext.checkpoint.integrity`).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import importlib.util
import os
import pickle
import re
import threading

import torch

from ..errors import UnsafeCheckpointError
from . import integrity

_STATISTICS = ("min", "max", "current", "mean")
#: numeric and bool dtype classes only (no object, string, void or datetime dtypes)
_NUMPY_DTYPE_CLASSES = tuple(
    f"{kind}DType" for kind in (
        "Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
        "Byte", "UByte", "Short", "UShort", "Int", "UInt", "Long", "ULong", "LongLong",
        "ULongLong", "Float16", "Float32", "Float64", "LongDouble", "Complex64", "Complex128",
        "CLongDouble"))
#: DeepSpeed checkpoint contents beyond tensors and containers: "module:attribute".
_DEEPSPEED_OBJECTS = (
    "deepspeed.runtime.fp16.loss_scaler:LossScaler",
    "deepspeed.runtime.fp16.loss_scaler:DynamicLossScaler",
    "deepspeed.runtime.zero.config:ZeroStageEnum",
    "deepspeed.utils.tensor_fragment:fragment_address",
)
#: What the allowlist admits, for messages and the README.
ALLOWED = (
    "mmengine HistoryBuffer (and getattr of its min/max/current/mean only)",
    "mmengine ConfigDict",
    "numpy arrays, scalars and numeric/bool dtypes",
    "DeepSpeed LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address",
)

_lock = threading.RLock()
_extra: list[tuple[object, str]] = []


def allow(obj, name: str | None = None) -> None:
    """Also accept ``obj`` (pickled as ``name``, default ``module.qualname``) in checkpoints.

    Only for types you trust to be built from checkpoint data. It affects this package's loads
    only, not torch's process-wide allowlist.
    """
    name = name or f"{obj.__module__}.{obj.__qualname__}"
    with _lock:
        if (obj, name) not in _extra:
            _extra.append((obj, name))


def _checkpoint_dtype(*args):
    """``numpy.dtype`` as the unpickler sees it: plain data types only (no Python objects)."""
    import numpy as np
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafeCheckpointError(f"numpy dtype {dtype!s} holds Python objects; checkpoints "
                                    "only hold numeric numpy arrays.")
    return dtype


def _numpy_entries() -> list[tuple[object, str]]:
    import numpy as np
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    entries = [(np.ndarray, "numpy.ndarray"), (_checkpoint_dtype, "numpy.dtype")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 rebuilds a dtype as its class
    for name in _NUMPY_DTYPE_CLASSES:
        if dtypes is not None and hasattr(dtypes, name):
            entries.append((getattr(dtypes, name), f"numpy.dtypes.{name}"))
    for attribute in ("_reconstruct", "scalar"):
        function = getattr(multiarray, attribute)
        for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
            entries.append((function, f"{module}.{attribute}"))
    return entries


def _checkpoint_getattr(owner, name):
    """``builtins.getattr`` as the unpickler sees it: HistoryBuffer's statistics only."""
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and isinstance(name, str) and name in _STATISTICS:
        return getattr(owner, name)
    what = owner.__qualname__ if isinstance(owner, type) else f"a {type(owner).__name__}"
    raise UnsafeCheckpointError(
        f"getattr({what}, {name!r}) is not one of the lookups checkpoints contain "
        f"(HistoryBuffer.{'/'.join(_STATISTICS)}).")


def _deepspeed_entries() -> list[tuple[object, str]]:
    if importlib.util.find_spec("deepspeed") is None:
        return []
    entries = []
    for target in _DEEPSPEED_OBJECTS:
        module, _, attribute = target.partition(":")
        obj = getattr(importlib.import_module(module), attribute)
        entries.append((obj, f"{module}.{attribute}"))
    return entries


def allowed_entries(*, deepspeed: bool = False) -> list[tuple[object, str]]:
    """(object, pickled name) pairs admitted on top of torch's defaults while loading."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    entries = [(HistoryBuffer, "mmengine.logging.history_buffer.HistoryBuffer"),
               (ConfigDict, "mmengine.config.config.ConfigDict"),
               (_checkpoint_getattr, "builtins.getattr"),
               *_numpy_entries()]
    if deepspeed:
        entries += _deepspeed_entries()
    with _lock:
        return entries + list(_extra)


@contextlib.contextmanager
def allowlist(*, deepspeed: bool = False):
    """``torch.serialization.safe_globals`` with the entries above, for one load."""
    present = torch.serialization.get_safe_globals()
    entries = [entry for entry in allowed_entries(deepspeed=deepspeed) if entry not in present]
    with torch.serialization.safe_globals(entries):
        yield


def _offending_globals(source, error: BaseException, deepspeed: bool) -> list[str]:
    names: list[str] = []
    allowed = {name for _, name in allowed_entries(deepspeed=deepspeed)}
    for file in _files(source):
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(file)
        except (RuntimeError, ValueError, pickle.UnpicklingError):
            found = []  # not a zip checkpoint: torch's message below names the global
        names += [name for name in found if name not in allowed]
    if not names:
        text = str(error)
        names = re.findall(r"GLOBAL (\S+) was not an allowed global", text)
        names += re.findall(r"unrecognized function (\S+)", text)
        names += re.findall(r"but got <class '([^']+)'>", text)
        names += re.findall(r"(getattr\([^)]*\)) is not one of the lookups", text)
        names += re.findall(r"(numpy dtype \S+) holds Python objects", text)
    return list(dict.fromkeys(names))


def _files(source) -> list:
    if not isinstance(source, (str, os.PathLike)):
        return []
    if os.path.isdir(source):
        return integrity.checkpoint_files(source)
    return [source] if os.path.isfile(source) else []


def _torch_reason(error: BaseException) -> str:
    """The informative part of torch's weights-only error (it wraps it in advice to turn it off)."""
    text = " ".join(str(error).split())
    sentences = re.split(r"(?<=[.:])\s+", text)
    keep = [sentence for sentence in sentences
            if re.search(r"GLOBAL|[Uu]nsupported|unrecognized|Can only build|Python objects|"
                         r"getattr\(|legacy|not one of", sentence)]
    return " ".join(keep) or (sentences[0] if sentences else "") or type(error).__name__


def refusal(source, error: BaseException, *, deepspeed: bool = False) -> UnsafeCheckpointError:
    """The error for a checkpoint that holds something outside the allowlist."""
    names = _offending_globals(source, error, deepspeed)
    found = ", ".join(names) if names else "an object it could not identify"
    shown = os.fspath(source) if isinstance(source, os.PathLike) else source
    return UnsafeCheckpointError(
        f"Refused to load checkpoint {shown!r}: it holds {found}, which is outside what "
        f"checkpoints contain (tensors, containers, numbers, strings, {'; '.join(ALLOWED)}). "
        f"Unpickling that could run code from the file, so it was stopped before anything in it "
        f"was called. If you trust the file, load it yourself and keep the weights, e.g. "
        f"`ckpt = torch.load(path, weights_only=False)` then "
        f"`torch.save({{'state_dict': ckpt['state_dict']}}, 'clean.pth')` and use clean.pth; or, "
        f"for a trusted type, call visdet_mmext.checkpoint.allow(<type>). "
        f"(torch: {_torch_reason(error)})")


def _is_refusal(error: BaseException) -> bool:
    if isinstance(error, pickle.UnpicklingError):
        return True
    return isinstance(error, RuntimeError) and ("weights_only" in str(error) or "legacy" in str(error))


def _load(source, map_location):
    with allowlist():
        try:
            return torch.load(source, map_location=map_location, weights_only=True)
        except Exception as error:
            if _is_refusal(error):
                raise refusal(source, error) from None
            raise


def safe_torch_load(source, map_location=None):
    """``torch.load(source, weights_only=True)`` inside the allowlist, integrity-checked.

    The CRC check of a file runs in a thread beside the load (it releases the GIL) and the
    checkpoint is returned only once it passed; a damaged file raises
    :class:`CorruptCheckpointError`, also when the damage made the load itself fail.
    """
    if not isinstance(source, (str, os.PathLike)):
        return _load(source, map_location)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        check = pool.submit(integrity.problem, source)
        try:
            checkpoint = _load(source, map_location)
        except Exception:
            if check.result():
                integrity.verify(source)  # raises: the damage explains the failure
            raise
        if check.result():
            integrity.verify(source)
    return checkpoint


@contextlib.contextmanager
def weights_only_loads(source, *, deepspeed: bool = False):
    """Every ``torch.load`` inside the block is weights-only with the allowlist, whatever it asks.

    For third-party loaders that pass ``weights_only=False`` (DeepSpeed's checkpoint engines):
    torch's own ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` switch, set for the block (and a
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set by the user lifted for it). The switch is process wide. A refused object surfaces as :class:`UnsafeCheckpointError`.
    """
    switches = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    previous = {key: os.environ.pop(key, None) for key in switches}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with allowlist(deepspeed=deepspeed):
            yield
    except UnsafeCheckpointError:
        raise
    except Exception as error:
        if _is_refusal(error):
            raise refusal(source, error, deepspeed=deepspeed) from None
        raise
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
