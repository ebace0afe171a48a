"""The structural zstd frame walker that detects truncation (zstandard itself does not)."""

from __future__ import annotations

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from registry_core import Compressor
from registry_core.compress._frames import ZstdFrameWalker
from registry_core.errors import CompressionError

SKIPPABLE = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"abcde"


def _frames(data: bytes, level: int, checksum: bool, content_size: bool) -> bytes:
    cctx = zstandard.ZstdCompressor(
        level=level, write_checksum=checksum, write_content_size=content_size
    )
    return cctx.compress(data)


@given(
    data=st.binary(max_size=3000),
    level=st.integers(1, 19),
    checksum=st.booleans(),
    content_size=st.booleans(),
    step=st.integers(1, 64),
)
def test_complete_exactly_at_the_end(data, level, checksum, content_size, step):
    blob = _frames(data, level, checksum, content_size)
    walker = ZstdFrameWalker()
    for i in range(0, len(blob), step):
        assert not walker.complete  # no proper prefix of a frame is complete
        walker.feed(blob[i : i + step])
    assert walker.complete and walker.frames == 1
    if content_size:
        assert walker.declared_size == len(data) and not walker.unknown_size
    for cut in range(len(blob)):
        w = ZstdFrameWalker()
        w.feed(blob[:cut])
        with pytest.raises(CompressionError):
            w.finish()


def test_large_frames_rle_and_raw_blocks():
    import os

    data = bytes(1 << 20) + os.urandom(300_000) + b"ab" * 200_000
    blob = _frames(data, 3, True, True)
    walker = ZstdFrameWalker()
    walker.feed(blob)
    walker.finish()
    assert walker.declared_size == len(data)


def test_skippable_frames_and_multiple_frames():
    f = _frames(b"hello" * 100, 3, True, True)
    walker = ZstdFrameWalker()
    walker.feed(SKIPPABLE + f + SKIPPABLE + f)
    walker.finish()
    assert walker.frames == 2 and walker.declared_size == 1000
    c = Compressor("zstd")
    assert c.decompress(f + SKIPPABLE + f) == b"hello" * 200
    assert b"".join(c.decompress_iter([f + SKIPPABLE, f])) == b"hello" * 200


@pytest.mark.parametrize(
    "tail", [b"garbage", SKIPPABLE[:3], b"\x00", (0xFD2FB528).to_bytes(4, "little")]
)
def test_streaming_decoder_refuses_trailing_bytes(tail):
    c = Compressor("zstd")
    f = c.compress(b"hello" * 100)
    with pytest.raises(CompressionError):
        b"".join(c.decompress_iter([f, tail]))


def test_reserved_bits_and_block_types_are_refused():
    f = bytearray(_frames(b"hello" * 100, 3, False, True))
    bad = bytearray(f)
    bad[4] |= 0x08  # reserved bit of the frame header descriptor
    with pytest.raises(CompressionError, match="reserved"):
        ZstdFrameWalker().feed(bytes(bad))
