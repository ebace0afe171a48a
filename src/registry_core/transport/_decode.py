"""Content-coding decoding with an output bound, through the Compressor's bounded decoders.

Plain options only: which codings the client offers is decided once, when the Transport is
built (the ZSTD_COMPRESSION / BROTLI_COMPRESSION flags resolved there), and a response in a
coding the client did not offer is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CompressionError

__all__ = ["Codings", "accept_encoding", "decode_body"]


@dataclass
class Codings:
    """The content codings a client offers (gzip and identity always)."""

    zstd: bool = True
    brotli: bool = True
    flags: Any = field(default=None, repr=False)  # the resolved FeatureFlags, for Compressor
    _decoders: dict[str, Any] = field(default_factory=dict, repr=False)

    def allowed(self, coding: str) -> bool:
        if coding in ("zstd", "dcz"):
            return self.zstd
        if coding == "br":
            return self.brotli
        return coding in ("gzip", "x-gzip", "identity")

    def decoder(self, coding: str) -> Any:
        """One Compressor per coding for the life of the Transport."""
        dec = self._decoders.get(coding)
        if dec is None:
            from ..compress import Compressor

            dec = self._decoders[coding] = Compressor(coding, flags=self.flags)
        return dec


def accept_encoding(codings: Codings, *, dcz: bool = False) -> str:
    """The ``Accept-Encoding`` the client sends: codings it offers, best first."""
    offered = (["dcz"] if dcz and codings.zstd else []) + (["zstd"] if codings.zstd else [])
    offered += (["br"] if codings.brotli else []) + ["gzip"]
    return ", ".join(offered)


def decode_body(
    coding: str, data: bytes, limit: int, codings: Codings, *, dictionary: Any = None
) -> bytes:
    """Undo ``Content-Encoding``; DecompressionLimitError past ``limit`` bytes of output.

    ``dictionary``: the ``compress.Dictionary`` offered with ``Available-Dictionary`` (needed
    for ``dcz``).
    """
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return data
    if "," in coding:
        raise CompressionError(f"stacked content codings {coding!r} are not supported")
    if not codings.allowed(coding):
        raise CompressionError(
            f"the server answered in {coding!r}, which this client did not " "offer"
        )
    if coding == "dcz":
        if dictionary is None:
            raise CompressionError("server answered with dcz but no dictionary was offered")
        from ..compress import Compressor

        return Compressor("dcz", dictionary=dictionary, flags=codings.flags).decompress(
            data, max_output_size=limit
        )
    return codings.decoder(coding).decompress(data, max_output_size=limit)
