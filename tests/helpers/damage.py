"""Damage a checkpoint: the way disks do (one byte flipped inside a record, zip structure
intact), and the way a hostile writer does (records replaced or added, lists nested too deep)."""
import struct
import zipfile


def flip_byte(path, record_suffix="/data/0"):
    """Flip one byte in the middle of the data of the first record named ``...record_suffix``."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(record_suffix))
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", f.read(4))
        position = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
        f.seek(position)
        byte = f.read(1)
        f.seek(position)
        f.write(bytes([byte[0] ^ 0x10]))


def records(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rewrite(source, target, replace=None, extra=None, compress=()):
    """A copy of a torch zip checkpoint with records replaced or added (stored, as torch does,
    except the names in ``compress``)."""
    kept = records(source)
    folder = next(iter(kept)).split("/")[0]
    kept.update({f"{folder}/{k}": v for k, v in (replace or {}).items()})
    kept.update(extra or {})
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in kept.items():
            kind = zipfile.ZIP_DEFLATED if name.rsplit("/", 1)[-1] in compress else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=kind)
    return target


def pickle_of(body: bytes) -> bytes:
    """A pickled dict ``{'meta': <what body builds>}``."""
    return b"\x80\x02}(X\x04\x00\x00\x00metaq\x00" + body + b"u."


def deep_lists(source, target):
    """A copy of a torch zip checkpoint whose pickle nests lists 200,000 deep."""
    depth = 200_000
    return rewrite(source, target,
                   replace={"data.pkl": pickle_of(b"]" * depth + b"a" * (depth - 1))})
