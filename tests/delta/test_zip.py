"""Zip artifacts: real zipfile / pip wheel output and malformed archives round-trip byte-exact."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib

import pytest
from test_deflate import text

from registry_core.delta._deflate import DeflateDetector
from registry_core.delta._layout import Deflate, Layout, Raw, expand, expand_known, rebuild
from registry_core.delta._zip import scan_zip


def roundtrip(data: bytes, **kw) -> tuple[Layout, bytes]:
    layout, expanded = expand(data, **kw)
    assert layout.original_size() == len(data)
    assert rebuild(layout, expanded) == data
    assert expand_known(layout, data) == expanded
    assert Layout.from_bytes(layout.to_bytes()) == layout
    return layout, expanded


def build(members, *, level=6, **zkw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level, **zkw) as zf:
        for name, data, *method in members:
            zf.writestr(name, data, compress_type=method[0] if method else None)
    return buf.getvalue()


MEMBERS = [(f"pkg/m{i}.py", text(2000 + 3000 * i, seed=i)) for i in range(6)]


def stats_of(data: bytes, **kw):
    det = DeflateDetector()
    layout, expanded = roundtrip(data, detector=det, **kw)
    return layout, expanded, det.stats


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_zipfile_levels_all_reproduced(level):
    layout, expanded, st = stats_of(build(MEMBERS, level=level))
    assert layout.kind == "zip"
    assert st.streams == len(MEMBERS) and st.reproduced == len(MEMBERS)
    for _, data in MEMBERS:
        assert data in expanded


def test_written_from_files_in_8k_pieces(tmp_path):
    """ZipFile.write() feeds zlib 8 KiB at a time; deflate() feeds 16 KiB: same stream."""
    src = tmp_path / "big.txt"
    src.write_bytes(text(300_000))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src, "big.txt")
    _, _, st = stats_of(buf.getvalue())
    assert st.reproduced == st.streams == 1


def test_data_descriptors_from_unseekable_output():
    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    out = Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in MEMBERS:
            with zf.open(name, "w") as f:
                f.write(data)
    data = bytes(out.buf)
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].flag_bits & 0x08
    _, _, st = stats_of(data)
    assert st.reproduced == st.streams == len(MEMBERS)
    # Without the central directory, the local-header walk still finds the first member.
    cd = data.find(b"PK\x01\x02")
    _layout, _, st = stats_of(data[:cd])
    assert st.reproduced >= 1


def test_zip64_members():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in MEMBERS[:3]:
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(data)
    data = buf.getvalue()
    # the first local header carries a zip64 extra field (header id 1); where the sizes go
    # (0xFFFFFFFF in the header or the real ones) differs between CPython versions
    name_len, extra_len = struct.unpack_from("<HH", data, 26)
    assert extra_len >= 4 and struct.unpack_from("<H", data, 30 + name_len)[0] == 0x0001
    _, _, st = stats_of(data)
    assert st.reproduced == st.streams == 3


def test_zip64_end_records():
    """A real zip64 end-of-central-directory record (more entries than a u16 allows is too big
    for a test; build it by rewriting the end record the way APPNOTE 4.3.14 allows)."""
    data = build(MEMBERS)
    eocd = data.rfind(b"PK\x05\x06")
    count, cd_size, cd_off = struct.unpack_from("<HII", data, eocd + 10)
    rec = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_off
    )
    loc = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd, 1)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    z64 = data[:eocd] + rec + loc + end
    assert [i.filename for i in zipfile.ZipFile(io.BytesIO(z64)).infolist()] == [
        n for n, _ in MEMBERS
    ]
    _, _, st = stats_of(z64)
    assert st.reproduced == st.streams == len(MEMBERS)


def test_comment_and_prefix_data():
    buf = io.BytesIO(build(MEMBERS))
    with zipfile.ZipFile(buf, "a") as zf:
        zf.comment = b"a comment " * 100
    commented = buf.getvalue()
    assert commented.endswith(b"a comment ")
    prefixed = b'#!/bin/sh\nexec python3 "$0"\n' + os.urandom(5000) + commented
    for blob in (commented, prefixed):
        _, _, st = stats_of(blob)
        assert st.reproduced == st.streams == len(MEMBERS)


def test_empty_zip():
    data = build([])
    layout, _expanded = roundtrip(data)
    assert layout.kind == "zip" and layout.nodes == (Raw(22),)


def test_duplicate_and_traversal_names_are_just_bytes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate
        data = build(
            [("a.txt", text(3000, 1)), ("a.txt", text(4000, 2)), ("../../etc/x", b"x" * 999)]
        )
    _layout, expanded, st = stats_of(data)
    assert st.reproduced == st.streams == 3
    assert text(3000, 1) in expanded and text(4000, 2) in expanded


def test_nested_archives_in_stored_and_deflated_members():
    inner = build(MEMBERS[:2])
    data = build([("inner.whl", inner, zipfile.ZIP_STORED), ("inner2.zip", inner)])
    _layout, expanded, st = stats_of(data)
    # 2 members in the stored inner zip + the deflated inner zip + its 2 members
    assert st.streams == st.reproduced == 5
    assert expanded.count(MEMBERS[0][1]) == 2
    _, _, st0 = stats_of(data, max_depth=0)
    assert st0.streams == 1


def test_zip_bomb_is_bounded():
    bomb = build([("zeros", b"\0" * (30 << 20))], level=9)
    layout, expanded = roundtrip(bomb, max_expanded_size=1 << 20)
    assert not any(isinstance(n, Deflate) for n in layout.nodes)
    assert len(expanded) == len(bomb)


def test_overlapping_entries_are_dropped():
    """Many central entries pointing at one local header (the overlapping-files bomb)."""
    data = build(MEMBERS[:1])
    eocd = data.rfind(b"PK\x05\x06")
    _count, cd_size, cd_off = struct.unpack_from("<HII", data, eocd + 10)
    entry = data[cd_off : cd_off + cd_size]
    forged = data[:cd_off] + entry * 50
    forged += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 50, 50, cd_size * 50, cd_off, 0)
    _, _, st = stats_of(forged)
    assert st.streams == 1


@pytest.mark.parametrize("seed", range(12))
def test_corrupted_and_truncated_zips_round_trip(seed):
    rnd = __import__("random").Random(seed)
    data = bytearray(build(MEMBERS))
    if seed % 3 == 0:
        data = data[: rnd.randrange(len(data))]
    else:
        for _ in range(rnd.randrange(1, 20)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
    roundtrip(bytes(data))


def test_bad_central_offsets():
    data = bytearray(build(MEMBERS))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, eocd + 16, 0xFFFFFFF0)  # central directory offset far away
    roundtrip(bytes(data))
    data = bytearray(build(MEMBERS))
    cd = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 42, len(data) + 100)  # local header offset out of range
    struct.pack_into("<I", data, cd + 20, 0xFFFFFFFE)  # compressed size too large
    roundtrip(bytes(data))


def test_scan_zip_on_other_data():
    assert scan_zip(os.urandom(1000)) is None
    assert scan_zip(b"", allow_prefix=True) is None
    assert scan_zip(b"xxPK\x05\x06" + b"\0" * 16, allow_prefix=False) is None


def test_pip_wheel_of_a_local_package(tmp_path):
    """A wheel built by pip + setuptools + wheel (the real builder), offline."""
    pkg = tmp_path / "src"
    (pkg / "tinypkg").mkdir(parents=True)
    for i in range(5):
        (pkg / "tinypkg" / f"m{i}.py").write_bytes(text(5000 + 7000 * i, seed=i))
    (pkg / "tinypkg" / "__init__.py").write_text("VERSION = '1.0'\n")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinypkg"\nversion = "1.0"\n'
    )
    out = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(pkg),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (whl,) = out.glob("*.whl")
    data = whl.read_bytes()
    layout, expanded, st = stats_of(data)
    assert st.streams >= 8 and st.reproduced == st.streams
    assert text(33_000, seed=4) in expanded
    assert zlib.crc32(data) == zlib.crc32(rebuild(layout, expanded))
