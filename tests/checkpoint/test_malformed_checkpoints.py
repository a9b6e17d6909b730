"""Malformed checkpoints that pass the CRC check are refused with a sentence, never a traceback.

Each file is built the way a hostile or broken writer would: a record outside torch's folder, a
zip directory declaring two million records, a compressed record declaring 2 GiB, an array whose
bytes do not fit its shape, lists nested 200,000 deep, a list inside itself. Each is refused by
the package's loader (``CorruptCheckpointError``) before anything reads more than the zip's
directory, or right after torch's weights-only load, and through ``visdet-mmext train --resume``
with exit code 2; ``--resume`` without a path skips them all and takes the intact checkpoint.
"""
import os
import shutil
import struct
import zipfile

import pytest
import torch

import visdet_mmext.demo  # noqa: F401
from damage import deep_lists, pickle_of, rewrite
from demo_utils import CONFIGS, cli_options
from visdet_mmext.checkpoint import integrity, safe_torch_load
from visdet_mmext.errors import CorruptCheckpointError
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")


@pytest.fixture
def trained(adamw_run):
    return adamw_run / "iter_2.pth"


def extra_record(source, target):
    return rewrite(source, target, extra={"elsewhere/data.pkl": b"\x80\x02N."})


def many_records(source, target):
    """The zip's end records declare 2,000,000 entries (zip64), which a reader would parse."""
    data = bytearray(open(source, "rb").read())
    end = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, end + 12)
    body = bytes(data[:end])
    zip64_end = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 2_000_000,
                            2_000_000, cd_size, cd_offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, len(body), 1)
    end_record = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                             0xFFFFFFFF, 0)
    open(target, "wb").write(body + zip64_end + locator + end_record)
    return target


def declared_bomb(source, target):
    """A compressed record whose directory entry declares 2 GiB once inflated."""
    rewrite(source, target, compress=("byteorder",))
    data = bytearray(open(target, "rb").read())
    with zipfile.ZipFile(target) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/byteorder"))
    entry = data.find(b"PK\x01\x02" + data[info.header_offset + 4:info.header_offset + 6])
    while data[entry + 46:entry + 46 + len(info.filename)] != info.filename.encode():
        entry = data.find(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 24, 2 << 30)  # uncompressed size in the directory
    struct.pack_into("<I", data, info.header_offset + 22, 2 << 30)  # and in the local header
    open(target, "wb").write(bytes(data))
    return target


def bad_array(source, target):
    """An ndarray whose bytes do not fit its shape (numpy's reconstruct raises)."""
    import numpy as np

    class Short:
        def __reduce__(self):
            function, arguments, _ = np.zeros(3).__reduce__()
            return function, arguments, (1, (3,), np.dtype("float64"), False, b"\0" * 5)

    checkpoint = torch.load(source, weights_only=False)  # trusted: written by the fixture
    checkpoint["meta"]["note"] = Short()
    torch.save(checkpoint, target)
    return target


def self_containing(source, target):
    return rewrite(source, target, replace={"data.pkl": pickle_of(b"]q\x01h\x01a")})


MALFORMED = {
    "extra record": (extra_record, "lie in 2 folders"),
    "two million records": (many_records, "declares 2000000 records"),
    "2 GiB compressed record": (declared_bomb, "it was not inflated"),
    "bad ndarray": (bad_array, "buffer size does not match array size"),
    "200,000-deep lists": (deep_lists, "nested more than 100 deep"),
    "list inside itself": (self_containing, "a list that contains itself"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoint_is_refused_by_the_loader(trained, tmp_path, case):
    build, reason = MALFORMED[case]
    path = build(trained, tmp_path / "iter_9.pth")
    with pytest.raises(CorruptCheckpointError, match="was not|cannot be read|not a checkpoint") \
            as error:
        safe_torch_load(path, map_location="cpu")
    assert reason in str(error.value)


def test_a_compressed_record_within_bounds_is_checked_and_loads(trained, tmp_path):
    path = rewrite(trained, tmp_path / "repacked.pth", compress=("byteorder", "version"))
    assert integrity.problem(path) is None
    assert safe_torch_load(path, map_location="cpu")["meta"]["iter"] == 2


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoint_stops_resume_with_exit_2(trained, tmp_path, capsys, case):
    build, reason = MALFORMED[case]
    path = build(trained, tmp_path / "iter_9.pth")
    code = train_tool.main([ADAMW, "--work-dir", str(tmp_path / "work"), "--resume", str(path),
                            "--cfg-options", *cli_options(iters=12)])
    output = "".join(capsys.readouterr())
    assert code == 2, output[-3000:]
    assert "Traceback" not in output and "Iter(train)" not in output
    assert "CorruptCheckpointError" in output and reason in output


def test_automatic_resume_skips_every_malformed_checkpoint(trained, tmp_path, capsys):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    shutil.copy(trained, work_dir / "iter_2.pth")
    for number, (build, _) in enumerate(MALFORMED.values(), start=10):
        build(trained, work_dir / f"iter_{number}.pth")
    code = train_tool.main([ADAMW, "--work-dir", str(work_dir), "--resume", "--cfg-options",
                            *cli_options(iters=4)])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    skipped = [line for line in err.splitlines() if line.startswith("Skipped ")]
    assert len(skipped) == len(MALFORMED), skipped
    for build, reason in MALFORMED.values():
        assert any(reason in line for line in skipped), (reason, skipped)
    assert f"Resuming from {work_dir / 'iter_2.pth'}" in out
