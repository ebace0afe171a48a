"""Hostile input: truncation, bit flips, bombs, wrong dictionaries, wrong types."""

from __future__ import annotations

import contextlib
import gzip
import mmap
import zlib
from array import array

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from registry_core import Compressor
from registry_core.compress import Dictionary
from registry_core.errors import (
    CompressionError,
    DecompressionLimitError,
    InvalidArgumentError,
    InvalidTypeError,
)

MIB = 1 << 20
GIB = 1 << 30
CODECS = ["zstd", "br", "gzip"]


def _sample(records) -> bytes:
    return b"\n".join(records[:20])


@pytest.mark.parametrize("coding", [*CODECS, "dcz"])
def test_every_truncation_raises(coding, records):
    data = _sample(records)
    c = Compressor(coding, dictionary=Dictionary(records[30]) if coding == "dcz" else None)
    blob = c.compress(data)
    step = max(1, len(blob) // 300)
    for cut in range(0, len(blob), step):
        with pytest.raises(CompressionError):
            c.decompress(blob[:cut])
        with pytest.raises(CompressionError):
            b"".join(c.decompress_iter([blob[:cut]]))


@pytest.mark.parametrize("coding", CODECS)
def test_empty_input_is_not_a_body(coding):
    with pytest.raises(CompressionError):
        Compressor(coding).decompress(b"")


@pytest.mark.parametrize("coding", ["zstd", "gzip"])
@given(data=st.binary(min_size=1, max_size=2000), flip=st.integers(0, 1 << 30))
def test_bit_flips_are_detected_by_checksummed_codings(coding, data, flip):
    """zstd (with its checksum) and gzip (CRC-32): a flipped bit raises or changes nothing."""
    c = Compressor(coding)
    blob = bytearray(c.compress(data))
    bit = flip % (len(blob) * 8)
    blob[bit // 8] ^= 1 << (bit % 8)
    try:
        out = c.decompress(bytes(blob))
    except CompressionError:
        return
    assert out == data  # e.g. gzip's mtime/OS header bytes are not covered by the CRC


@given(data=st.binary(min_size=1, max_size=2000), flip=st.integers(0, 1 << 30))
def test_bit_flips_in_brotli_never_crash(data, flip):
    """brotli has no checksum: corruption either raises or yields bytes (see docs)."""
    c = Compressor("br", 5)
    blob = bytearray(c.compress(data))
    bit = flip % (len(blob) * 8)
    blob[bit // 8] ^= 1 << (bit % 8)
    try:
        out = c.decompress(bytes(blob), max_output_size=1 << 16)
    except CompressionError:
        return
    assert isinstance(out, bytes)


@pytest.mark.parametrize("coding", CODECS)
@given(garbage=st.binary(max_size=300))
def test_random_garbage_raises_compression_error(coding, garbage):
    with contextlib.suppress(CompressionError):
        Compressor(coding).decompress(garbage, max_output_size=1 << 16)


@pytest.mark.parametrize("coding", CODECS)
def test_trailing_garbage_is_refused(coding, records):
    c = Compressor(coding)
    with pytest.raises(CompressionError):
        c.decompress(c.compress(records[0]) + b"\x01garbage")


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


def _gib_of_zeros(coding: str) -> bytes:
    """A body that decodes to 1 GiB of zeros, built without holding 1 GiB."""
    if coding == "zstd":  # 16 frames of 64 MiB, declaring no content size
        cobj = zstandard.ZstdCompressor(level=1, write_content_size=False).compressobj()
        member = cobj.compress(bytes(64 * MIB)) + cobj.flush()
        return member * 16
    if coding == "gzip":  # 16 concatenated members (RFC 1952 allows it)
        return gzip.compress(bytes(64 * MIB), compresslevel=1, mtime=0) * 16
    c = Compressor("br", 0)
    return b"".join(c.compress_iter(bytes(MIB) for _ in range(1024)))


@pytest.mark.parametrize("coding", CODECS)
def test_one_gib_bomb_is_refused_without_memory_or_much_output(coding):
    """Refused after at most limit + one output step (1 MiB) was produced: the work done is
    bounded by the output counted, not by the 1 GiB the bomb declares (no wall clock)."""
    bomb = _gib_of_zeros(coding)
    assert len(bomb) < 8 * MIB
    c = Compressor(coding)
    can_measure = _peak_rss_reset()
    before = _peak_rss_kib()
    with pytest.raises(DecompressionLimitError):
        c.decompress(bomb, max_output_size=MIB)
    produced = 0
    with pytest.raises(DecompressionLimitError):
        for piece in c.decompress_iter([bomb], max_output_size=MIB):
            produced += len(piece)
    assert produced <= MIB  # pieces handed out before the refusal stay within the limit
    if can_measure:
        assert _peak_rss_kib() - before < 64 * 1024  # KiB: far below the 1 GiB of output


@pytest.mark.parametrize("coding", CODECS)
def test_bomb_decoder_reads_little_of_its_input(coding):
    """A decoder stops pulling compressed input once the limit is passed: it consumed at most
    a few input steps of the bomb, so its work is bounded by the limit, not by the bomb."""
    bomb = _gib_of_zeros(coding)
    step = 64  # small input steps, so that "a few of them" is a small share of the bomb
    pulled = 0

    def pieces():
        nonlocal pulled
        for start in range(0, len(bomb), step):
            pulled += 1
            yield bomb[start : start + step]

    with pytest.raises(DecompressionLimitError):
        for _ in Compressor(coding).decompress_iter(pieces(), max_output_size=MIB):
            pass
    total = -(-len(bomb) // step)
    assert pulled < total // 4, (pulled, total)  # it read a small part of the bomb


def test_zstd_declared_size_is_refused_before_decoding():
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(256 * MIB))
    assert zstandard.get_frame_parameters(bomb).content_size == 256 * MIB
    with pytest.raises(DecompressionLimitError):
        Compressor("zstd").decompress(bomb, max_output_size=MIB)


@pytest.mark.parametrize("coding", [*CODECS, "identity"])
def test_limit_is_exact(coding, records):
    data = _sample(records)
    c = Compressor(coding)
    blob = c.compress(data)
    assert c.decompress(blob, max_output_size=len(data)) == data
    with pytest.raises(DecompressionLimitError):
        c.decompress(blob, max_output_size=len(data) - 1)
    assert c.decompress(blob, max_output_size=None) == data


def test_zstd_window_above_the_decoder_limit_is_refused():
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=28)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    blob = cobj.compress(bytes(MIB)) + cobj.flush()
    with pytest.raises(CompressionError, match="window"):
        Compressor("zstd").decompress(blob)


def test_zstd_wrong_or_missing_dictionary(records, trained):
    with_dict = Compressor("zstd", 19, dictionary=trained)
    blob = with_dict.compress(records[-1])
    with pytest.raises(CompressionError, match="dictionary"):
        Compressor("zstd").decompress(blob)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(InvalidArgumentError, match="unknown content coding"):
        Compressor("lzma")
    with pytest.raises(InvalidArgumentError, match="level"):
        Compressor("gzip", 10)
    with pytest.raises(InvalidTypeError):
        Compressor("zstd").compress("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        Compressor("zstd").decompress(b"", max_output_size=-1)
    with pytest.raises(InvalidArgumentError, match="dcz"):
        Compressor("dcz")
    with pytest.raises(InvalidArgumentError, match="brotli"):
        Compressor("br", dictionary=Dictionary(b"abc"))
    with pytest.raises(InvalidArgumentError):
        Compressor("gzip", long_distance=True)
    assert issubclass(DecompressionLimitError, CompressionError)


def test_zlib_stream_is_not_gzip():
    with pytest.raises(CompressionError):
        Compressor("gzip").decompress(zlib.compress(b"hello"))


@pytest.mark.parametrize("coding", [*CODECS, "identity"])
def test_buffers_are_checked_by_the_one_byte_view(coding, tmp_path, records):
    """mmap and memoryviews of any item size are accepted (as everywhere in registry_core),
    measured in bytes; str and non-buffers raise InvalidTypeError."""
    data = _sample(records)
    c = Compressor(coding)
    path = tmp_path / "payload"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        blob = c.compress(mm)
        assert c.decompress(blob) == data
        assert b"".join(c.compress_iter([mm])) and c.decompress(c.compress(memoryview(mm))) == data
    words = array("I", range(1000))
    blob = c.compress(memoryview(words))
    assert c.decompress(blob, max_output_size=4000) == words.tobytes()
    with pytest.raises(DecompressionLimitError):
        c.decompress(c.compress(words.tobytes()), max_output_size=3999)
    for bad in ("text", 5, [1, 2]):
        with pytest.raises(InvalidTypeError):
            c.compress(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidTypeError):
            c.decompress(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidTypeError):
            list(c.compress_iter([bad]))  # type: ignore[list-item]
    with pytest.raises(InvalidTypeError):
        Dictionary("text")  # type: ignore[arg-type]
