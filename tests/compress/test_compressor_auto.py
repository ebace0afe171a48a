"""Compressor.auto: the payload decides codec and level (real archives built here)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

import registry_core
from registry_core import Compressor
from registry_core.compress import _auto

PACKAGE = Path(registry_core.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
SITE = Path(pytest.__file__).parent.parent  # site-packages: plenty of real source


def _wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in SOURCES:
            zf.write(path, str(path.relative_to(PACKAGE)))
    return buf.getvalue()


def _tar(min_size: int) -> bytes:
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(SITE.glob("*/*.py")):
            tf.add(path, arcname=str(path.relative_to(SITE)))
            total += path.stat().st_size
            if total > min_size:
                break
    return buf.getvalue()


def test_wheel_is_not_recompressed():
    wheel = _wheel()
    c = Compressor.auto(wheel, "application/zip")
    assert c.coding == "identity"
    assert Compressor.auto(wheel).coding == "identity"  # sniffed by magic bytes


def test_gzip_payload_is_not_recompressed():
    body = gzip.compress(b"".join(p.read_bytes() for p in SOURCES))
    assert Compressor.auto(body).coding == "identity"


def test_stored_zip_gets_a_low_level_not_a_high_one():
    """A zip of stored (uncompressed) members is 'compressed' by type but still shrinks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in SOURCES:
            zf.write(path, str(path.relative_to(PACKAGE)))
    c = Compressor.auto(buf.getvalue(), "application/zip")
    assert (c.coding, c.level) == ("zstd", 1)


def test_large_tar_gets_zstd_long_distance():
    tar = _tar(2 << 20)
    assert tar[257:262] == b"ustar"
    c = Compressor.auto(tar, "application/x-tar")
    assert c.coding == "zstd" and c.level == _auto.LARGE_LEVEL and "long_distance" in repr(c)
    blob = c.compress(tar)
    assert c.decompress(blob) == tar
    assert len(blob) < len(gzip.compress(tar, 9))


def test_small_json_gets_the_dictionary(records, trained):
    doc = records[-1]
    c = Compressor.auto(doc, "application/json", dictionary=trained)
    assert c.coding == "zstd" and c.dictionary == trained and c.level == _auto.SMALL_DICT_LEVEL
    assert c.decompress(c.compress(doc)) == doc
    assert Compressor.auto(doc, dictionary=trained).dictionary == trained  # sniffed JSON
    assert Compressor.auto(doc).dictionary is None  # no dictionary configured
    big = json.dumps([json.loads(r) for r in records] * 3).encode()
    assert len(big) > _auto.SMALL_JSON_MAX
    assert Compressor.auto(big, "application/json", dictionary=trained).dictionary is None


def _mid_size_text(records) -> bytes:
    """Records joined, repeated until above the small-document bound (environments differ in
    how many distributions they hold, so the size is made, not assumed)."""
    doc = b"\n".join(records)
    while len(doc) <= _auto.SMALL_MAX:
        doc += b"\n" + doc
    return doc[: _auto.LDM_THRESHOLD - 1]


def test_text_is_compressed(records):
    doc = _mid_size_text(records)
    c = Compressor.auto(doc, "text/plain")
    assert c.coding == "zstd"
    assert len(c.compress(doc)) < len(doc) // 2


def test_precompressed_detection():
    assert _auto.is_precompressed(b"\x89PNG\r\n\x1a\n....", "")
    assert _auto.is_precompressed(b"anything", "image/jpeg")
    assert not _auto.is_precompressed(b"<svg/>", "image/svg+xml")
    assert _auto.is_precompressed(b"RIFF\0\0\0\0WEBPVP8 ", "")
    assert not _auto.is_precompressed(b'{"a": 1}', "application/json; charset=utf-8")


def test_small_payload_without_dictionary_gets_brotli(records):
    doc = records[0]
    assert len(doc) <= _auto.SMALL_MAX
    c = Compressor.auto(doc, "application/json")
    assert (c.coding, c.level) == ("br", _auto.SMALL_BR_LEVEL)
    assert c.decompress(c.compress(doc)) == doc


def test_mid_size_payload_gets_zstd_without_long_distance(records):
    doc = _mid_size_text(records)
    assert _auto.SMALL_MAX < len(doc) < _auto.LDM_THRESHOLD
    c = Compressor.auto(doc, "text/plain")
    assert (c.coding, c.level) == ("zstd", _auto.LARGE_LEVEL)
    assert "long_distance" not in repr(c)
