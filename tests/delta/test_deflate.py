"""DeflateDetector, deflate() and inflate_raw(): parameter detection against real zlib output."""

from __future__ import annotations

import random
import shutil
import subprocess
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.delta._deflate import (
    FEED_CHUNK,
    MINIZ,
    Budget,
    DeflateDetector,
    DeflateParams,
    deflate,
    inflate_raw,
)
from registry_core.errors import InvalidArgumentError


def text(n: int, seed: int = 1) -> bytes:
    """Compressible, source-like data (varied enough that levels give different streams)."""
    rnd = random.Random(seed)
    words = [
        b"def",
        b"return",
        b"self",
        b"import",
        b"value",
        b"None",
        b"(x)",
        b"\n    ",
        b"=",
        b"+",
    ]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" " + str(rnd.randrange(1000)).encode()
    return bytes(out[:n])


def raw_deflate(data: bytes, level: int, wbits: int = 15, mem: int = 8, strategy: int = 0) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits, mem, strategy)
    return c.compress(data) + c.flush()


def joined(content: bytes, params: DeflateParams) -> bytes:
    return b"".join(deflate(content, params))


@pytest.mark.parametrize(
    ("level", "wbits", "mem", "strategy"),
    [(lv, 15, 8, 0) for lv in range(0, 10)]
    + [(6, 15, 9, 0), (9, 15, 9, 0), (1, 15, 9, 0)]
    + [(6, 15, 8, zlib.Z_FILTERED), (6, 15, 8, zlib.Z_HUFFMAN_ONLY), (6, 15, 8, zlib.Z_RLE)]
    + [(6, 15, 8, zlib.Z_FIXED), (9, 12, 8, 0), (6, 15, 7, 0)],
)
def test_detects_parameters_of_zlib_streams(level, wbits, mem, strategy):
    content = text(70_000, seed=level)
    comp = raw_deflate(content, level, wbits, mem, strategy)
    det = DeflateDetector()
    found = det.find(comp, content)
    assert found is not None, "zlib's own output must be reproduced"
    assert joined(content, found) == comp
    assert det.stats.reproduced == 1 and det.stats.streams == 1


def test_large_streams_get_the_short_search():
    det = DeflateDetector()
    assert len(det.candidates(None, 10_000, 0xFF)) > det.max_large_attempts
    assert len(det.candidates(None, 1 << 20, 0xFF)) == det.max_large_attempts
    assert det.candidates(None, 1 << 20, 0xFF)[:3] == [
        DeflateParams(6, 15, 8, 0),
        DeflateParams(6, 15, 8, 0, MINIZ),  # Rust zip writers (maturin) come second
        DeflateParams(9, 15, 8, 0),
    ]
    assert det.candidates(None, 1000, 0x00)[0] == DeflateParams(0, 15, 8, 0)  # stored block first


def test_cache_puts_the_producers_parameters_first():
    det = DeflateDetector()
    for seed in range(5):
        content = text(20_000, seed=seed)
        assert det.find(raw_deflate(content, 3), content, key="p") == DeflateParams(3, 15, 8, 0)
    first = det.stats.attempts
    content = text(20_000, seed=99)
    det.find(raw_deflate(content, 3), content, key="p")
    assert det.stats.attempts == first + 1  # one guess: the cached one
    assert det.stats.per_producer["p"] == [6, 6]


def test_candidate_set_does_not_depend_on_history():
    fresh, used = DeflateDetector(), DeflateDetector()
    content = text(5000)
    used.find(raw_deflate(content, 4), content, key="k")
    a = fresh.candidates("k", 5000, 0xFF)
    b = used.candidates("k", 5000, 0xFF)
    assert set(a) == set(b) and a != b and b[0] == DeflateParams(4, 15, 8, 0)


def test_foreign_stream_is_not_reproduced():
    content = text(50_000)
    comp = bytearray(raw_deflate(content, 6))
    # Two stored blocks of 500 bytes made by hand: valid deflate, but zlib never splits so.
    stored = b""
    for final, part in ((0, content[:500]), (1, content[500:1000])):
        stored += (
            bytes([final]) + (500).to_bytes(2, "little") + (0xFFFF ^ 500).to_bytes(2, "little")
        )
        stored += part
    assert zlib.decompress(stored, -15) == content[:1000]
    assert DeflateDetector().find(stored, content[:1000]) is None
    assert DeflateDetector(max_attempts=3).find(bytes(comp[:-1]), content) is None


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip CLI not installed")
def test_gnu_gzip_small_input_reproduces_large_may_not():
    small = text(3000)
    out = subprocess.run(["gzip", "-9", "-n"], input=small, capture_output=True, check=True).stdout
    body = out[10:-8]
    found = DeflateDetector().find(body, small)
    assert found is not None and joined(small, found) == body


def test_params_validation():
    with pytest.raises(InvalidArgumentError):
        DeflateParams(10, 15, 8, 0)
    with pytest.raises(InvalidArgumentError):
        DeflateParams(6, 16, 8, 0)
    with pytest.raises(InvalidArgumentError):
        DeflateDetector(max_attempts=0)


@given(
    st.binary(max_size=3 * FEED_CHUNK + 77),
    st.integers(1, 9),
    st.sampled_from([8, 9]),
    st.integers(0, 4),
)
def test_chunked_feeding_equals_one_call(data, level, mem, strategy):
    """deflate() feeds 16 KiB at a time; zlib levels 1-9 give the same bytes as one call, which is
    why streams written in other piece sizes (zipfile's 8 KiB reads) reproduce."""
    data = data * 3
    assert joined(data, DeflateParams(level, 15, mem, strategy)) == raw_deflate(
        data, level, 15, mem, strategy
    )


@given(st.binary(max_size=5000), st.integers(0, 9))
def test_inflate_raw_roundtrip_and_corruption(data, level):
    comp = raw_deflate(data, level)
    res = inflate_raw(comp + b"trailing", Budget(1 << 20))
    assert res == (data, len(comp))
    assert inflate_raw(comp, Budget(1 << 20), need_end=True) == (data, len(comp))
    assert inflate_raw(comp + b"x", Budget(1 << 20), need_end=True) is None
    assert inflate_raw(comp[:-1], Budget(1 << 20)) is None  # truncated


def test_inflate_raw_respects_budget():
    bomb = raw_deflate(b"\0" * (8 << 20), 9)
    budget = Budget(1 << 20)
    assert inflate_raw(bomb, budget) is None
    assert budget.remaining == 1 << 20  # nothing charged for a refused stream
    budget = Budget(9 << 20)
    content, used = inflate_raw(bomb, budget)
    assert len(content) == 8 << 20 and used == len(bomb)
    assert budget.remaining == 1 << 20
    assert inflate_raw(b"\xff\xff\xff", Budget(100)) is None  # invalid block type


def test_miniz_streams_reproduce_and_rebuild():
    """Streams written by miniz_oxide (Rust zip writers such as maturin) are reproduced with the
    MINIZ engine, recorded in the layout and rebuilt byte-exact."""
    import io
    import struct
    import zipfile
    import zlib

    import cramjam

    from registry_core.delta._layout import Layout, expand, rebuild

    content = text(50_000, seed=4)
    comp = bytes(cramjam.deflate.compress(content, level=6))
    det = DeflateDetector()
    found = det.find(comp, content)
    assert found == DeflateParams(6, 15, 8, 0, MINIZ)
    # a zip whose member was compressed by miniz (as maturin writes wheels)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("placeholder", b"")
    name = b"pkg/native.so"
    crc = zlib.crc32(content)
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(comp), len(content), len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        0x032E,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(comp),
        len(content),
        len(name),
        0,
        0,
        0,
        0,
        0o644 << 16,
        0,
    )
    body = local + name + comp
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central) + len(name), len(body), 0)
    wheel = body + central + name + end
    assert zipfile.ZipFile(io.BytesIO(wheel)).read("pkg/native.so") == content
    layout, expanded = expand(wheel)
    engines = {e.node.params.engine for e in layout.deflate_entries()}
    assert engines == {MINIZ}
    assert Layout.from_bytes(layout.to_bytes()) == layout
    assert rebuild(layout, expanded) == wheel
