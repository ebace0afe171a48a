"""Trained dictionaries and RFC 9842 dcz bodies."""

from __future__ import annotations

import hashlib
import io
import zlib

import pytest
import zstandard

from registry_core import Compressor
from registry_core.compress import DCZ_MAGIC, Dictionary, dcz_window_limit
from registry_core.errors import CompressionError, InvalidArgumentError, InvalidTypeError


def test_trained_dictionary_has_a_stable_id(records, trained):
    again = Compressor.train_dictionary(records[: len(records) // 2], size=4096)
    assert again == trained and again.id == trained.id  # training is deterministic
    assert trained.id == hashlib.sha256(trained.to_bytes()).hexdigest()
    assert trained.sha256 == hashlib.sha256(trained.to_bytes()).digest()
    assert trained.kind == "zstd" and trained.zstd_dict_id != 0
    assert len(trained) <= 4096


def test_serialisation_round_trip(trained, tmp_path):
    path = tmp_path / "dict.bin"
    path.write_bytes(trained.to_bytes())
    loaded = Dictionary.from_bytes(path.read_bytes())
    assert loaded == trained and hash(loaded) == hash(trained)
    c1 = Compressor("zstd", 19, dictionary=trained)
    c2 = Compressor("zstd", 19, dictionary=loaded)
    doc = b'{"name": "example", "version": "1.0"}'
    assert c2.decompress(c1.compress(doc)) == doc


def test_dictionary_makes_small_metadata_much_smaller(records, trained):
    """Measured on documents the dictionary was not trained on."""
    held_out = records[len(records) // 2 :]
    with_dict = Compressor("zstd", 19, dictionary=trained)
    plain_zstd = Compressor("zstd", 19)
    dict_total = sum(len(with_dict.compress(d)) for d in held_out)
    gzip_total = sum(len(zlib.compress(d, 9)) for d in held_out)
    plain_total = sum(len(plain_zstd.compress(d)) for d in held_out)
    assert dict_total < 0.8 * gzip_total
    assert dict_total < plain_total
    for d in held_out:
        assert with_dict.decompress(with_dict.compress(d)) == d


def test_training_needs_samples():
    with pytest.raises(InvalidArgumentError):
        Compressor.train_dictionary([b"a"] * 3)
    with pytest.raises(InvalidTypeError):
        Compressor.train_dictionary(["text"] * 10)  # type: ignore[list-item]
    # a few bytes of samples crash zstd's trainer (SIGFPE): refused before reaching it
    with pytest.raises(InvalidArgumentError, match="bytes of samples"):
        Compressor.train_dictionary([b"x"] * 10, size=16384)
    with pytest.raises(InvalidArgumentError):
        Dictionary(b"")


def test_dcz_body_layout(records):
    old, new = b"\n".join(records[:12]), b"\n".join(records[1:13])
    d = Dictionary(old)
    assert d.kind == "raw"
    blob = Compressor("dcz", dictionary=d).compress(new)
    assert blob[:8] == DCZ_MAGIC == bytes.fromhex("5e2a4d1820000000")
    assert blob[8:40] == hashlib.sha256(old).digest()
    # the header is a zstd skippable frame: a plain zstd decoder given the raw dictionary
    # reads the whole body
    raw = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    reader = zstandard.ZstdDecompressor(dict_data=raw).stream_reader(
        io.BytesIO(blob), read_across_frames=True
    )
    assert reader.read() == new
    # delta effect: the body is far smaller than the new version compressed alone
    assert len(blob) < len(Compressor("zstd").compress(new)) // 2


def test_dcz_accepts_a_body_from_the_reference_library(records):
    """A dcz body assembled by hand with zstandard decodes with Compressor."""
    old, new = b"\n".join(records[:10]), b"\n".join(records[1:11])
    raw = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(level=10, dict_data=raw).compress(new)
    body = DCZ_MAGIC + hashlib.sha256(old).digest() + frame
    assert Compressor("dcz", dictionary=Dictionary(old)).decompress(body) == new


def test_dcz_wrong_dictionary_is_refused(records):
    blob = Compressor("dcz", dictionary=Dictionary(records[0])).compress(records[1])
    with pytest.raises(CompressionError, match="dictionary"):
        Compressor("dcz", dictionary=Dictionary(records[2])).decompress(blob)
    with pytest.raises(CompressionError, match="dcz magic"):
        Compressor("dcz", dictionary=Dictionary(records[0])).decompress(b"\0" * 8 + blob[8:])
    with pytest.raises(CompressionError, match="truncated"):
        Compressor("dcz", dictionary=Dictionary(records[0])).decompress(blob[:39])


def test_dcz_window_rules():
    mib = 1 << 20
    assert dcz_window_limit(0) == 8 * mib
    assert dcz_window_limit(16 * mib) == 20 * mib
    assert dcz_window_limit(500 * mib) == 128 * mib


@pytest.mark.parametrize("level", [3, 9])
def test_dcz_large_dictionary_is_indexed_whole(level):
    """A 12 MiB previous version: its first MiB (12 MiB back) is found as well as its last."""
    import os

    old = os.urandom(12 << 20)
    new = old[: 1 << 20] + old[-(1 << 20) :]
    c = Compressor("dcz", level, dictionary=Dictionary(old))
    blob = c.compress(new)
    assert c.decompress(blob) == new
    assert len(blob) < 64 << 10
    frame = zstandard.get_frame_parameters(blob[40:])
    assert frame.window_size <= dcz_window_limit(len(old))


@pytest.mark.parametrize(("window_log", "accepted"), [(23, True), (24, False)])
def test_dcz_window_bound_is_exact(records, window_log, accepted):
    """Small dictionary: the bound is 8 MiB; a 16 MiB window frame is refused."""
    import os

    old = records[0]
    raw = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=window_log)
    cobj = zstandard.ZstdCompressor(dict_data=raw, compression_params=params).compressobj()
    data = os.urandom(20 << 20)
    frame = cobj.compress(data) + cobj.flush()
    body = DCZ_MAGIC + hashlib.sha256(old).digest() + frame
    c = Compressor("dcz", dictionary=Dictionary(old))
    if accepted:
        assert c.decompress(body) == data
    else:
        with pytest.raises(CompressionError, match="window"):
            c.decompress(body)
