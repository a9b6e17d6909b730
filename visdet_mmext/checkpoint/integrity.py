"""Is a checkpoint intact? Its zip structure, then the CRC-32 that torch stores for every record.

``torch.save`` writes a CRC-32 per record, but ``torch.load`` never checks them: a flipped bit
loads silently. :func:`verify` computes every record's CRC straight from a memory map of the file
(no copy) and compares (zlib-ng's CRC when installed, a few times faster than zlib's). Files
already verified in this process, unchanged since, are not read again. The legacy (pre-zip)
torch format has no checksums and is not checked.

Before anything is read, :func:`structure_problem` bounds what a hostile file can make a reader
do: the record count (read from the zip's end record, before the directory is parsed), declared
sizes (a compressed record is inflated only up to ``MAX_INFLATED``; ``torch.save`` never
compresses), and torch's layout (every record in one folder, with its ``data.pkl``).
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
import zipfile
import zlib
from pathlib import Path

from ..echo import echo
from ..errors import CorruptCheckpointError

try:
    from zlib_ng.zlib_ng import crc32
except ImportError:  # zlib-ng is a declared dependency; plain zlib gives the same CRC, slower
    crc32 = zlib.crc32

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE = 0x04034B50
_CHUNK = 16 << 20  # decompression buffer for compressed records
_END = struct.Struct("<IHHHHIIH")  # end of central directory record
_END_SIGNATURE, _ZIP64_LOCATOR, _ZIP64_END = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
#: Records a checkpoint may have (torch writes one per tensor storage, plus 5).
MAX_RECORDS = 1_000_000
#: Bytes the compressed records of one file may inflate to, in total.
MAX_INFLATED = 256 << 20
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


def declared_records(path: str) -> int | None:
    """The record count the zip's end record declares (None if there is none to read)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - _END.size - 0xFFFF))
        tail = f.read()
        end = tail.rfind(_END_SIGNATURE)
        if end < 0 or end + _END.size > len(tail):
            return None
        count = _END.unpack_from(tail, end)[4]
        locator = tail.rfind(_ZIP64_LOCATOR, 0, end)
        if count != 0xFFFF or locator < 0:
            return count
        f.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
        record = f.read(56)
        return struct.unpack_from("<Q", record, 32)[0] if record[:4] == _ZIP64_END else None


def _layout_problem(infos: list[zipfile.ZipInfo]) -> str | None:
    folders = {info.filename.partition("/")[0] for info in infos}
    if len(folders) != 1 or not all("/" in info.filename for info in infos):
        outside = sorted(folders)[:3]
        return (f"its records lie in {len(folders)} folders ({', '.join(map(repr, outside))}...), "
                "where torch.save writes one")
    folder = folders.pop()
    if not any(info.filename == f"{folder}/data.pkl" for info in infos):
        return f"it has no {folder}/data.pkl record: not a checkpoint torch.save wrote"
    inflated = 0
    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            return (f"record {info.filename!r} declares {info.file_size} bytes but stores "
                    f"{info.compress_size}")
        if info.compress_type != zipfile.ZIP_STORED:
            inflated += info.file_size
    if inflated > MAX_INFLATED:
        return (f"its compressed records declare {inflated} bytes once inflated, more than the "
                f"{MAX_INFLATED >> 20} MiB a checkpoint may (torch.save writes no compressed "
                "records); it was not inflated")
    return None


def structure_problem(path: str | os.PathLike) -> str | None:
    """Why the zip structure of the checkpoint at ``path`` cannot be read safely, or None.

    Reads only the zip's directory: cheap enough to run before every load."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "no such file"
    if os.path.getsize(path) == 0:
        return "the file is empty (a save was interrupted)"
    if not is_zip_checkpoint(path):
        return None  # legacy torch format
    count = declared_records(path)
    if count is not None and count > MAX_RECORDS:
        return (f"its zip directory declares {count} records, more than a checkpoint holds "
                f"(at most {MAX_RECORDS}); it was not read")
    try:
        with zipfile.ZipFile(path) as archive:
            return _layout_problem(archive.infolist())
    except zipfile.BadZipFile as error:
        return f"not a complete zip archive ({error}); the file is truncated or damaged"


def verify_structure(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptCheckpointError` unless ``structure_problem`` finds nothing."""
    reason = structure_problem(path)
    if reason:
        raise CorruptCheckpointError(_refusal(path, reason))


def problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint file at ``path`` cannot be trusted to be intact, or None if it is.

    The structure first (``structure_problem``), then every record's CRC-32: a stored record's
    from a memory map, a compressed one's by ``zipfile`` as it inflates it (bounded above).
    """
    path = os.fspath(path)
    reason = structure_problem(path)
    if reason or not is_zip_checkpoint(path):
        return reason
    identity = _identity(path)
    with _lock:
        if identity in _verified:
            return None
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
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
        raise CorruptCheckpointError(_refusal(path, reason))


def _refusal(path, reason: str) -> str:
    return (f"Checkpoint {echo(os.fspath(path), 300)} is damaged: {reason}. It was not loaded. "
            "Use another checkpoint (with --resume and no path, visdet-mmext train takes the "
            "newest usable one in the work dir).")


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
