"""``Compressor.auto``: pick a codec and level from what the payload is.

The rule, with the measurements behind it (``python benchmarks/bench_compress.py``; figures in
docs/compress.md, sizes relative to gzip -9):

1. Already compressed (zip/wheel, gzip, zstd, xz, bzip2, 7z, PNG/JPEG/GIF/WebP by magic bytes,
   or an ``image/``, ``video/``, ``audio/`` or archive content type): probe the first 256 KiB
   with zstd level 1; under 5% saved -> ``identity``, else zstd level 1, never a high level.
   Published wheels and sdists: zstd 19 saves 1.5% at 5 MB/s, zstd 3 0.3%.
2. Small JSON (at most 64 KiB, JSON content type or a body starting with ``{``/``[``) with a
   dictionary configured -> zstd :data:`SMALL_DICT_LEVEL` (6) with the dictionary and no
   checksum: 39.7% smaller on metadata of projects the dictionary never saw (56.1% on new
   releases of known projects) at 15-25 us per document; level 19 adds 3 points for 15x the CPU,
   level 3 loses 6 points.
3. Other small payloads (at most 64 KiB) -> brotli 5: zstd at any level was 1-6% *larger*
   than gzip -9 on ~1 KiB JSON documents, brotli 5 8% smaller at ~50 us (brotli 11: 18%, 2 ms).
4. Larger payloads -> zstd :data:`LARGE_LEVEL` (9), with long-distance matching (128 MiB
   window) from 1 MiB on: 12% smaller than gzip -9 on a 46 MB source tar at 50-70 MB/s and
   ~800 MB/s decoding, and 68% smaller on a stream of consecutive sdist releases (zstd 19 +
   LDM: 21% at 2.4 MB/s, and 70% at 8 MB/s).

When ZSTD_COMPRESSION is off, zstd choices become brotli 5 if BROTLI_COMPRESSION is on, else
gzip 9; with brotli off, rule 3 uses zstd 19. The long-distance window exceeds the 8 MiB that
RFC 9659 sets for ``Content-Encoding: zstd`` to general HTTP clients: it suits stored
artifacts and registry-core clients (which decode up to 128 MiB); for browsers use
``Compressor("zstd", 9)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._util import byte_view
from . import _flags
from ._dictionary import Dictionary

if TYPE_CHECKING:  # pragma: no cover
    from ..flags import FeatureFlags
    from ._compressor import Compressor

SMALL_DICT_LEVEL = 6
LARGE_LEVEL = 9
SMALL_BR_LEVEL = 5
LDM_THRESHOLD = 1 << 20
SMALL_MAX = 64 * 1024
SMALL_JSON_MAX = SMALL_MAX
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
    data: Any,
    content_type: str | None,
    *,
    dictionary: Dictionary | None,
    flags: FeatureFlags | None,
) -> Compressor:
    from ._compressor import Compressor

    data = byte_view(data)
    allowed = _flags.allowed_codings(flags)  # one snapshot for the decision and the result
    zstd_ok = _flags.enabled("zstd", allowed)
    br_ok = _flags.enabled("br", allowed)
    make = Compressor._ungated
    media = _media_type(content_type)
    size = len(data)

    if is_precompressed(data, media):
        if not zstd_ok:
            return make("identity")
        probe = make("zstd", 1, checksum=False)
        sample = bytes(data[:PROBE_SIZE])
        if sample and len(probe.compress(sample)) <= len(sample) * (1 - PROBE_MIN_SAVING):
            return make("zstd", 1)
        return make("identity")

    small = size <= SMALL_MAX
    if not zstd_ok:
        if br_ok:
            return make("br", SMALL_BR_LEVEL)
        return make("gzip", 9)
    if dictionary is not None and small and is_json(data, media):
        return make("zstd", SMALL_DICT_LEVEL, dictionary=dictionary, checksum=False)
    if small:
        if br_ok:
            return make("br", SMALL_BR_LEVEL)
        return make("zstd", 19)
    return make("zstd", LARGE_LEVEL, long_distance=size >= LDM_THRESHOLD)
