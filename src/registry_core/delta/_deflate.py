"""Raw deflate streams: bounded inflation, and detection of the zlib parameters that reproduce one.

A compressed member can only be stored in a delta as its inflated content if the exact
compressed bytes can be produced again. zlib is deterministic for a given (level, window bits,
memLevel, strategy) and a given way of feeding it input, so :class:`DeflateDetector` searches
those parameters, cheapest and most likely first, comparing the output with the original as
it is produced and giving up on a guess at its first differing byte.

Every stream is compressed by :func:`deflate` - the one function detection and rebuild share -
which feeds zlib :data:`FEED_CHUNK` bytes at a time (level 0: all input in one call), then
``Z_FINISH``. This feeding rule is part of the layout format.
"""

from __future__ import annotations

import sys
import threading
import time
import zlib
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError

__all__ = [
    "FEED_CHUNK",
    "LARGE_STREAM",
    "MINIZ",
    "RECON",
    "UNUSED_PARAMS",
    "ZLIB",
    "Budget",
    "DeflateDetector",
    "DeflateParams",
    "DetectorStats",
    "Piece",
    "StreamPolicy",
    "deflate",
    "engine_reproduces",
    "inflate_raw",
]

#: Input bytes handed to zlib per ``compress()`` call (levels 1-9). Part of the layout format:
#: changing it could change how level-0 streams split into stored blocks.
FEED_CHUNK = 16384

_INFLATE_CHUNK = 65536
_ONE_SHOT = 1  # level 0 only: the strategy field says "fed in one zlib.compress call"

Buffer = bytes | bytearray | memoryview


#: Deflate engines a stream can be reproduced with. ZLIB: CPython's zlib. MINIZ: the
#: miniz_oxide compressor (Rust, through ``cramjam``), which Rust build tools use: maturin wheels
#: (zip crate / flate2 defaults), cargo-built archives. RECON: any stream, rebuilt by the C core
#: from its content and a correction record (``_reconstruct``; layout version 2).
ZLIB, MINIZ, RECON = 0, 1, 2

#: A reconstructed stream is kept only when its correction record is at most this share of the
#: compressed stream (larger records cost more than diffing the compressed bytes saves).
RECON_MAX_RECORD_SHARE = 0.5
#: Streams whose content is larger than this are not reconstructed (time and memory bound:
#: the model holds 4 bytes per content byte).
RECON_MAX_CONTENT = 256 << 20


@dataclass(frozen=True)
class DeflateParams:
    """Everything needed to reproduce a raw deflate stream.

    ``wbits`` is the positive window size (8..15) of a raw stream (passed to zlib negated).
    ``engine`` is :data:`ZLIB`, :data:`MINIZ` or :data:`RECON`; miniz streams use only
    ``level`` (1..9, with wbits 15, memLevel 8, strategy 0 recorded); reconstructed streams
    carry their correction ``record`` (non-empty) and record level 0, wbits 15, memLevel 8,
    strategy 0.
    """

    level: int
    wbits: int
    mem_level: int
    strategy: int
    engine: int = ZLIB
    record: bytes = b""

    def __post_init__(self) -> None:
        if (
            not (
                0 <= self.level <= 9
                and 8 <= self.wbits <= 15
                and 1 <= self.mem_level <= 9
                and 0 <= self.strategy <= 4
                and self.engine in (ZLIB, MINIZ, RECON)
                and isinstance(self.record, bytes)
            )
            or (
                self.engine == MINIZ
                and (self.level == 0 or (self.wbits, self.mem_level, self.strategy) != (15, 8, 0))
            )
            or (self.engine != RECON and bool(self.record))
            or (
                self.engine == RECON
                and not (
                    self.record
                    and (self.level, self.wbits, self.mem_level, self.strategy) == (0, 15, 8, 0)
                )
            )
        ):
            raise InvalidArgumentError(
                f"invalid deflate parameters {self!r}: need level 0..9, wbits 8..15, "
                "mem_level 1..9, strategy 0..4, engine 0 (zlib), 1 (miniz: level 1..9 only) or "
                "2 (reconstructed: a non-empty record, level 0 / wbits 15 / memLevel 8 / "
                "strategy 0), and a record only with engine 2"
            )

    def __repr__(self) -> str:  # a record can be large: show its size only
        extra = f", record=<{len(self.record)} bytes>" if self.record else ""
        return (
            f"DeflateParams(level={self.level}, wbits={self.wbits}, mem_level={self.mem_level}, "
            f"strategy={self.strategy}, engine={self.engine}{extra})"
        )

    def compressobj(self) -> zlib._Compress:
        """A fresh zlib compressor producing a raw deflate stream with these parameters."""
        return zlib.compressobj(
            self.level, zlib.DEFLATED, -self.wbits, self.mem_level, self.strategy
        )


def deflate(content: Buffer, params: DeflateParams, *, clen: int | None = None) -> Iterator[bytes]:
    """Yield the raw deflate stream of ``content`` in pieces (the format's feeding rule).

    Levels 1-9: ``compress()`` per :data:`FEED_CHUNK` bytes, then ``flush()``. Level 0 (stored
    blocks, whose split depends on how input arrives): strategy 0 means one ``compress()`` of
    everything then ``flush()`` (zipfile's ``writestr``); strategy 1 - meaningless for stored
    blocks otherwise - means one-shot ``zlib.compress`` (``gzip.compress``), memLevel 8 only,
    Python 3.11+ (older ``zlib.compress`` takes no wbits). Level-0 output depends on how CPython
    grows zlib's output buffer: 3.10-3.13 agree, 3.9 differs (measured).
    Raises ``zlib.error`` / ``ValueError`` if zlib refuses the parameters (e.g. wbits 8).
    Reconstructed streams (:data:`RECON`) need their length ``clen`` and raise
    CorruptPatchError when the record does not rebuild a stream of that length.
    """
    view = memoryview(content)
    if params.engine == RECON:
        if clen is None:
            raise ValueError("a reconstructed stream needs its length (clen)")
        from ._reconstruct import rebuild_stream

        yield rebuild_stream(view, params.record, clen)
        return
    if params.engine == MINIZ:
        import cramjam  # a declared dependency; imported here to keep imports cheap

        yield bytes(cramjam.deflate.compress(bytes(view), level=params.level))
        return
    if params.level == 0 and params.strategy == _ONE_SHOT:
        if params.mem_level != 8 or sys.version_info < (3, 11):
            raise ValueError("one-shot level-0 streams need memLevel 8 and Python 3.11+")
        yield zlib.compress(view, 0, -params.wbits)  # type: ignore[call-arg,unused-ignore]
        return
    comp = params.compressobj()
    if params.level == 0:
        yield comp.compress(view)
    else:
        for i in range(0, len(view), FEED_CHUNK):
            out = comp.compress(view[i : i + FEED_CHUNK])
            if out:
                yield out
    yield comp.flush()


# -- is this platform's engine the reference one? ----------------------------------------------

# SHA-256 of deflate() of _reference_sample() with stock zlib (1.2.x / 1.3.x; measured with
# 1.2.13) and with miniz_oxide through cramjam 2.x. A platform whose engine gives other bytes
# (zlib-ng in compatibility mode, as some distributions ship it) cannot rebuild recompressed
# members; apply says so up front instead of failing the final digest check.
_REFERENCE = {
    (ZLIB, 1): "b8c335566e6ff1bf9c47d7d89786f895ed29d83cf4f0707e551db1e799148172",
    (ZLIB, 6): "25127d4c5a3e865e13d9642fa52ff04a30ff240d42aafa2732b17901c11a26a9",
    (ZLIB, 9): "faad92c54bf26ca5e003af046ee5c87835e78a3cf7c80b1197d46012f0103d42",
    (MINIZ, 6): "5050d0d08361a3bb91e05dc58e1abc85337ad040d45e3fe6772828a61a2a409a",
}
_engine_ok: dict[int, bool] = {}


def _reference_sample() -> bytes:
    """256 KiB of deterministic text-like bytes (an LCG choosing words)."""
    words = [
        b"registry",
        b"package",
        b"wheel",
        b"delta",
        b"version",
        b"import",
        b"def",
        b"return",
        b"self",
        b"None",
        b"True",
        b"data",
        b"bytes",
        b"{",
        b"}",
        b"(",
        b")",
        b":",
        b"\n",
        b"    ",
    ]
    out = bytearray()
    x = 12345
    while len(out) < 256 * 1024:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out += words[x % len(words)] + (b" " if x & 0x100 else b"")
    return bytes(out[: 256 * 1024])


def engine_reproduces(engine: int) -> bool:
    """Whether this platform's ``engine`` gives the reference output (checked once, ~10 ms).
    :data:`RECON` is the C core itself: always."""
    if engine == RECON:
        return True
    ok = _engine_ok.get(engine)
    if ok is None:
        import hashlib

        sample = _reference_sample()
        ok = all(
            hashlib.sha256(b"".join(deflate(sample, DeflateParams(lv, 15, 8, 0, eng)))).hexdigest()
            == digest
            for (eng, lv), digest in _REFERENCE.items()
            if eng == engine
        )
        _engine_ok[engine] = ok
    return ok


class Budget:
    """How many more inflated bytes an expansion may hold (the zip-bomb bound)."""

    __slots__ = ("remaining",)

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining


def inflate_raw(
    data: Buffer, budget: Budget, *, need_end: bool = False
) -> tuple[bytes, int] | None:
    """Inflate the raw deflate stream at the start of ``data``.

    Returns ``(content, consumed)`` when the stream ends inside ``data`` and its content fits
    in ``budget`` (which is charged for it), else ``None``. With ``need_end`` the stream must
    also end exactly at the end of ``data``. Input is fed in 64 KiB pieces so trailing bytes
    are never copied whole.
    """
    view = memoryview(data)
    d = zlib.decompressobj(-15)
    out: list[bytes] = []
    size = 0
    pos = 0
    n = len(view)
    try:
        while not d.eof:
            if d.unconsumed_tail:
                piece: Buffer = d.unconsumed_tail
            elif pos < n:
                piece = view[pos : pos + _INFLATE_CHUNK]
                pos += len(piece)
            else:
                return None  # truncated stream
            limit = budget.remaining - size
            if limit <= 0:
                return None
            chunk = d.decompress(piece, limit + 1 if limit < (1 << 62) else 0)
            size += len(chunk)
            if size > budget.remaining:
                return None
            out.append(chunk)
    except zlib.error:
        return None
    consumed = pos - len(d.unused_data)
    if need_end and consumed != n:
        return None
    budget.remaining -= size
    return b"".join(out), consumed


@dataclass(frozen=True)
class Piece:
    """A span of an archive worth expanding, found by a format scanner.

    ``nested`` False: a raw deflate stream starts at ``start`` and ends at most ``length``
    bytes later (exactly there when ``content`` is given, already inflated by the scanner).
    ``nested`` True: ``[start, start+length)`` is stored data that may hold another archive.
    ``key`` names the producer (for the detector's cache).
    """

    start: int
    length: int
    nested: bool = False
    key: Hashable = None
    content: bytes | None = None


@dataclass
class DetectorStats:
    """What a :class:`DeflateDetector` did: counts, bytes and time, per producer key."""

    streams: int = 0
    reproduced: int = 0
    attempts: int = 0
    compressed_bytes: int = 0
    reproduced_compressed_bytes: int = 0
    seconds: float = 0.0
    per_producer: dict = field(default_factory=dict)  # key -> [streams, reproduced]
    per_params: dict = field(default_factory=dict)  # DeflateParams -> streams reproduced

    def share(self) -> float:
        """Share of streams reproduced (1.0 when none were seen)."""
        return self.reproduced / self.streams if self.streams else 1.0


def _p(level: int, wbits: int = 15, mem: int = 8, strategy: int = 0) -> DeflateParams:
    return DeflateParams(level, wbits, mem, strategy)


_FILTERED, _HUFFMAN_ONLY, _RLE, _FIXED = 1, 2, 3, 4

# The fixed search order: Python zipfile / zlib default (6), gzip -9 and setuptools sdists (9),
# the other levels, memLevel 9, then strategies; level 0, smaller windows and other memLevels
# are placed by _search_order.
_COMMON: tuple[DeflateParams, ...] = tuple(
    dict.fromkeys(
        [_p(6), _p(9)]
        + [_p(lv) for lv in range(1, 10)]
        + [_p(lv, mem=9) for lv in (6, 9, 1, 2, 3, 4, 5, 7, 8)]
    )
)
_STRATEGIES: tuple[DeflateParams, ...] = (
    # FILTERED only changes the lazy matcher (levels 4..9); HUFFMAN_ONLY and RLE ignore the level.
    *(_p(lv, strategy=_FILTERED) for lv in range(4, 10)),
    _p(6, strategy=_HUFFMAN_ONLY),
    _p(6, strategy=_RLE),
    *(_p(lv, strategy=_FIXED) for lv in range(1, 10)),
)
_OTHER_MEM: tuple[DeflateParams, ...] = tuple(
    _p(lv, mem=m) for m in (7, 6, 5, 4, 3, 2, 1) for lv in (6, 9)
)
_STORED = (_p(0), _p(0, strategy=_ONE_SHOT))
# miniz_oxide at its default level (maturin and other Rust zip writers), then the other levels.
_MINIZ_DEFAULT = DeflateParams(6, 15, 8, 0, MINIZ)
_MINIZ_OTHER = tuple(DeflateParams(lv, 15, 8, 0, MINIZ) for lv in (1, 2, 3, 4, 5, 7, 8, 9))


def _search_order(content_size: int, first_byte: int) -> list[DeflateParams]:
    """Every parameter set worth trying for a stream, most likely first (no cache involved)."""
    order: list[DeflateParams] = []
    if first_byte & 0x06 == 0:  # first block stored: level 0 is a real possibility
        order.extend(_STORED)
    # Python zipfile / zlib default, then miniz_oxide's default: a zlib guess fails within its
    # first block, so trying miniz this early costs zlib-made streams nothing.
    order.extend(_COMMON[:1])
    order.append(_MINIZ_DEFAULT)
    order.extend(_COMMON)
    order.extend(_STORED)
    order.extend(_STRATEGIES)
    # A smaller window only changes the output once the input outgrows it.
    for wbits in range(14, 8, -1):
        if content_size > (1 << wbits) - 262:
            order.extend((_p(6, wbits), _p(9, wbits)))
    order.extend(_OTHER_MEM)
    order.extend(_MINIZ_OTHER)
    return list(dict.fromkeys(order))


#: Content size above which a stream gets ``max_large_attempts`` guesses instead of
#: ``max_attempts`` (each wrong guess costs about one zlib block of compression).
LARGE_STREAM = 128 * 1024


class DeflateDetector:
    """Finds zlib parameters that reproduce raw deflate streams byte for byte.

    The parameter sets tried for a stream depend only on the stream (its size and first block
    type), so whether a stream is reproduced never depends on what the detector saw before.
    What it saw decides the *order*: the sets that worked for the same producer key (zip
    "version made by" + flags, gzip XFL + OS) are tried first, so a wheel with a thousand members
    costs about one compression of each. Thread-safe; reuse one instance across artifacts to save
    time. A fresh detector makes :func:`expand` fully deterministic; a shared one gives the same
    layout shape but may pick other, equally exact, parameters where several reproduce a stream.
    """

    def __init__(
        self, *, max_attempts: int = 64, max_large_attempts: int = 20, cache_size: int = 4
    ) -> None:
        if max_attempts < 1 or max_large_attempts < 1 or cache_size < 0:
            raise InvalidArgumentError(
                "max_attempts and max_large_attempts must be >= 1, cache_size >= 0"
            )
        self.max_attempts = max_attempts
        self.max_large_attempts = max_large_attempts
        self.cache_size = cache_size
        self.stats = DetectorStats()
        self._cache: dict[Hashable, list[DeflateParams]] = {}
        self._lock = threading.Lock()

    def candidates(
        self,
        key: Hashable,
        content_size: int,
        first_byte: int,
        *,
        limit: int | None = None,
        include: Iterable[DeflateParams] = (),
        engines: frozenset[int] | None = None,
    ) -> list[DeflateParams]:
        """The parameter sets tried for a stream, in the order tried.

        The set is the first ``limit`` of the fixed search order (default: ``max_attempts``, or
        ``max_large_attempts`` above :data:`LARGE_STREAM`), restricted to ``engines`` when given,
        plus ``include``; the cache only moves the producer's known sets to the front.
        """
        if limit is None:
            limit = self.max_attempts if content_size <= LARGE_STREAM else self.max_large_attempts
        order = _search_order(content_size, first_byte)
        if engines is not None:
            order = [p for p in order if p.engine in engines]
        base = order[:limit] + list(include)
        with self._lock:
            cached = [p for p in self._cache.get(key, ()) if p in base]
        return list(dict.fromkeys(cached + base))

    def find(
        self,
        compressed: Buffer,
        content: Buffer,
        key: Hashable = None,
        *,
        limit: int | None = None,
        include: Iterable[DeflateParams] = (),
        engines: frozenset[int] | None = None,
    ) -> DeflateParams | None:
        """Parameters whose :func:`deflate` of ``content`` equals ``compressed``, or ``None``.

        ``limit`` and ``include`` narrow or widen the set tried (see :meth:`candidates`).
        """
        t0 = time.perf_counter()
        comp = memoryview(compressed)
        found = None
        attempts = 0
        first = comp[0] if len(comp) else 0
        for params in self.candidates(
            key, len(content), first, limit=limit, include=include, engines=engines
        ):
            attempts += 1
            if _reproduces(comp, content, params):
                found = params
                break
        with self._lock:
            st = self.stats
            st.streams += 1
            st.attempts += attempts
            st.compressed_bytes += len(comp)
            prod = st.per_producer.setdefault(key, [0, 0])
            prod[0] += 1
            if found is not None:
                st.reproduced += 1
                st.reproduced_compressed_bytes += len(comp)
                prod[1] += 1
                st.per_params[found] = st.per_params.get(found, 0) + 1
                self._remember(key, found)
            st.seconds += time.perf_counter() - t0
        return found

    def _remember(self, key: Hashable, params: DeflateParams) -> None:
        if self.cache_size == 0:
            return
        lst = self._cache.setdefault(key, [])
        if params in lst:
            lst.remove(params)
        lst.insert(0, params)
        del lst[self.cache_size :]


def _reproduces(comp: memoryview, content: Buffer, params: DeflateParams) -> bool:
    """Compress with ``params`` and compare as output appears; stop at the first difference."""
    n = len(comp)
    pos = 0
    try:
        for out in deflate(content, params):
            end = pos + len(out)
            if end > n or comp[pos:end] != out:
                return False
            pos = end
    except (zlib.error, ValueError):
        return False
    return pos == n


# -- the detection policy of one expansion -----------------------------------------------------

#: Parameters recorded for streams that are never recompressed (base streams; target streams the
#: patch copies from the base). Any valid value would do; rebuild never reads them.
UNUSED_PARAMS = DeflateParams(6, 15, 8, 0)

_ALL_KEYS = object()  # history key for every stream of the artifact


class StreamPolicy:
    """How one expansion decides the parameters of each stream it inflates.

    - ``search=False`` (the base side of a diff): every stream is accepted without searching
      parameters (:data:`UNUSED_PARAMS`); the base is only read, never recompressed.
    - ``known``: SHA-256 digests of compressed streams the patch will copy (the base's): such a
      stream needs no parameters either.
    - ``memo``: an LRU of parameters that reproduced a stream, by its digest, shared across
      expansions (consecutive releases repeat most streams).
    - otherwise the detector searches, narrowed by this artifact's own history per producer key:
      a producer whose streams here mostly fail is not zlib (GNU gzip on large inputs, Go...):
      two guesses; one that mostly succeeds gets a short search for its odd streams; the same
      failure rule applies to the artifact as a whole. It depends only on the artifact, so the
      layout's shape never depends on a shared detector's past.
    - ``reconstruct`` (default on): a stream no parameters reproduce is rebuilt from a
      correction record (:data:`RECON`; layout version 2) when the record is at most
      :data:`RECON_MAX_RECORD_SHARE` of the stream; the record is verified by rebuilding the
      stream once before it is accepted.

    The caller hashes each stream once and passes the digest.
    """

    def __init__(
        self,
        detector: DeflateDetector | None = None,
        *,
        search: bool = True,
        known: frozenset[bytes] | set[bytes] = frozenset(),
        memo: Any = None,
        reconstruct: bool = True,
    ) -> None:
        self.detector = detector or DeflateDetector()
        self.search = search
        self.known = known
        self.memo = memo
        self.reconstruct = reconstruct
        self.reconstructed = 0  # streams kept through a correction record
        self.record_bytes = 0  # their records' total size
        # Per producer key, what this artifact showed so far: [streams, reproduced, params].
        self.history: dict[object, list] = {}
        self.failed = 0  # streams no parameters reproduced (they stay compressed)

    def params(
        self, comp: Buffer, content: Buffer, key: Hashable, digest: bytes
    ) -> DeflateParams | None:
        hist = self.history.setdefault(key, [0, 0, {}])
        total = self.history.setdefault(_ALL_KEYS, [0, 0, {}])
        streams, reproduced, seen = hist
        limit = None
        if (streams >= 4 and reproduced * 4 < streams) or (
            total[0] >= 16 and total[1] * 4 < total[0]
        ):
            limit = 2
        elif streams >= 16 and reproduced * 2 >= streams:
            limit = 4
        # A producer that mostly reproduces with one engine is that engine: its odd streams are
        # not worth a full compression with the other (a miniz guess cannot stop early).
        engines = None
        if streams >= 8 and reproduced * 2 >= streams:
            engines = frozenset(p.engine for p in seen)
        params = self._lookup(comp, content, key, digest, limit, seen, engines)
        # The history is the exact path's: a producer whose streams need reconstruction (GNU
        # gzip, libdeflate...) still gets the short zlib search.
        exact = params is not None and params.engine != RECON
        for h in (hist, total):
            h[0] += 1
            if exact:
                h[1] += 1
        if exact:
            seen[params] = None
        return params

    def _lookup(
        self,
        comp: Buffer,
        content: Buffer,
        key: Hashable,
        digest: bytes,
        limit: int | None,
        seen: dict,
        engines: frozenset[int] | None,
    ) -> DeflateParams | None:
        if not self.search or digest in self.known:
            return UNUSED_PARAMS
        if self.memo is not None:
            hit = self.memo.get(digest)
            if hit is not None:
                return hit
        found = self.detector.find(comp, content, key, limit=limit, include=seen, engines=engines)
        if found is None and self.reconstruct:
            found = reconstructed_params(comp, content)
            if found is not None:
                self.reconstructed += 1
                self.record_bytes += len(found.record)
        if found is None:
            self.failed += 1
        elif self.memo is not None and len(found.record) <= _MEMO_MAX_RECORD:
            self.memo.put(digest, found)  # large records are not kept: the memo stays small
        return found


#: Reconstructed parameters whose record is larger than this are not memoized per digest.
_MEMO_MAX_RECORD = 1 << 16


def reconstructed_params(comp: Buffer, content: Buffer) -> DeflateParams | None:
    """:data:`RECON` parameters rebuilding ``comp`` (one raw stream inflating to ``content``),
    or ``None`` when the record would exceed :data:`RECON_MAX_RECORD_SHARE` of the stream or
    the stream is out of bounds. The record is checked by one rebuild before it is returned."""
    from ..errors import RegistryCoreError
    from ._reconstruct import correction_record, rebuild_stream

    if len(content) > RECON_MAX_CONTENT or not len(comp):
        return None
    try:
        record, _ = correction_record(comp, max_content=len(content))
        if len(record) > RECON_MAX_RECORD_SHARE * len(comp):
            return None
        if rebuild_stream(content, record, len(comp)) != comp:  # pragma: no cover - a bug
            return None
    except (RegistryCoreError, MemoryError):
        return None
    return DeflateParams(0, 15, 8, 0, RECON, record)
