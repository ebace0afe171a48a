"""registry_core._util byte_view (the one buffer check) and the strict varint codec."""

from __future__ import annotations

import array
import mmap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core._util import byte_view, decode_uvarint, encode_uvarint
from registry_core._util._varint import MAX_UVARINT
from registry_core.errors import CorruptPatchError, InvalidArgumentError, InvalidTypeError


@pytest.mark.parametrize(
    "data", [b"abc", bytearray(b"abc"), memoryview(b"abc"), array.array("B", b"abc")]
)
def test_byte_view_accepts_buffers(data: object) -> None:
    view = byte_view(data)
    assert view.format == "B" and bytes(view) == b"abc"


def test_byte_view_accepts_mmap_and_wide_items() -> None:
    m = mmap.mmap(-1, 8)
    m[:] = b"12345678"
    assert bytes(byte_view(m)) == b"12345678"
    wide = array.array("I", [1, 2])
    assert len(byte_view(wide)) == 8
    del m


@pytest.mark.parametrize("bad", ["text", 3, None, [1, 2]])
def test_byte_view_refuses_non_buffers(bad: object) -> None:
    with pytest.raises(InvalidTypeError, match="data"):
        byte_view(bad)


def test_byte_view_refuses_non_contiguous() -> None:
    with pytest.raises(InvalidTypeError, match="contiguous"):
        byte_view(memoryview(b"abcdef")[::2], "patch")


@given(st.integers(0, MAX_UVARINT))
def test_varint_round_trip(value: int) -> None:
    out = bytearray(b"\xff")
    encode_uvarint(out, value)
    assert decode_uvarint(out, 1) == (value, len(out))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (b"\x80\x00", "non-minimal"),
        (b"\xff" * 9 + b"\x01", "out-of-range|over-long"),
        (b"\xff" * 10 + b"\x01", "over-long"),
    ],
)
def test_varint_decode_is_strict(blob: bytes, message: str) -> None:
    with pytest.raises(CorruptPatchError, match=message):
        decode_uvarint(blob, 0)


def test_varint_encode_refuses_out_of_range() -> None:
    for value in (-1, MAX_UVARINT + 1):
        with pytest.raises(InvalidArgumentError):
            encode_uvarint(bytearray(), value)
