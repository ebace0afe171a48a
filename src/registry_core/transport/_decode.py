"""Content-coding decoding with an output bound, through the Compressor's bounded decoders."""

from __future__ import annotations

from typing import Any

from ..errors import CompressionError

__all__ = ["accept_encoding", "decode_body"]


def accept_encoding(flags: Any, *, dcz: bool = False) -> str:
    """The ``Accept-Encoding`` the client sends: codings the flags allow, best first."""
    from ..flags import flag_enabled

    zstd = flag_enabled(flags, "ZSTD_COMPRESSION")
    codings = (["dcz"] if dcz and zstd else []) + (["zstd"] if zstd else [])
    codings += (["br"] if flag_enabled(flags, "BROTLI_COMPRESSION") else []) + ["gzip"]
    return ", ".join(codings)


def decode_body(coding: str, data: bytes, limit: int, *, dictionary: bytes | None = None,
                flags: Any = None) -> bytes:
    """Undo ``Content-Encoding``; DecompressionLimitError past ``limit`` bytes of output."""
    from ..compress import Compressor, Dictionary

    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return data
    if "," in coding:
        raise CompressionError(f"stacked content codings {coding!r} are not supported")
    if coding == "dcz":
        if dictionary is None:
            raise CompressionError("server answered with dcz but no dictionary was offered")
        return Compressor("dcz", dictionary=Dictionary(dictionary), flags=flags).decompress(
            data, max_output_size=limit)
    return Compressor(coding, flags=flags).decompress(data, max_output_size=limit)
