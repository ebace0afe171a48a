"""The :class:`Compressor`: one object per (coding, level, dictionary), safe to share."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from .._util import byte_view
from ..errors import CompressionError, InvalidArgumentError, InvalidTypeError
from . import _codecs, _dcz, _flags
from ._codecs import DEFAULT_LEVELS, DEFAULT_MAX_OUTPUT_SIZE, LEVEL_RANGES
from ._dictionary import Dictionary, train_dictionary

_ALIASES = {"x-gzip": "gzip", "brotli": "br", "zstandard": "zstd", "none": "identity"}
_ALL = ("zstd", "br", "gzip", "identity", "dcz")
#: Server preference used by :meth:`Compressor.negotiate` when the caller gives none.
DEFAULT_PREFERENCE = ("zstd", "br", "gzip")
_READ_SIZE = 1 << 20
_BIG_DICT = 1 << 20  # raw dictionaries above this get match tables sized to cover them
_MAX_MATCH_LOG = 26  # 2^26 entries: at most 256 MiB per table

if TYPE_CHECKING:  # pragma: no cover
    from ..flags import FeatureFlags


def _check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(f"max_output_size must be an int >= 0 or None, got {limit!r}")
    return limit


def _pump(
    src: BinaryIO,
    dst: BinaryIO,
    transform: Callable[[Iterator[bytes]], Iterable[bytes]],
    read_size: int,
) -> tuple[int, int]:
    """Read ``src`` in ``read_size`` pieces through ``transform`` into ``dst``; (read, written)."""
    counts = [0, 0]

    def reads() -> Iterator[bytes]:
        while chunk := src.read(read_size):
            counts[0] += len(chunk)
            yield chunk

    for piece in transform(reads()):
        dst.write(piece)
        counts[1] += len(piece)
    return counts[0], counts[1]


class Compressor:
    """Compress and decompress with one HTTP content coding.

    ``coding`` is the HTTP token: ``"zstd"``, ``"br"``, ``"gzip"``, ``"identity"`` or
    ``"dcz"`` (RFC 9842: zstd with a raw dictionary, ``dictionary`` required). ``level`` defaults
    to :data:`DEFAULT_LEVELS` (each library's default). ``long_distance`` turns on zstd
    long-distance matching with a ``window_log`` (default 27, 128 MiB) window; leave it off for
    HTTP ``Content-Encoding: zstd`` to browsers, which RFC 9659 limits to an 8 MiB window.
    ``checksum`` adds zstd's 4-byte content checksum. Instances are immutable and thread-safe:
    zstd contexts (not thread-safe in the library) are kept per thread.
    """

    __slots__ = (
        "_cdict",
        "_checksum",
        "_coding",
        "_ddict",
        "_dictionary",
        "_level",
        "_local",
        "_long_distance",
        "_window_log",
    )

    def __init__(
        self,
        coding: str = "zstd",
        level: int | None = None,
        *,
        dictionary: Dictionary | None = None,
        long_distance: bool = False,
        window_log: int | None = None,
        checksum: bool = True,
        flags: FeatureFlags | None = None,
    ) -> None:
        name = _coding_name(coding)
        _flags.require(name, _flags.allowed_codings(flags))  # flags read once, here
        self._setup(name, level, dictionary, long_distance, window_log, checksum)

    @classmethod
    def _ungated(cls, coding: str, level: int | None = None, **options: Any) -> Compressor:
        """A Compressor for a coding the caller already checked against its flags snapshot."""
        self = cls.__new__(cls)
        self._setup(
            _coding_name(coding),
            level,
            options.get("dictionary"),
            options.get("long_distance", False),
            options.get("window_log"),
            options.get("checksum", True),
        )
        return self

    def _setup(
        self,
        name: str,
        level: int | None,
        dictionary: Dictionary | None,
        long_distance: bool,
        window_log: int | None,
        checksum: bool,
    ) -> None:
        base = "zstd" if name == "dcz" else name
        if level is None:
            level = DEFAULT_LEVELS[base]
        if isinstance(level, bool) or not isinstance(level, int):
            raise InvalidTypeError(f"level must be an int, not {type(level).__name__}")
        lo, hi = LEVEL_RANGES[base]
        if not lo <= level <= hi:
            raise InvalidArgumentError(f"{name} level must be in [{lo}, {hi}], got {level}")
        if dictionary is not None and not isinstance(dictionary, Dictionary):
            raise InvalidTypeError(
                "dictionary must be a registry_core.compress.Dictionary (use "
                "Dictionary.from_bytes to load one)"
            )
        if name == "dcz" and dictionary is None:
            raise InvalidArgumentError("the dcz coding needs a dictionary (RFC 9842)")
        if dictionary is not None and name not in ("zstd", "dcz"):
            raise InvalidArgumentError(
                f"dictionaries work with zstd and dcz only, not {name!r} (the brotli binding "
                "exposes no shared-dictionary API; see docs/compress.md)"
            )
        if (long_distance or window_log is not None) and base != "zstd":
            raise InvalidArgumentError("long_distance and window_log apply to zstd only")
        if window_log is not None and not 10 <= window_log <= 31:
            raise InvalidArgumentError(f"window_log must be in [10, 31], got {window_log}")
        if long_distance and window_log is None:
            window_log = 27
        if name == "dcz":
            limit_log = _dcz.dcz_window_log(len(dictionary))  # type: ignore[arg-type]
            window_log = limit_log if window_log is None else min(window_log, limit_log)
        self._coding = name
        self._level = level
        self._dictionary = dictionary
        self._long_distance = bool(long_distance)
        self._window_log = window_log
        self._checksum = bool(checksum)
        self._local = threading.local()
        self._cdict: Any = None
        self._ddict: Any = None
        if dictionary is not None:  # digest once, shared read-only by all threads
            raw = name == "dcz"
            # a precomputed dictionary carries the level's (small) match tables; a large raw
            # dictionary is digested per context with tables sized to it instead
            big = len(dictionary) > _BIG_DICT
            self._cdict = dictionary.zstd(raw=raw, level=None if big else level)
            self._ddict = dictionary.zstd(raw=raw)

    @property
    def coding(self) -> str:
        """The HTTP content-coding token: ``zstd``, ``br``, ``gzip``, ``identity`` or ``dcz``."""
        return self._coding

    @property
    def level(self) -> int:
        return self._level

    @property
    def dictionary(self) -> Dictionary | None:
        return self._dictionary

    def __repr__(self) -> str:
        extra = f", dictionary={self.dictionary.id[:16]}..." if self.dictionary else ""
        if self._long_distance:
            extra += f", long_distance=True, window_log={self._window_log}"
        return f"Compressor({self.coding!r}, level={self.level}{extra})"

    # -- zstd contexts ---------------------------------------------------------------------

    def _zstd_params(self) -> dict[str, Any]:
        import zstandard

        kwargs: dict[str, Any] = {"dict_data": self._cdict}
        if self._window_log is not None:
            extra: dict[str, int] = {}
            if self.dictionary is not None and len(self.dictionary) > _BIG_DICT:
                # zstd indexes only the tail of a raw dictionary that its hash and chain
                # tables cannot cover; a previous version of a large artifact must be indexed
                # whole, so grow both tables to the dictionary's size (capped: memory).
                base = zstandard.ZstdCompressionParameters.from_level(self.level)
                need = min(_MAX_MATCH_LOG, (len(self.dictionary) - 1).bit_length())
                extra = {
                    "hash_log": max(base.hash_log, need),
                    "chain_log": max(base.chain_log, need),
                }
            kwargs["compression_params"] = zstandard.ZstdCompressionParameters.from_level(
                self.level,
                window_log=self._window_log,
                enable_ldm=int(self._long_distance),
                write_checksum=int(self._checksum),
                write_dict_id=int(self.coding == "zstd"),
                **extra,
            )
        else:
            kwargs["level"] = self.level
            kwargs["write_checksum"] = self._checksum
        return kwargs

    def _cctx(self) -> Any:
        """This thread's zstd compression context (created on first use)."""
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            import zstandard

            cctx = zstandard.ZstdCompressor(**self._zstd_params())
            self._local.cctx = cctx
        return cctx

    def _max_window(self) -> int:
        if self.coding == "dcz":
            return _dcz.dcz_window_limit(len(self.dictionary))  # type: ignore[arg-type]
        return _codecs.ZSTD_MAX_WINDOW

    # -- one-shot --------------------------------------------------------------------------

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """Compress ``data`` into one complete body of this coding."""
        data = byte_view(data)
        coding = self.coding
        if coding == "zstd":
            return self._cctx().compress(data)
        if coding == "dcz":
            return _dcz.dcz_header(self.dictionary) + self._cctx().compress(data)  # type: ignore[arg-type]
        if coding == "br":
            import brotli

            return brotli.compress(bytes(data), quality=self.level)
        if coding == "gzip":
            cobj = zlib.compressobj(self.level, zlib.DEFLATED, 31)
            return cobj.compress(data) + cobj.flush()
        return bytes(data)

    def decompress(
        self,
        blob: bytes | bytearray | memoryview,
        max_output_size: int | None = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> bytes:
        """Decode one complete body; refuses output above ``max_output_size`` (None: no limit).

        Raises DecompressionLimitError for too much output, CompressionError for truncated or
        corrupt input or a wrong dictionary.
        """
        blob = byte_view(blob, "blob")
        limit = _check_limit(max_output_size)
        coding = self.coding
        if coding == "zstd":
            return _codecs.zstd_decode_bytes(blob, limit, dict_data=self._ddict)
        if coding == "dcz":
            return _dcz.dcz_decode_bytes(blob, self.dictionary, limit)  # type: ignore[arg-type]
        if coding == "identity":
            if limit is not None and len(blob) > limit:
                raise _codecs._limit_error(limit)
            return bytes(blob)
        return b"".join(self._decode(_codecs.chunks_of(blob), limit))

    # -- streaming -------------------------------------------------------------------------

    def _decode(self, chunks: Iterable[bytes | memoryview], limit: int | None) -> Iterator[bytes]:
        coding = self.coding
        if coding == "zstd":
            return _codecs.zstd_decode(chunks, limit, dict_data=self._ddict)
        if coding == "dcz":
            return _dcz.dcz_decode(chunks, self.dictionary, limit)  # type: ignore[arg-type]
        if coding == "br":
            return _codecs.br_decode(chunks, limit)
        if coding == "gzip":
            return _codecs.gzip_decode(chunks, limit)
        return _codecs.identity_decode(chunks, limit)

    def compress_iter(self, chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[bytes]:
        """Compress a stream given as byte chunks; yields the body in pieces."""
        coding = self.coding
        process: Callable[..., bytes]
        finish: Callable[..., bytes]
        if coding in ("zstd", "dcz"):
            import zstandard

            if coding == "dcz":
                yield _dcz.dcz_header(self.dictionary)  # type: ignore[arg-type]
            cobj = zstandard.ZstdCompressor(**self._zstd_params()).compressobj()
            process, finish = cobj.compress, cobj.flush
        elif coding == "br":
            import brotli

            bobj = brotli.Compressor(quality=self.level)
            process, finish = bobj.process, bobj.finish
        elif coding == "gzip":
            zobj = zlib.compressobj(self.level, zlib.DEFLATED, 31)
            process, finish = zobj.compress, zobj.flush
        else:
            process, finish = bytes, bytes
        for chunk in chunks:
            out = process(byte_view(chunk, "chunk"))
            if out:
                yield out
        out = finish()
        if out:
            yield out

    def decompress_iter(
        self,
        chunks: Iterable[bytes | bytearray | memoryview],
        max_output_size: int | None = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> Iterator[bytes]:
        """Decode a body given as chunks; yields output pieces of at most about 1 MiB.

        The limit is checked as output is produced: pieces yielded before a
        DecompressionLimitError were already handed out, so write them somewhere disposable.
        """
        limit = _check_limit(max_output_size)

        def checked() -> Iterator[bytes | bytearray | memoryview]:
            for chunk in chunks:
                yield byte_view(chunk, "chunk")

        return self._decode(checked(), limit)

    def compress_stream(
        self, src: BinaryIO, dst: BinaryIO, *, read_size: int = _READ_SIZE
    ) -> tuple[int, int]:
        """Compress file ``src`` into file ``dst``; returns (bytes read, bytes written)."""
        return _pump(src, dst, self.compress_iter, read_size)

    def decompress_stream(
        self,
        src: BinaryIO,
        dst: BinaryIO,
        *,
        max_output_size: int | None = DEFAULT_MAX_OUTPUT_SIZE,
        read_size: int = 1 << 16,
    ) -> tuple[int, int]:
        """Decode file ``src`` into file ``dst`` with bounded memory; (read, written).

        On an error, ``dst`` holds a partial output: discard it.
        """
        return _pump(
            src, dst, lambda chunks: self.decompress_iter(chunks, max_output_size), read_size
        )

    # -- class-level helpers ---------------------------------------------------------------

    @staticmethod
    def negotiate(
        accept_encoding: str | bytes | None,
        available: Sequence[str] = DEFAULT_PREFERENCE,
        *,
        strict: bool = False,
        flags: FeatureFlags | None = None,
    ) -> str:
        """The content coding to answer ``Accept-Encoding`` with (RFC 9110 section 12.5.3).

        ``available`` is the server's preference order; codings turned off by feature flags
        are removed from it. Never raises on malformed headers (see docs/compress.md).
        """
        from ._negotiate import negotiate

        allowed = _flags.allowed_codings(flags)
        offer = [c for c in available if _flags.enabled(c, allowed)]
        return negotiate(accept_encoding, offer, strict=strict)

    @staticmethod
    def train_dictionary(
        samples: Iterable[bytes], size: int = 16384, *, level: int = 3
    ) -> Dictionary:
        """Train a zstd dictionary on ``samples``; its ``.id`` is the SHA-256 of its bytes."""
        return train_dictionary(samples, size, level=level)

    @staticmethod
    def auto(
        data: bytes | bytearray | memoryview,
        content_type: str | None = None,
        *,
        dictionary: Dictionary | None = None,
        flags: FeatureFlags | None = None,
    ) -> Compressor:
        """A Compressor with codec and level chosen for ``data`` (rule: docs/compress.md)."""
        from ._auto import choose

        return choose(data, content_type, dictionary=dictionary, flags=flags)


def _coding_name(coding: Any) -> str:
    if not isinstance(coding, str):
        raise InvalidTypeError(f"coding must be a str, not {type(coding).__name__}")
    name = coding.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in _ALL:
        raise InvalidArgumentError(f"unknown content coding {coding!r}; use one of {list(_ALL)}")
    return name


def coding_token(name: str) -> str:
    """Normalise a coding name to its HTTP token (``x-gzip`` -> ``gzip``)."""
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in _ALL:
        raise CompressionError(f"unknown content coding {name!r}")
    return name
