"""Reconstructed Deflate nodes in layouts (version 2) and archive patches.

Streams no zlib / miniz parameters reproduce (a sync flush in the middle, GNU gzip on large
inputs) are expanded anyway and rebuilt from a correction record; layouts without such a node
are still written as version 1, and version-1 layouts still decode.
"""

from __future__ import annotations

import functools
import io
import random
import shutil
import subprocess
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core import DeltaAggregator
from registry_core.delta._deflate import RECON, DeflateParams, StreamPolicy
from registry_core.delta._layout import Deflate, Layout, Raw, expand, expand_artifact, rebuild
from registry_core.errors import CorruptPatchError, InvalidArgumentError

pytestmark = pytest.mark.native


def _text(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    words = [b'"name": ', b'"value"', b"{", b"}", b",\n", b"  ", b"true", b"null", b"12", b"[]"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words)
    return bytes(out[:n])


def _sync_flushed(text: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    half = len(text) // 2
    return (
        c.compress(text[:half]) + c.flush(zlib.Z_SYNC_FLUSH) + c.compress(text[half:]) + c.flush()
    )


def _zip_with_raw_member(name: str, content: bytes, comp: bytes, extra: bytes = b"") -> bytes:
    """A zip (written here, field by field) whose deflated members have the given bytes."""
    import struct

    members = [(name.encode(), content, comp)]
    if extra:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        members.append((b"extra.py", extra, c.compress(extra) + c.flush()))
    out, central = bytearray(), bytearray()
    for fname, data, body in members:
        crc = zlib.crc32(data)
        fixed = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x5821, crc, len(body), len(data))
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fixed
        central += struct.pack("<HHHHHII", len(fname), 0, 0, 0, 0, 0, len(out)) + fname
        out += b"PK\x03\x04" + fixed + struct.pack("<HH", len(fname), 0) + fname + body
    cd = len(out)
    out += central
    out += b"PK\x05\x06" + struct.pack(
        "<HHHHIIH", 0, 0, len(members), len(members), len(central), cd, 0
    )
    assert zipfile.ZipFile(io.BytesIO(bytes(out))).read(name) == content
    return bytes(out)


def test_layout_v1_is_written_without_reconstructed_nodes():
    layout = Layout("zip", (Raw(3), Deflate(10, DeflateParams(6, 15, 8, 0), (Raw(20),))))
    blob = layout.to_bytes()
    assert blob[4] == 1
    assert Layout.from_bytes(blob) == layout


def test_layout_v2_round_trip_and_checks():
    rec = DeflateParams(0, 15, 8, 0, RECON, b"\x01\x06record")
    layout = Layout(
        "gzip", (Raw(10), Deflate(50, rec, (Raw(100), Deflate(7, rec, (Raw(9),)))), Raw(8))
    )
    blob = layout.to_bytes()
    assert blob[4] == 2
    assert Layout.from_bytes(blob) == layout
    copied = layout.with_copy_from({0: 0})
    assert Layout.from_bytes(copied.to_bytes()) == copied
    # a version-1 layout may not hold tag 4; truncated records are refused
    v1 = bytearray(blob)
    v1[4] = 1
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(bytes(v1))
    for cut in range(6, len(blob)):
        with pytest.raises(CorruptPatchError):
            Layout.from_bytes(blob[:cut])


def test_params_validation():
    with pytest.raises(InvalidArgumentError):
        DeflateParams(0, 15, 8, 0, RECON)  # no record
    with pytest.raises(InvalidArgumentError):
        DeflateParams(6, 15, 8, 0, 0, b"x")  # a record on a zlib stream
    with pytest.raises(InvalidArgumentError):
        DeflateParams(6, 15, 8, 0, RECON, b"x")  # reconstructed streams record level 0
    assert "record=<3 bytes>" in repr(DeflateParams(0, 15, 8, 0, RECON, b"abc"))


def test_unreproducible_stream_is_expanded_and_rebuilt():
    text = _text(1, 30_000)
    data = _zip_with_raw_member("odd.bin", text, _sync_flushed(text))
    layout, expanded = expand(data)
    engines = [e.node.params.engine for e in layout.deflate_entries()]
    assert engines == [RECON]
    assert text in expanded
    assert rebuild(Layout.from_bytes(layout.to_bytes()), expanded) == data
    # without reconstruction the stream stays compressed
    got = expand_artifact(data, policy=StreamPolicy(reconstruct=False))
    assert got.layout.deflate_entries() == []


def test_archive_patch_with_reconstructed_member_is_small_and_applies():
    text = _text(2, 40_000)
    changed = text.replace(b"true", b"TRUE", 1)
    old = _zip_with_raw_member("odd.bin", text, _sync_flushed(text))
    new = _zip_with_raw_member("odd.bin", changed, _sync_flushed(changed), b"import os\n")
    on, off = DeltaAggregator(archive_aware=True), DeltaAggregator(reconstruct=False)
    p_on, p_off = on.diff(old, new), off.diff(old, new)
    assert on.last_stats["reconstructed_streams"] == 1
    assert on.apply(old, p_on) == new and off.apply(old, p_off) == new
    assert len(p_on) * 4 < len(p_off)
    newer_text = changed.replace(b"null", b"NULL", 1)
    newer = _zip_with_raw_member("odd.bin", newer_text, _sync_flushed(newer_text), b"import os\n")
    p2 = on.diff(new, newer)
    assert on.apply(old, on.compose([p_on, p2])) == newer


@functools.lru_cache(maxsize=4)
def _expanded_odd(seed: int) -> tuple[Layout, bytes]:
    text = _text(seed, 20_000)
    return expand(_zip_with_raw_member("odd.bin", text, _sync_flushed(text)))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 3), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_damaged_reconstruction_records_fail_cleanly(seed, pos, junk):
    layout, expanded = _expanded_odd(seed)
    (entry,) = layout.deflate_entries()
    record = bytearray(entry.node.params.record)
    at = pos % len(record)
    record[at : at + len(junk)] = junk
    params = DeflateParams(0, 15, 8, 0, RECON, bytes(record))
    node = Deflate(entry.node.clen, params, entry.node.children)
    bad = Layout(layout.kind, tuple(node if isinstance(n, Deflate) else n for n in layout.nodes))
    try:
        out = rebuild(bad, expanded)
    except CorruptPatchError:
        return
    assert len(out) == layout.original_size()  # parsed: same length (the digest check decides)


def test_gnu_gzip_member_in_a_wheel_is_expanded(tmp_path):
    if not shutil.which("gzip"):
        pytest.skip("GNU gzip is not installed")
    text = _text(3, 400_000)
    src = tmp_path / "data.json"
    src.write_bytes(text)
    gz = subprocess.run(
        ["gzip", "-6", "-n", "-c", str(src)], capture_output=True, check=True
    ).stdout
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/data/data.json.gz", gz)
    layout, expanded = expand(out.getvalue())
    engines = sorted(e.node.params.engine for e in layout.deflate_entries())
    assert engines == [0, RECON]  # the zip member (zlib) and the GNU gzip body inside it
    rec = next(e.node for e in layout.deflate_entries() if e.node.params.engine == RECON)
    assert len(rec.params.record) < 200  # GNU gzip's matcher is zlib's: next to nothing to store
    assert rebuild(layout, expanded) == out.getvalue()
