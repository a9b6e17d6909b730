"""Damage a checkpoint the way disks do: one byte flipped inside a record, zip structure intact."""
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
