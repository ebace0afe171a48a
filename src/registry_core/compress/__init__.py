"""Compression: zstd, brotli, gzip and identity behind one API, with HTTP negotiation,
trained dictionaries, RFC 9842 ``dcz`` and bounded decoders (see docs/compress.md).

Importing this package is cheap: zstandard and brotli load on first use.
"""

from __future__ import annotations

from ._codecs import CODINGS, DEFAULT_LEVELS, DEFAULT_MAX_OUTPUT_SIZE
from ._compressor import DEFAULT_PREFERENCE, Compressor
from ._dcz import DCZ_MAGIC, dcz_window_limit
from ._dictionary import Dictionary, train_dictionary
from ._negotiate import negotiate, parse_accept_encoding

__all__ = [
    "CODINGS",
    "DCZ_MAGIC",
    "DEFAULT_LEVELS",
    "DEFAULT_MAX_OUTPUT_SIZE",
    "DEFAULT_PREFERENCE",
    "Compressor",
    "Dictionary",
    "dcz_window_limit",
    "negotiate",
    "parse_accept_encoding",
    "train_dictionary",
]
