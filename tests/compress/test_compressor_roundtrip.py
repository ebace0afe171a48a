"""Round trips of every coding, one-shot and streaming (hypothesis properties)."""

from __future__ import annotations

import gzip
import io

import brotli
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from registry_core import Compressor
from registry_core.compress import DEFAULT_LEVELS, Dictionary

CODINGS = ["zstd", "br", "gzip", "identity"]
payloads = st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=64), st.integers(1, 500)),
)
splits = st.lists(st.integers(0, 5000), max_size=6)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


@pytest.mark.parametrize("coding", CODINGS)
@given(data=payloads)
def test_one_shot_round_trip(coding, data):
    c = Compressor(coding)
    assert c.decompress(c.compress(data)) == data


@pytest.mark.parametrize("coding", CODINGS)
@given(data=payloads, cuts=splits, cuts2=splits)
def test_iter_round_trip_with_arbitrary_chunking(coding, data, cuts, cuts2):
    c = Compressor(coding)
    blob = b"".join(c.compress_iter(_split(data, cuts)))
    assert c.decompress(blob) == data
    assert b"".join(c.decompress_iter(_split(blob, cuts2))) == data


@pytest.mark.parametrize("coding", CODINGS)
def test_stream_round_trip_files(coding, tmp_path, records):
    data = b"\n".join(records) * 3
    src = tmp_path / "in"
    src.write_bytes(data)
    c = Compressor(coding)
    with open(src, "rb") as fin, open(tmp_path / "z", "wb") as fout:
        read, written = c.compress_stream(fin, fout, read_size=4096)
    assert read == len(data) and written == (tmp_path / "z").stat().st_size
    out = io.BytesIO()
    with open(tmp_path / "z", "rb") as fin:
        read2, written2 = c.decompress_stream(fin, out, read_size=1000)
    assert out.getvalue() == data and written2 == len(data) and read2 == written


def test_default_levels_are_the_libraries_defaults():
    assert DEFAULT_LEVELS == {"zstd": 3, "br": 11, "gzip": 6, "identity": 0}
    assert Compressor("zstd").level == 3 and Compressor("br").level == 11


@pytest.mark.parametrize("level", [-7, 1, 19, 22])
def test_zstd_levels(level, records):
    data = b"".join(records)
    c = Compressor("zstd", level)
    assert c.decompress(c.compress(data)) == data


def test_long_distance_mode_round_trips_and_finds_far_repeats():
    import os

    block = os.urandom(1 << 20)
    data = block + os.urandom(9 << 20) + block  # repeat 10 MiB apart: beyond level 3's window
    plain = Compressor("zstd", 3)
    ldm = Compressor("zstd", 3, long_distance=True)
    blob = ldm.compress(data)
    assert ldm.decompress(blob) == data
    assert len(blob) < len(plain.compress(data)) - (900 << 10)


def test_interop_with_the_reference_libraries(records):
    """Bodies are plain zstd / brotli / gzip: the libraries (and gzip module) read them."""
    data = b"".join(records)
    assert zstandard.ZstdDecompressor().decompress(Compressor("zstd").compress(data)) == data
    assert brotli.decompress(Compressor("br", 5).compress(data)) == data
    assert gzip.decompress(Compressor("gzip").compress(data)) == data
    # and the other way round
    assert Compressor("gzip").decompress(gzip.compress(data)) == data
    assert Compressor("br").decompress(brotli.compress(data)) == data
    assert Compressor("zstd").decompress(zstandard.ZstdCompressor().compress(data)) == data


def test_concatenated_gzip_members_and_zstd_frames(records):
    a, b = records[0], records[1]
    assert Compressor("gzip").decompress(gzip.compress(a) + gzip.compress(b)) == a + b
    z = Compressor("zstd")
    assert z.decompress(z.compress(a) + z.compress(b)) == a + b


def test_zstd_frames_without_content_size_are_decoded(records):
    data = b"".join(records)
    cobj = zstandard.ZstdCompressor().compressobj()
    blob = cobj.compress(data) + cobj.flush()
    assert zstandard.get_frame_parameters(blob).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert Compressor("zstd").decompress(blob) == data


@given(data=st.binary(max_size=3000))
def test_trained_dictionary_round_trip(trained, data):
    c = Compressor("zstd", 19, dictionary=trained)
    assert c.decompress(c.compress(data)) == data


@given(base=st.binary(min_size=1, max_size=3000), data=st.binary(max_size=3000))
def test_dcz_round_trip(base, data):
    c = Compressor("dcz", dictionary=Dictionary(base))
    blob = c.compress(data)
    assert c.decompress(blob) == data
    assert b"".join(c.decompress_iter(blob[i : i + 7] for i in range(0, len(blob), 7))) == data


def test_coding_attribute_and_aliases():
    assert Compressor("x-gzip").coding == "gzip"
    assert Compressor("ZSTD").coding == "zstd"
    assert Compressor("identity").coding == "identity"
    assert "dictionary" not in repr(Compressor("br"))


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("piece", [997, None])
def test_output_much_larger_than_one_decoder_step(coding, piece):
    """Regression: brotli held back output past the last input chunk (1 MiB output steps)."""
    import os

    data = os.urandom(1 << 14) * 64 + bytes(3 << 20)
    c = Compressor(coding, 5 if coding == "br" else None)
    blob = c.compress(data)
    if piece is None:
        assert c.decompress(blob) == data
    else:
        chunks = [blob[i : i + piece] for i in range(0, len(blob), piece)]
        assert b"".join(c.decompress_iter(chunks)) == data


def test_importing_compress_loads_no_codec_library():
    import subprocess
    import sys

    code = (
        "import sys, registry_core.compress as c; c.Compressor.negotiate('gzip');"
        "print(sorted(m for m in ('zstandard', 'brotli') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_attributes_are_read_only():
    c = Compressor("gzip", 9)
    with pytest.raises(AttributeError):
        c.coding = "br"  # type: ignore[misc]
    assert (c.coding, c.level, c.dictionary) == ("gzip", 9, None)
