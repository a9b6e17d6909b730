"""Is a checkpoint intact? Recompute the CRC-32 that torch's zip format stores for every record.

``torch.save`` writes a CRC-32 per record, but ``torch.load`` never checks them: a flipped bit
loads silently. :func:`verify` computes every record's CRC straight from a memory map of the file
(no copy) and compares (zlib-ng's CRC when installed, a few times faster than zlib's). Files
already verified in this process, unchanged since, are not read again. The legacy (pre-zip)
torch format has no checksums and is not checked.
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
import zipfile
import zlib
from pathlib import Path

from ..errors import CorruptCheckpointError

try:
    from zlib_ng.zlib_ng import crc32
except ImportError:  # zlib-ng is a declared dependency; plain zlib gives the same CRC, slower
    crc32 = zlib.crc32

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE = 0x04034B50
_CHUNK = 16 << 20  # decompression buffer for compressed records
_verified: set[tuple] = set()
_lock = threading.Lock()


def _identity(path: str) -> tuple:
    stat = os.stat(path)
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _check_member(data: memoryview, info: zipfile.ZipInfo) -> str | None:
    """Why ``info``'s bytes are damaged, or None when they match the archive's CRC-32."""
    header = data[info.header_offset:info.header_offset + _LOCAL_HEADER.size]
    if len(header) < _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(header)[0] != _LOCAL_SIGNATURE:
        return f"record {info.filename!r} has no valid local header"
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if start + info.compress_size > len(data):
        return f"record {info.filename!r} runs past the end of the file (truncated)"
    computed = crc32(data[start:start + info.compress_size])
    if computed != info.CRC:
        return (f"record {info.filename!r} fails its CRC-32 check (stored {info.CRC:#010x}, "
                f"computed {computed:#010x})")
    return None


def is_zip_checkpoint(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint file at ``path`` cannot be trusted to be intact, or None if it is.

    Only stored (uncompressed) records are checked this way, which is all that torch writes; a
    compressed record is decompressed by ``zipfile``, which checks its CRC itself.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "no such file"
    if os.path.getsize(path) == 0:
        return "the file is empty (a save was interrupted)"
    if not is_zip_checkpoint(path):
        return None  # legacy torch format: no checksums to compare
    identity = _identity(path)
    with _lock:
        if identity in _verified:
            return None
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        return f"not a complete zip archive ({error}); the file is truncated or damaged"
    with archive, open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = memoryview(mapped)
        try:
            for info in archive.infolist():
                if info.compress_type == zipfile.ZIP_STORED:
                    reason = _check_member(data, info)
                else:
                    reason = _check_compressed(archive, info)
                if reason:
                    return reason
        finally:
            data.release()
    with _lock:
        _verified.add(identity)
    return None


def _check_compressed(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    try:
        with archive.open(info) as member:
            while member.read(_CHUNK):
                pass
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        return f"record {info.filename!r} is damaged ({error})"
    return None


def verify(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptCheckpointError` unless the file at ``path`` is intact."""
    reason = problem(path)
    if reason:
        raise CorruptCheckpointError(
            f"Checkpoint {os.fspath(path)!r} is damaged: {reason}. It was not loaded. Use another "
            "checkpoint (with --resume and no path, tools/train.py takes the newest intact one).")


def checkpoint_files(directory: str | os.PathLike) -> list[Path]:
    """The state files of a DeepSpeed checkpoint directory (model states and ZeRO shards)."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix == ".pt")


def directory_problem(directory: str | os.PathLike) -> str | None:
    """Like :func:`problem`, for every state file of a DeepSpeed checkpoint directory."""
    files = checkpoint_files(directory)
    if not files:
        return "the directory holds no checkpoint files (*.pt)"
    for file in files:
        reason = problem(file)
        if reason:
            return f"{file.name}: {reason}"
    return None
