"""Hypothesis properties of layouts: round trips on generated archives, encoding, corruption."""

from __future__ import annotations

import contextlib
import gzip
import io
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.delta._layout import (
    Deflate,
    DeflateParams,
    Layout,
    Raw,
    expand,
    expand_known,
    rebuild,
)
from registry_core.errors import CorruptPatchError, RegistryCoreError

SETTINGS = settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])

contents = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda w, n: w * n, st.binary(min_size=1, max_size=40), st.integers(1, 300)),
)


@st.composite
def zips(draw) -> bytes:
    buf = io.BytesIO()
    level = draw(st.sampled_from([None, 0, 1, 5, 6, 9]))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for i in range(draw(st.integers(0, 5))):
            data = draw(contents)
            if draw(st.booleans()):
                data = gzip.compress(data, draw(st.integers(0, 9)), mtime=0)
            method = draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED]))
            zf.writestr(f"m{i}", data, compress_type=method)
        if draw(st.booleans()):
            zf.comment = draw(st.binary(max_size=50))
    return buf.getvalue()


@st.composite
def gzips(draw) -> bytes:
    parts = [
        gzip.compress(draw(contents), draw(st.integers(0, 9)), mtime=draw(st.integers(0, 2**31)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    return b"".join(parts) + draw(st.binary(max_size=10))


def check(data: bytes) -> None:
    layout, expanded = expand(data)
    assert layout.original_size() == len(data)
    assert layout.expanded_size() == len(expanded)
    assert rebuild(layout, expanded) == data
    assert expand_known(layout, data) == expanded
    assert Layout.from_bytes(layout.to_bytes()) == layout
    assert expand(data) == (layout, expanded)  # deterministic


@SETTINGS
@given(zips())
def test_zip_roundtrip(data):
    check(data)


@SETTINGS
@given(gzips())
def test_gzip_roundtrip(data):
    check(data)


@SETTINGS
@given(st.binary(max_size=5000))
def test_random_bytes_roundtrip(data):
    check(data)


@SETTINGS
@given(zips(), st.data())
def test_mutated_archives_roundtrip(data, draw):
    """Flipped bytes and cuts anywhere: expand never raises, rebuild is still exact."""
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 8))):
        if buf:
            buf[draw.draw(st.integers(0, len(buf) - 1))] ^= draw.draw(st.integers(1, 255))
    cut = draw.draw(st.integers(0, len(buf)))
    check(bytes(buf[:cut]))
    check(b"\x1f\x8b\x08\x00" + bytes(buf))


params = st.builds(
    DeflateParams, st.integers(0, 9), st.integers(8, 15), st.integers(1, 9), st.integers(0, 4)
)


def nodes(depth: int):
    raw = st.builds(Raw, st.integers(0, 2**40))
    if depth == 0:
        return raw
    deflate = st.builds(
        Deflate,
        st.integers(0, 2**40),
        params,
        st.lists(nodes(depth - 1), max_size=4).map(tuple),
        st.one_of(st.none(), st.integers(0, 10**6)),
    )
    return st.one_of(raw, deflate)


layouts = st.builds(
    Layout, st.sampled_from(["raw", "zip", "gzip"]), st.lists(nodes(3), max_size=6).map(tuple)
)


@given(layouts)
def test_layout_encoding_roundtrip(layout):
    blob = layout.to_bytes()
    assert Layout.from_bytes(blob) == layout
    assert Layout.from_bytes(blob).to_bytes() == blob


@given(layouts, st.data())
def test_truncated_or_extended_layout_bytes_raise(layout, data):
    blob = layout.to_bytes()
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(blob[:cut])
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(blob + data.draw(st.binary(min_size=1, max_size=4)))


@given(layouts, st.data())
def test_bit_flipped_layout_bytes_raise_or_parse_canonically(layout, data):
    blob = bytearray(layout.to_bytes())
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        parsed = Layout.from_bytes(bytes(blob))
    except CorruptPatchError:
        return
    assert parsed.to_bytes() == bytes(blob)


@SETTINGS
@given(zips(), st.data())
def test_wrong_layout_for_data_raises_cleanly(data, draw):
    """Following or rebuilding with a layout that does not fit: a library error, never a crash."""
    layout, expanded = expand(data)
    other = bytearray(data)
    if other:
        other[draw.draw(st.integers(0, len(other) - 1))] ^= 0xFF
    with contextlib.suppress(RegistryCoreError):
        expand_known(layout, bytes(other))
    try:
        junk = draw.draw(st.binary(min_size=len(expanded), max_size=len(expanded)))
        rebuild(layout, junk)
    except RegistryCoreError:
        pass


def test_max_nodes_and_nesting_limits():
    deep: Raw | Deflate = Raw(1)
    for _ in range(20):
        deep = Deflate(5, DeflateParams(6, 15, 8, 0), (deep,))
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(Layout("zip", (deep,)).to_bytes())
    many = Layout("zip", tuple(Raw(i) for i in range(1000)))
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(many.to_bytes(), max_nodes=999)
    assert Layout.from_bytes(many.to_bytes(), max_nodes=1000) == many
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(b"RCLY\x01\x00\xff\xff\xff\xff\x0f")  # huge count, no nodes
    with pytest.raises(CorruptPatchError):
        Layout.from_bytes(b"RCLY\x03\x00\x00")  # unknown version (1 and 2 are read)
