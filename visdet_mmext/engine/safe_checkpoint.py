"""Resume and ``load_from`` on torch >= 2.6 with weights-only loading kept on.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. Since torch 2.6 that means
weights-only, which refuses mmengine's own checkpoints: they hold the message hub's
``HistoryBuffer`` objects, numpy arrays and scalars. The usual fix, ``weights_only=False``
(or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), lets a checkpoint file run any code it likes.

``install()`` replaces mmengine's checkpoint loaders instead. Every load goes through
``torch.load(..., weights_only=True)`` inside ``torch.serialization.safe_globals`` with
exactly the objects mmengine checkpoints contain (``ALLOWED_NAMES``), only for the duration
of the load: nothing is added to torch's process-wide allowlist. A file that holds
anything else is refused with ``UnsafeCheckpointError``, which names the object; the
weights-only unpickler stops at the first unknown global, before anything is called.

What was found in real checkpoints (demo model trained by mmengine's Runner with every
optimizer of the catalog available on CPU) beyond what torch allows by default:

- ``mmengine.logging.history_buffer.HistoryBuffer`` (``message_hub.log_scalars``), whose
  state holds its statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')`` etc.
  ``builtins.getattr`` is therefore mapped to a getattr that answers only those four
  lookups, never a general ``getattr``;
- ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.multiarray._reconstruct`` and
  ``numpy._core.multiarray.scalar`` (HistoryBuffer contents, metric values); numpy 1.x
  writes the last two as ``numpy.core.multiarray.*``, accepted as aliases; numpy >= 1.25
  rebuilds dtypes as ``numpy.dtypes.Float64DType`` etc. (numeric and bool ones allowed).

More objects can be allowed explicitly with ``allow(obj, name=None)`` (for example a
custom ``HistoryBuffer.register_statistics`` function) without touching torch's globals.

Loaders replaced: local paths (prefix ``''``) and ``http(s)://`` (mmengine's goes through
``torch.hub.load_state_dict_from_url``, whose default is ``weights_only=False``); the
``torchvision://``/``mmcls://``/``open-mmlab://`` loaders call the module's
``load_from_http``, which is pointed at the safe one; the remaining schemes (``pavi://``,
``s3://``...) run inside the same allowlist. DeepSpeed checkpoints are loaded by DeepSpeed
itself and are not covered here.
"""
from __future__ import annotations

import functools
import importlib
import os
import pickle
import re
import threading
from urllib.parse import urlparse

import torch

from ..post_import import when_imported

TARGET_MODULE = "mmengine.runner.checkpoint"
_STATISTICS = ("min", "max", "current", "mean")
#: numeric and bool dtype classes only (no object, string, void or datetime dtypes)
_NUMPY_DTYPE_CLASSES = tuple(
    f"{kind}DType" for kind in (
        "Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
        "Byte", "UByte", "Short", "UShort", "Int", "UInt", "Long", "ULong", "LongLong",
        "ULongLong", "Float16", "Float32", "Float64", "LongDouble", "Complex64", "Complex128",
        "CLongDouble"))
_installed = False
_lock = threading.RLock()
_extra: list[tuple[object, str]] = []


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds an object outside the mmengine allowlist; nothing in it was run."""


def _numpy_entries() -> list[tuple[object, str]]:
    import numpy as np
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    entries = [(np.ndarray, "numpy.ndarray"), (_checkpoint_dtype, "numpy.dtype")]
    # numpy >= 1.25 rebuilds a dtype as an instance of its class (BUILD needs the class)
    dtypes = getattr(np, "dtypes", None)
    for name in _NUMPY_DTYPE_CLASSES:
        if dtypes is not None and hasattr(dtypes, name):
            entries.append((getattr(dtypes, name), f"numpy.dtypes.{name}"))
    for attribute in ("_reconstruct", "scalar"):
        function = getattr(multiarray, attribute)
        for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
            entries.append((function, f"{module}.{attribute}"))
    return entries


def _checkpoint_dtype(*args):
    """``numpy.dtype`` as seen by the unpickler: plain data types only (no Python objects)."""
    import numpy as np
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafeCheckpointError(f"numpy dtype {dtype!s} holds Python objects; mmengine "
                                    "checkpoints only hold numeric numpy arrays.")
    return dtype


def _history_buffer():
    from mmengine.logging import HistoryBuffer
    return HistoryBuffer


def _checkpoint_getattr(owner, name):
    """``builtins.getattr`` as seen by the unpickler: only HistoryBuffer's statistics methods."""
    history_buffer = _history_buffer()
    if owner is history_buffer and isinstance(name, str) and name in _STATISTICS:
        return getattr(owner, name)
    what = owner.__qualname__ if isinstance(owner, type) else f"a {type(owner).__name__}"
    raise UnsafeCheckpointError(
        f"getattr({what}, {name!r}) is not one of the lookups mmengine checkpoints contain "
        f"(HistoryBuffer.{'/'.join(_STATISTICS)}).")


def allowed_entries() -> list[tuple[object, str]]:
    """(object, pickled name) pairs allowed on top of torch's defaults while loading."""
    history_buffer = _history_buffer()
    return [
        (history_buffer, "mmengine.logging.history_buffer.HistoryBuffer"),
        (_checkpoint_getattr, "builtins.getattr"),
        *_numpy_entries(),
        *_extra,
    ]


def allowed_names() -> list[str]:
    return sorted({name for _, name in allowed_entries()})


ALLOWED_NAMES = (
    "mmengine.logging.history_buffer.HistoryBuffer",
    "builtins.getattr (only getattr(HistoryBuffer, 'min'|'max'|'current'|'mean'))",
    "numpy.ndarray", "numpy.dtype", "numpy.dtypes.<numeric and bool dtype classes>",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
)


def allow(obj, name: str | None = None) -> None:
    """Also accept ``obj`` (pickled as ``name``, default ``module.qualname``) in checkpoints.

    Only for objects you trust to be created from checkpoint data; it affects this
    package's loaders only, not torch's global allowlist.
    """
    name = name or f"{obj.__module__}.{obj.__qualname__}"
    with _lock:
        if (obj, name) not in _extra:
            _extra.append((obj, name))


class _allowlist:
    """``safe_globals`` with the entries above, minus those the user already made safe."""

    def __enter__(self):
        present = torch.serialization.get_safe_globals()
        entries = [entry for entry in allowed_entries() if entry not in present]
        self._context = torch.serialization.safe_globals(entries)
        self._context.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self._context.__exit__(*exc_info)


def _offending_globals(source, error: BaseException) -> list[str]:
    names: list[str] = []
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        try:
            allowed = set(allowed_names())
            names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(source)
                     if n not in allowed]
        except Exception:  # not a zip checkpoint: fall back to torch's message
            names = []
    if not names:
        text = str(error)
        names = re.findall(r"GLOBAL (\S+) was not an allowed global", text)
        names += re.findall(r"unrecognized function (\S+)", text)
        names += re.findall(r"but got <class '([^']+)'>", text)
        names += re.findall(r"(getattr\([^)]*\)) is not one of the lookups", text)
        names += re.findall(r"(numpy dtype \S+) holds Python objects", text)
    return list(dict.fromkeys(names))


def _shown(source):
    return os.fspath(source) if isinstance(source, os.PathLike) else source


def _refusal(source, error: BaseException) -> UnsafeCheckpointError:
    names = _offending_globals(source, error)
    found = ", ".join(names) if names else "an object it could not identify"
    return UnsafeCheckpointError(
        f"Refused to load checkpoint {_shown(source)!r}: "
        f"it holds {found}, which is outside the objects mmengine checkpoints contain "
        f"(tensors, containers, numbers, strings, numpy arrays/scalars, mmengine HistoryBuffer). "
        f"Unpickling that could run code from the file, so it was stopped before anything in it "
        f"was called. If you trust the file, load it yourself and keep the weights, e.g. "
        f"`ckpt = torch.load(path, weights_only=False)` then "
        f"`torch.save({{'state_dict': ckpt['state_dict']}}, 'clean.pth')` and use clean.pth; or, "
        f"for a trusted object type, call visdet_mmext.engine.safe_checkpoint.allow(<obj>). "
        f"(torch: {_torch_reason(error)})")


def _torch_reason(error: BaseException) -> str:
    """The informative part of torch's weights-only error (it wraps it in advice to turn it off)."""
    text = " ".join(str(error).split())
    sentences = re.split(r"(?<=[.:])\s+", text)
    keep = [sentence for sentence in sentences
            if re.search(r"GLOBAL|[Uu]nsupported|unrecognized|Can only build|Python objects|"
                         r"getattr\(|legacy|not one of", sentence)]
    reason = " ".join(keep) or (sentences[0] if sentences else "")
    return reason or type(error).__name__


def safe_torch_load(source, map_location=None):
    """``torch.load(source, weights_only=True)`` allowing exactly mmengine's checkpoint objects."""
    with _allowlist():
        try:
            return torch.load(source, map_location=map_location, weights_only=True)
        except UnsafeCheckpointError as error:
            raise _refusal(source, error) from None
        except pickle.UnpicklingError as error:
            raise _refusal(source, error) from None
        except RuntimeError as error:
            if "weights_only" in str(error) or "legacy" in str(error):
                raise _refusal(source, error) from None
            raise


def load_from_local(filename, map_location=None):
    """mmengine's local loader, weights-only (the name keeps mmengine's log line: 'by local')."""
    filename = os.path.expanduser(os.fspath(filename))
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return safe_torch_load(filename, map_location)


def _download(url: str, model_dir=None, progress: bool = False) -> str:
    model_dir = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir, os.path.basename(urlparse(url).path))
    if not os.path.exists(cached):
        torch.hub.download_url_to_file(url, cached, progress=progress)
    return cached


def load_from_http(filename, map_location=None, model_dir=None, progress=None):
    """mmengine's http(s) loader (download once, rank 0 first), weights-only."""
    from mmengine.dist import get_dist_info
    progress = os.isatty(0) if progress is None else progress
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = safe_torch_load(_download(filename, model_dir, progress), map_location)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_torch_load(_download(filename, model_dir, progress), map_location)
    return checkpoint


def _within_allowlist(loader):
    """Run another scheme's loader (it calls torch.load itself) inside the allowlist."""
    if getattr(loader, "_visdet_safe", False):
        return loader

    @functools.wraps(loader)
    def load(filename, map_location=None, *args, **kwargs):
        with _allowlist():
            try:
                return loader(filename, map_location, *args, **kwargs)
            except pickle.UnpicklingError as error:
                raise _refusal(filename, error) from None

    load._visdet_safe = True
    return load


def install() -> None:
    """Make mmengine's checkpoint loading weights-only with the mmengine allowlist (idempotent).

    Imports ``mmengine.runner.checkpoint`` (which imports all of ``mmengine.runner``, and
    DeepSpeed when installed). ``install_when_imported()`` defers that to the first import.
    """
    global _installed
    with _lock:
        if _installed:
            return
        checkpoint_module = importlib.import_module(TARGET_MODULE)
        loader_cls = checkpoint_module.CheckpointLoader
        for prefix, loader in list(loader_cls._schemes.items()):
            if prefix not in ("", "http://", "https://"):
                loader_cls.register_scheme(prefix, _within_allowlist(loader), force=True)
        load_from_local._visdet_safe = load_from_http._visdet_safe = True
        loader_cls.register_scheme("", load_from_local, force=True)
        loader_cls.register_scheme(("http://", "https://"), load_from_http, force=True)
        # torchvision://, mmcls:// and open-mmlab:// URLs are fetched through this name
        checkpoint_module.load_from_http = load_from_http
        _installed = True


def is_installed() -> bool:
    return _installed


def install_when_imported() -> None:
    """``install()`` now if mmengine's checkpoint module is loaded, else right after it is.

    For ``import visdet_mmext``: importing ``mmengine.runner`` eagerly would import
    DeepSpeed (seconds) just to patch a loader that only a Runner uses.
    """
    when_imported(TARGET_MODULE, lambda module: install())
