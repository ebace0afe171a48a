"""Gzip artifacts: every header variant and producer round-trips, bodies become Deflate nodes."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import subprocess
import tarfile
import zlib

import pytest
from test_deflate import text

from registry_core.delta._deflate import Budget, DeflateDetector
from registry_core.delta._gzip import parse_header, scan_gzip
from registry_core.delta._layout import Deflate, Layout, Raw, expand, expand_known, rebuild


def roundtrip(data: bytes, **kw) -> tuple[Layout, bytes]:
    layout, expanded = expand(data, **kw)
    assert rebuild(layout, expanded) == data
    assert expand_known(layout, data) == expanded
    assert Layout.from_bytes(layout.to_bytes()) == layout
    return layout, expanded


def handmade(content: bytes, *, flags: int, level: int = 6) -> bytes:
    """A gzip member with optional FEXTRA / FNAME / FCOMMENT / FHCRC, as RFC 1952 lays it out."""
    head = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 1_700_000_000) + b"\x00\x03"
    if flags & 0x04:
        extra = b"AP\x04\x00abcd"
        head += struct.pack("<H", len(extra)) + extra
    if flags & 0x08:
        head += b"name.tar\x00"
    if flags & 0x10:
        head += b"a comment\x00"
    if flags & 0x02:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = c.compress(content) + c.flush()
    return head + body + struct.pack("<II", zlib.crc32(content), len(content) & 0xFFFFFFFF)


@pytest.mark.parametrize("level", range(0, 10))
def test_gzip_module_levels(level):
    content = text(40_000, seed=level)
    data = gzip.compress(content, level, mtime=1_600_000_000)
    layout, expanded = roundtrip(data)
    assert layout.kind == "gzip"
    assert isinstance(layout.nodes[1], Deflate)
    assert content in expanded


@pytest.mark.parametrize("flags", [0x00, 0x02, 0x04, 0x08, 0x10, 0x1E])
def test_header_fields_stay_raw(flags):
    content = text(10_000)
    data = handmade(content, flags=flags)
    assert gzip.decompress(data) == content  # a valid member for the stdlib too
    layout, _expanded = roundtrip(data)
    header = parse_header(memoryview(data), 0)
    assert layout.nodes[0] == Raw(header)
    assert isinstance(layout.nodes[1], Deflate)
    assert layout.nodes[2] == Raw(8)


def test_several_members_and_trailing_padding():
    a, b = text(5000, 1), text(7000, 2)
    data = gzip.compress(a, 9, mtime=0) + handmade(b, flags=0x08, level=1) + b"\0" * 16
    layout, expanded = roundtrip(data)
    assert [type(n).__name__ for n in layout.nodes] == [
        "Raw",
        "Deflate",
        "Raw",
        "Deflate",
        "Raw",
    ]
    assert a in expanded and b in expanded


@pytest.mark.parametrize("cut", [3, 9, 15, 200, -9, -4, -1])
def test_truncated_gzip_round_trips(cut):
    data = gzip.compress(text(20_000), 6, mtime=0)[:cut]
    roundtrip(data)


def test_reserved_flag_bits_mean_not_gzip():
    data = bytearray(gzip.compress(text(1000), 6, mtime=0))
    data[3] |= 0x20
    layout, _ = roundtrip(bytes(data))
    assert layout.nodes == (Raw(len(data)),)


@pytest.mark.parametrize("level", [1, 5, 9])
def test_tarfile_sdist_with_nested_gzip(level):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=level) as tf:
        for i, size in enumerate((3000, 20_000, 150_000)):
            data = text(size, seed=i)
            info = tarfile.TarInfo(f"pkg-1.0/src/m{i}.py")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        inner = gzip.compress(b'{"items": [1, 2, 3]}\n' * 500, 9, mtime=0)
        info = tarfile.TarInfo("pkg-1.0/data/x.json.gz")
        info.size = len(inner)
        tf.addfile(info, io.BytesIO(inner))
    data = buf.getvalue()
    det = DeflateDetector()
    _layout, expanded = roundtrip(data, detector=det)
    assert det.stats.streams == 2 and det.stats.reproduced == 2
    assert b'{"items": [1, 2, 3]}\n' * 500 in expanded


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip CLI not installed")
@pytest.mark.parametrize("level", [1, 6, 9])
def test_gzip_cli_output_round_trips(level, tmp_path):
    content = text(300_000, seed=level)
    data = subprocess.run(
        ["gzip", f"-{level}", "-c"], input=content, capture_output=True, check=True
    ).stdout
    # GNU gzip is not zlib: large inputs may stay raw, but the bytes always come back.
    roundtrip(data)


def test_gzip_bomb_stays_compressed():
    data = gzip.compress(b"\0" * (20 << 20), 9, mtime=0)
    layout, expanded = roundtrip(data, max_expanded_size=1 << 20)
    assert layout.nodes == (Raw(len(data)),)
    assert len(expanded) == len(data)


def test_scan_gzip_not_gzip():
    assert scan_gzip(b"PK\x03\x04", Budget(100)) is None
    assert scan_gzip(b"\x1f\x8b\x08", Budget(100)) == []
