"""The codecs behind :class:`Compressor`: one-shot and streaming, every decoder bounded.

Each decoder is a generator over an input iterator that yields output in pieces of at most
about ``_OUT_CHUNK`` bytes and counts them against a limit, so a decompression bomb is refused
after at most ``limit + _OUT_CHUNK`` bytes were produced, never by allocating the whole output.
zstd additionally has its frame headers checked first: a frame that declares a content size
above the limit is refused before any decoding, and truncation is detected structurally (the
zstd library itself returns short output for a cut stream without complaint).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import CompressionError, DecompressionLimitError
from ._frames import ZstdFrameWalker

CODINGS = ("zstd", "br", "gzip", "identity")

#: Default levels: each library's own default, so a plain ``Compressor(coding)`` behaves like
#: the library it wraps. ``Compressor.auto`` picks measured levels per payload instead.
DEFAULT_LEVELS = {"zstd": 3, "br": 11, "gzip": 6, "identity": 0}
LEVEL_RANGES = {"zstd": (-7, 22), "br": (0, 11), "gzip": (0, 9), "identity": (0, 0)}

#: Default ``max_output_size`` of every decoder: 1 GiB. Registries cap uploads well below
#: this (PyPI: 100 MB by default), and one-shot output has to fit in memory anyway.
DEFAULT_MAX_OUTPUT_SIZE = 1 << 30

_IN_CHUNK = 1 << 16  # compressed bytes handed to a decoder per step
_OUT_CHUNK = 1 << 20  # decoded bytes produced per step (bounds the working memory)
ZSTD_MAX_WINDOW = 1 << 27  # 128 MiB: zstd's own default decoder limit; bounds decoder memory


def _limit_error(limit: int) -> DecompressionLimitError:
    return DecompressionLimitError(
        f"decompressed output exceeds max_output_size={limit} bytes; refusing it (a "
        "decompression bomb, or pass a larger max_output_size if the payload is legitimate)"
    )


def bounded(pieces: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    """Pass ``pieces`` through, raising DecompressionLimitError once they exceed ``limit``."""
    total = 0
    for piece in pieces:
        total += len(piece)
        if limit is not None and total > limit:
            raise _limit_error(limit)
        if piece:
            yield piece


def chunks_of(data: bytes | memoryview, size: int = _IN_CHUNK) -> Iterator[memoryview]:
    """Split a buffer into views of ``size`` bytes (no copies)."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), size):
        yield view[start : start + size]


class _IterReader:
    """A minimal file-like ``read(n)`` over an iterator of byte chunks (for zstd's reader)."""

    def __init__(self, chunks: Iterable[bytes | memoryview], watch: Callable[[Any], None]):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self._watch = watch

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks)).cast("B")
            except StopIteration:
                return b""
        if size < 0 or size >= len(self._pending):
            out, self._pending = self._pending, memoryview(b"")
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        self._watch(out)
        return bytes(out)


# -- zstd --------------------------------------------------------------------------------------


def zstd_error(exc: Exception) -> CompressionError:
    text = str(exc)
    if "ictionary" in text:
        return CompressionError(
            f"zstd stream needs another dictionary than the one given ({text}); decode it "
            "with the dictionary it was compressed with"
        )
    if "indow" in text or "too much memory" in text:
        return CompressionError(
            f"zstd frame asks for a window larger than this decoder allows ({text})"
        )
    return CompressionError(f"corrupt zstd stream: {text}")


def zstd_decode(
    chunks: Iterable[bytes | memoryview],
    limit: int | None,
    *,
    dict_data: Any = None,
    max_window_size: int = ZSTD_MAX_WINDOW,
) -> Iterator[bytes]:
    """Decode a zstd stream (one or more frames) from ``chunks``, bounded by ``limit``."""
    import zstandard

    walker = ZstdFrameWalker()

    def watch(piece: memoryview) -> None:
        walker.feed(piece)
        if limit is not None and walker.declared_size > limit:
            raise _limit_error(limit)

    reader: Any = _IterReader(chunks, watch)  # file-like: read(n) is all zstd asks of it
    try:
        dctx = zstandard.ZstdDecompressor(dict_data=dict_data, max_window_size=max_window_size)
        stream = dctx.stream_reader(reader, read_size=_IN_CHUNK, read_across_frames=True)
        yield from bounded(iter(lambda: stream.read(_OUT_CHUNK), b""), limit)
    except zstandard.ZstdError as exc:
        raise zstd_error(exc) from None
    walker.finish()


def zstd_decode_bytes(
    blob: bytes | memoryview,
    limit: int | None,
    *,
    dict_data: Any = None,
    max_window_size: int = ZSTD_MAX_WINDOW,
) -> bytes:
    """One-shot zstd decode; a single frame with a declared size is decoded in one call."""
    import zstandard

    walker = ZstdFrameWalker()
    walker.feed(blob)
    walker.finish()
    if limit is not None and walker.declared_size > limit:
        raise _limit_error(limit)
    # zstandard's one-shot decompress returns b"" for a frame declaring size 0 without decoding
    # it, so a corrupted size field would pass silently: such frames take the streaming path.
    if walker.frames == 1 and not walker.unknown_size and walker.declared_size > 0:
        try:
            dctx = zstandard.ZstdDecompressor(dict_data=dict_data, max_window_size=max_window_size)
            return dctx.decompress(blob)
        except zstandard.ZstdError as exc:
            raise zstd_error(exc) from None
    return b"".join(
        zstd_decode(chunks_of(blob), limit, dict_data=dict_data, max_window_size=max_window_size)
    )


# -- brotli ------------------------------------------------------------------------------------


def br_decode(chunks: Iterable[bytes | memoryview], limit: int | None) -> Iterator[bytes]:
    """Decode a brotli stream with the decoder's output-buffer limit (brotli >= 1.2)."""
    return bounded(_br_pieces(chunks), limit)


def _br_pieces(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    import brotli

    dec = brotli.Decompressor()
    if not hasattr(dec, "can_accept_more_data"):  # brotli < 1.2: no output limit to bound by
        raise CompressionError(
            "bounded brotli decoding needs the brotli package >= 1.2 (output_buffer_limit); "
            f"found {getattr(brotli, '__version__', 'an older version')}: upgrade it"
        )
    try:
        for chunk in chunks:
            if not chunk:
                continue
            if dec.is_finished():
                raise CompressionError("trailing data after the end of a brotli stream")
            out = dec.process(chunk, output_buffer_limit=_OUT_CHUNK)
            while True:
                yield out
                if dec.can_accept_more_data():
                    break
                out = dec.process(b"", output_buffer_limit=_OUT_CHUNK)
        # input exhausted: the decoder may still hold output it was not allowed to return
        while not dec.is_finished():
            out = dec.process(b"", output_buffer_limit=_OUT_CHUNK)
            if not out:
                break
            yield out
    except brotli.error as exc:
        raise CompressionError(f"corrupt brotli stream: {exc}") from None
    if not dec.is_finished():
        raise CompressionError(
            "truncated brotli stream: input ended before the end of the stream (the download "
            "was cut short or the body is corrupt)"
        )


# -- gzip (RFC 1952, members may be concatenated) ----------------------------------------------


def gzip_decode(chunks: Iterable[bytes | memoryview], limit: int | None) -> Iterator[bytes]:
    """Decode gzip members with ``max_length``-bounded inflate steps."""
    return bounded(_gzip_pieces(chunks), limit)


def _gzip_pieces(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    dec = zlib.decompressobj(31)
    started = False  # a member is open
    members = 0
    try:
        for chunk in chunks:
            data = bytes(chunk)
            while data:
                started = True
                out = dec.decompress(data, _OUT_CHUNK)
                data = dec.unconsumed_tail
                while True:
                    yield out
                    if data or len(out) < _OUT_CHUNK or dec.eof:
                        break
                    out = dec.decompress(b"", _OUT_CHUNK)  # output still pending inside zlib
                if dec.eof:
                    data = dec.unused_data
                    started = False
                    members += 1
                    dec = zlib.decompressobj(31)
    except zlib.error as exc:
        raise CompressionError(f"corrupt gzip stream: {exc}") from None
    if started or members == 0:
        raise CompressionError(
            "truncated gzip stream: input ended inside a gzip member (the download was cut "
            "short or the body is corrupt)"
        )


# -- identity ----------------------------------------------------------------------------------


def identity_decode(chunks: Iterable[bytes | memoryview], limit: int | None) -> Iterator[bytes]:
    return bounded((bytes(chunk) for chunk in chunks), limit)
