"""``Compressor.auto``: pick a codec and level from what the payload is.

The rule (measurements behind each threshold: docs/compress.md, ``benchmarks/bench_compress.py``):

1. Already compressed (zip/wheel, gzip, zstd, xz, bzip2, 7z, PNG/JPEG/GIF/WebP by magic bytes,
   or an ``image/``, ``video/``, ``audio/`` or archive content type): probe the first 256 KiB
   with zstd level 1. Under 5% saved -> ``identity``; otherwise zstd level 1 (never a high level:
   it costs CPU for nothing on entropy-coded data).
2. Small JSON (at most 64 KiB, JSON content type or a body starting with ``{``/``[``) and a
   dictionary configured -> zstd with that dictionary at :data:`SMALL_DICT_LEVEL`, no checksum
   (4 bytes are a large share of a 300-byte answer; HTTP has its own integrity).
3. Large payloads (at least 1 MiB: tar streams, source, indexes) -> zstd
   :data:`LARGE_LEVEL` with long-distance matching (128 MiB window).
4. Anything else -> zstd :data:`SMALL_LEVEL`.

When ZSTD_COMPRESSION is off, zstd choices become brotli (quality 5 for large payloads,
11 for small ones) if BROTLI_COMPRESSION is on, else gzip 9.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidTypeError
from . import _flags
from ._dictionary import Dictionary

SMALL_DICT_LEVEL = 19
LARGE_LEVEL = 9
SMALL_LEVEL = 19
LARGE_THRESHOLD = 1 << 20
SMALL_JSON_MAX = 64 * 1024
PROBE_SIZE = 256 * 1024
PROBE_MIN_SAVING = 0.05

_MAGICS = (
    b"PK\x03\x04",  # zip, wheel, jar
    b"PK\x05\x06",  # empty zip
    b"\x1f\x8b",  # gzip
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\xfd7zXZ\x00",  # xz
    b"BZh",  # bzip2
    b"7z\xbc\xaf\x27\x1c",  # 7z
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # jpeg
    b"GIF87a",
    b"GIF89a",
    b"\xce\xb2\xcf\x81",  # brotli has no magic; this is a placeholder never matched
)
_COMPRESSED_TYPES = {
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-xz",
    "application/x-bzip2",
    "application/x-7z-compressed",
    "application/x-wheel+zip",
    "application/java-archive",
    "font/woff2",
}


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_precompressed(data: bytes | memoryview, media: str) -> bool:
    """True for payloads that are already entropy coded (by media type or magic bytes)."""
    if media in _COMPRESSED_TYPES:
        return True
    if media.startswith(("image/", "video/", "audio/")) and media != "image/svg+xml":
        return True
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head.startswith(_MAGICS[:-1])


def is_json(data: bytes | memoryview, media: str) -> bool:
    if media:
        return media == "application/json" or media.endswith("+json")
    head = bytes(data[:64]).lstrip(b" \t\r\n")
    return head[:1] in (b"{", b"[")


def choose(
    data: Any, content_type: str | None, *, dictionary: Dictionary | None, flags: Any
) -> Any:
    from ._compressor import Compressor

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidTypeError(f"data must be bytes-like, not {type(data).__name__}")
    resolved = _flags.resolve(flags)
    zstd_ok = _flags.enabled("zstd", resolved)
    br_ok = _flags.enabled("br", resolved)
    media = _media_type(content_type)
    size = len(data)

    if is_precompressed(data, media):
        if not zstd_ok:
            return Compressor("identity", flags=resolved)
        probe = Compressor("zstd", 1, checksum=False, flags=resolved)
        sample = bytes(data[:PROBE_SIZE])
        if sample and len(probe.compress(sample)) <= len(sample) * (1 - PROBE_MIN_SAVING):
            return Compressor("zstd", 1, flags=resolved)
        return Compressor("identity", flags=resolved)

    large = size >= LARGE_THRESHOLD
    if not zstd_ok:
        if br_ok:
            return Compressor("br", 5 if large else 11, flags=resolved)
        return Compressor("gzip", 9, flags=resolved)
    if dictionary is not None and size <= SMALL_JSON_MAX and is_json(data, media):
        return Compressor(
            "zstd", SMALL_DICT_LEVEL, dictionary=dictionary, checksum=False, flags=resolved
        )
    if large:
        return Compressor("zstd", LARGE_LEVEL, long_distance=True, flags=resolved)
    return Compressor("zstd", SMALL_LEVEL, flags=resolved)
