"""RFC 9842 ``dcz`` bodies: a 40-byte header, then zstd compressed with a raw dictionary.

Header: the 8 bytes ``5E 2A 4D 18 20 00 00 00`` (a zstd skippable frame of 32 bytes, so a
plain zstd decoder skips it) followed by the 32-byte SHA-256 of the dictionary. The zstd frame
uses the dictionary as raw content. RFC 9842 bounds the window: at most the larger of 8 MiB and
1.25 times the dictionary size, and never above 128 MiB; the encoder picks the largest power of
two inside that bound (so a previous version of a large file stays reachable as a reference)
and the decoder refuses frames above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..errors import CompressionError
from ._codecs import chunks_of, zstd_decode
from ._dictionary import Dictionary

DCZ_MAGIC = bytes((0x5E, 0x2A, 0x4D, 0x18, 0x20, 0x00, 0x00, 0x00))
DCZ_HEADER_SIZE = 40
_MIB = 1 << 20


def dcz_window_limit(dictionary_size: int) -> int:
    """Largest Window_Size RFC 9842 allows for ``dcz`` with a dictionary of this size."""
    return min(128 * _MIB, max(8 * _MIB, dictionary_size * 5 // 4))


def dcz_window_log(dictionary_size: int) -> int:
    """The encoder's window log: largest power of two within :func:`dcz_window_limit`."""
    return dcz_window_limit(dictionary_size).bit_length() - 1


def dcz_header(dictionary: Dictionary) -> bytes:
    return DCZ_MAGIC + dictionary.sha256


def check_dcz_header(header: bytes, dictionary: Dictionary) -> None:
    """Raise CompressionError unless ``header`` is a dcz header naming ``dictionary``."""
    if len(header) < DCZ_HEADER_SIZE:
        raise CompressionError(f"truncated dcz body: {len(header)} bytes, the header alone is 40")
    if header[:8] != DCZ_MAGIC:
        raise CompressionError("not a dcz body: the 8-byte dcz magic is missing")
    if header[8:40] != dictionary.sha256:
        raise CompressionError(
            f"dcz body was compressed with dictionary {header[8:40].hex()}, not with "
            f"{dictionary.id}; fetch the body again without Available-Dictionary or with "
            "the right dictionary"
        )


def dcz_decode(
    chunks: Iterable[bytes | memoryview], dictionary: Dictionary, limit: int | None
) -> Iterator[bytes]:
    """Decode a dcz stream arriving in ``chunks``."""
    it = iter(chunks)
    head = bytearray()
    rest = b""
    for chunk in it:
        head += chunk
        if len(head) >= DCZ_HEADER_SIZE:
            rest = bytes(head[DCZ_HEADER_SIZE:])
            del head[DCZ_HEADER_SIZE:]
            break
    check_dcz_header(bytes(head), dictionary)

    def body() -> Iterator[bytes | memoryview]:
        if rest:
            yield rest
        yield from it

    yield from zstd_decode(
        body(),
        limit,
        dict_data=dictionary.zstd(raw=True),
        max_window_size=dcz_window_limit(len(dictionary)),
    )


def dcz_decode_bytes(blob: bytes | memoryview, dictionary: Dictionary, limit: int | None) -> bytes:
    return b"".join(dcz_decode(chunks_of(blob), dictionary, limit))
