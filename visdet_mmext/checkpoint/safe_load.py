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

import _compat_pickle
import concurrent.futures
import contextlib
import importlib
import importlib.util
import os
import pickle
import pickletools
import re
import threading
import zipfile

import torch

from ..echo import clip, echo
from ..errors import CorruptCheckpointError, UnsafeCheckpointError
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

#: Deepest nesting of containers a checkpoint may have (mmengine checkpoints nest about 6).
MAX_DEPTH = 100

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


def _python3_name(module: str, name: str, protocol: int) -> str:
    """``module.name`` as the pickling code wrote it: pickle protocols 0-2 record some Python 3
    names under their Python 2 ones (``subprocess.call`` as ``commands.call``), which unpickling
    maps back."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _operations(data: bytes):
    """The pickle's opcodes, up to a malformed tail if there is one (the globals before it
    are still the answer)."""
    operations = pickletools.genops(data)
    while True:
        try:
            yield next(operations)
        except (StopIteration, ValueError, EOFError):
            return


def pickled_globals(data: bytes) -> list[str]:
    """Every global a pickle imports, by reading its opcodes (nothing is unpickled)."""
    found, recent, memo, protocol = [], [None, None], {}, 0
    for opcode, arg, _ in _operations(data):
        kind = opcode.name
        if kind == "PROTO":
            protocol = arg
        elif kind in ("GLOBAL", "INST"):
            module, _, name = arg.partition(" ")
            found.append(_python3_name(module, name, protocol))
        elif kind == "STACK_GLOBAL" and all(isinstance(v, str) for v in recent[-2:]):
            found.append(_python3_name(recent[-2], recent[-1], protocol))
        if "UNICODE" in kind or kind.endswith("STRING"):
            recent.append(arg)
        elif kind in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            memo[len(memo) if kind == "MEMOIZE" else arg] = recent[-1]
        elif kind in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif kind != "FRAME":
            recent.append(None)
        del recent[:-2]
    return list(dict.fromkeys(found))


def _data_pickle(file) -> bytes | None:
    """The ``data.pkl`` record of a zip checkpoint (None: another format, or too large to scan)."""
    if not integrity.is_zip_checkpoint(file):
        return None
    with zipfile.ZipFile(file) as archive:
        info = next((i for i in archive.infolist() if i.filename.endswith("/data.pkl")), None)
        if info is None or info.file_size > integrity.MAX_INFLATED:
            return None
        return archive.read(info)


def _torch_allowed() -> set[str]:
    """Globals torch's weights-only unpickler admits by default or by ``add_safe_globals``."""
    defaults = getattr(torch._weights_only_unpickler, "_get_allowed_globals", dict)()
    extra = {f"{g.__module__}.{g.__qualname__}" for g in torch.serialization.get_safe_globals()
             if not isinstance(g, tuple)}
    return set(defaults) | extra


def _offending_globals(source, error: BaseException, deepspeed: bool) -> tuple[list[str], bool]:
    """The refused globals, and whether they were read from the pickle itself (else from
    torch's message, which then says more)."""
    names: list[str] = []
    allowed = {name for _, name in allowed_entries(deepspeed=deepspeed)} | _torch_allowed()
    # protocol 4 pickles HistoryBuffer's statistics as qualified names, not through getattr
    allowed |= {f"mmengine.logging.history_buffer.HistoryBuffer.{s}" for s in _STATISTICS}
    for file in _files(source):
        data = _data_pickle(file)
        if data is not None:
            names += [name for name in pickled_globals(data) if name not in allowed]
    if names:
        return list(dict.fromkeys(names)), True
    text = str(error)
    names = re.findall(r"GLOBAL (\S+) was not an allowed global", text)
    names += re.findall(r"unrecognized function (\S+)", text)
    names += re.findall(r"but got <class '([^']+)'>", text)
    names += re.findall(r"(getattr\([^)]*\)) is not one of the lookups", text)
    names += re.findall(r"(numpy dtype \S+) holds Python objects", text)
    return list(dict.fromkeys(names)), False


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
    names, from_pickle = _offending_globals(source, error, deepspeed)
    found = ", ".join(clip(name, 120) for name in names) if names else \
        "an object it could not identify"
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "CHECKPOINT"
    return UnsafeCheckpointError(
        f"Refused to load checkpoint {echo(path, 300)}: it holds {found}, which is outside what "
        f"checkpoints contain (tensors, containers, numbers, strings, {'; '.join(ALLOWED)}). "
        f"Unpickling that could run code from the file, so it was stopped before anything in it "
        f"was called. If you trust the file, keep its weights in a clean copy: "
        f"python -c \"import torch; ckpt = torch.load({path!r}, weights_only=False); "
        f"torch.save({{'state_dict': ckpt['state_dict']}}, 'clean.pth')\" and start from them "
        f"with --cfg-options load_from=clean.pth (not --resume: a clean copy holds no training "
        f"state); or, for a trusted type, call visdet_mmext.checkpoint.allow(<type>)."
        + ("" if from_pickle else f" (torch: {clip(_torch_reason(error), 500)})"))


def _is_refusal(error: BaseException) -> bool:
    if isinstance(error, pickle.UnpicklingError):
        return True
    return isinstance(error, RuntimeError) and ("weights_only" in str(error) or "legacy" in str(error))


def _load(source, map_location, mmap: bool = False, deepspeed: bool = False):
    with allowlist(deepspeed=deepspeed):
        try:
            return torch.load(source, map_location=map_location, weights_only=True,
                              **({"mmap": True} if mmap else {}))
        except Exception as error:
            if _is_refusal(error):
                raise refusal(source, error, deepspeed=deepspeed) from None
            if isinstance(error, OSError) or not isinstance(source, (str, os.PathLike)):
                raise
            # e.g. a record the zip lists that torch cannot place, an array whose bytes do not
            # fit its shape: the file is not a checkpoint torch can read
            raise CorruptCheckpointError(
                f"Checkpoint {echo(os.fspath(source), 300)} cannot be read: torch: "
                f"{type(error).__name__}: {clip(str(error).strip(), 300)}. It was not loaded."
            ) from None


def nesting_problem(obj, limit: int = MAX_DEPTH) -> str | None:
    """Why the containers of a loaded checkpoint cannot be handled (mmengine and torch walk them
    recursively), or None: nested deeper than ``limit``, or a container inside itself."""
    stack, on_path, done = [(obj, 1, False)], set(), set()
    while stack:
        item, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            done.add(id(item))
            continue
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            children = list(item)
        else:
            continue
        if id(item) in on_path:
            return f"a {type(item).__name__} that contains itself"
        if id(item) in done:
            continue
        if depth > limit:
            return f"containers nested more than {limit} deep (checkpoints nest a few levels)"
        on_path.add(id(item))
        stack.append((item, depth, True))
        stack.extend((child, depth + 1, False) for child in children)
    return None


def safe_torch_load(source, map_location=None, *, mmap: bool = False, deepspeed: bool = False):
    """``torch.load(source, weights_only=True)`` inside the allowlist, integrity-checked.

    A file's zip structure is checked before torch reads it (``integrity.structure_problem``:
    record count, sizes, layout); its CRC check runs in a thread beside the load (it releases
    the GIL) and the checkpoint is returned only once it passed; a damaged file raises
    :class:`CorruptCheckpointError`, also when the damage made the load itself fail, and so
    does a checkpoint nested too deep to handle. ``mmap``: tensors stay on disk until read.
    ``deepspeed``: a DeepSpeed state file (its objects are admitted too).
    """
    if not isinstance(source, (str, os.PathLike)):
        return _checked_nesting(source, _load(source, map_location, deepspeed=deepspeed))
    integrity.verify_structure(source)
    mmap = mmap and integrity.is_zip_checkpoint(source)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        check = pool.submit(integrity.problem, source)
        try:
            checkpoint = _load(source, map_location, mmap, deepspeed)
        except Exception:
            if check.result():
                integrity.verify(source)  # raises: the damage explains the failure
            raise
        if check.result():
            integrity.verify(source)
    return _checked_nesting(source, checkpoint)


def _checked_nesting(source, checkpoint):
    problem = nesting_problem(checkpoint)
    if problem:
        shown = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "a checkpoint"
        raise CorruptCheckpointError(f"Checkpoint {echo(shown, 300)} holds {problem}: it is not "
                                     "a checkpoint torch.save wrote from a model. It was not used.")
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
