"""Content-defined chunking (FastCDC with normalized chunking) over the C core.

Boundaries are reported as *end offsets*: ``chunks(data)`` returns ``[e1, e2, ..., len(data)]``
with chunk ``k`` spanning ``data[e(k-1):e(k)]`` (``e0 = 0``); empty input gives ``[]``. Every chunk
but the last is ``min_size <= length <= max_size`` bytes; the last may be shorter. The algorithm,
gear table and masks are described in docs/chunking.md; boundaries for given sizes are stable
across versions and platforms (a change would be a format change).

Size rules: ``64 <= min_size <= avg_size <= max_size <= 2**31`` and ``avg_size`` a power of two
(the normalized-chunking masks have ``log2(avg_size) +- 2`` bits).

Input is any C-contiguous buffer (bytes, bytearray, memoryview, mmap, array): it is handed to C
without copying. The C calls run without the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ._native import ffi, lib
from ._util._buffers import byte_view
from .errors import InvalidArgumentError, InvalidTypeError

__all__ = [
    "DEFAULT_AVG_SIZE",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "MAX_SIZE_LIMIT",
    "MIN_SIZE_LIMIT",
    "Chunker",
    "chunks",
    "iter_chunks",
]

# Defaults chosen by measurement on the benchmark corpus (docs/chunking.md, "Defaults").
DEFAULT_MIN_SIZE = 1024
DEFAULT_AVG_SIZE = 4096
DEFAULT_MAX_SIZE = 32768
MIN_SIZE_LIMIT = 64
MAX_SIZE_LIMIT = 2**31

_OUT_CAP = 1 << 14  # offsets fetched per C call: bounds the scratch array at 128 KiB


def _params(min_size: Any, avg_size: Any, max_size: Any) -> Any:
    for name, value in (("min_size", min_size), ("avg_size", avg_size), ("max_size", max_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidTypeError(f"{name} must be an int, not {type(value).__name__}")
    if not MIN_SIZE_LIMIT <= min_size <= avg_size <= max_size <= MAX_SIZE_LIMIT:
        raise InvalidArgumentError(
            f"chunk sizes must satisfy {MIN_SIZE_LIMIT} <= min_size <= avg_size <= max_size "
            f"<= 2**31; got min_size={min_size}, avg_size={avg_size}, max_size={max_size}"
        )
    if avg_size & (avg_size - 1):
        raise InvalidArgumentError(
            f"avg_size must be a power of two (the masks have log2(avg_size) bits); got "
            f"{avg_size}, try {1 << (avg_size.bit_length() - 1)} or {1 << avg_size.bit_length()}"
        )
    params = ffi.new("rc_cdc_params *")
    if lib.rc_cdc_params_init(params, min_size, avg_size, max_size) != lib.RC_OK:
        raise InvalidArgumentError(  # pragma: no cover - the checks above mirror the C ones
            f"the C core rejected min_size={min_size}, avg_size={avg_size}, max_size={max_size}"
        )
    return params


def _find(params: Any, view: memoryview | bytearray, is_final: bool) -> list[int]:
    """End offsets (relative to ``view``) of the chunks the core can cut in ``view``."""
    total = len(view)
    if total == 0:
        return []
    cap = min(_OUT_CAP, total // params.min_size + 1)
    out = ffi.new("uint64_t[]", cap)
    result: list[int] = []
    pos = 0
    with ffi.from_buffer("uint8_t[]", view) as buf:
        while pos < total:
            n = lib.rc_cdc_find(params, buf + pos, total - pos, 1 if is_final else 0, out, cap)
            if n < 0:  # pragma: no cover - arguments are validated above
                raise InvalidArgumentError(f"rc_cdc_find failed with code {n}")
            if n == 0:
                break
            ends = ffi.unpack(out, n)
            if pos:
                ends = [pos + e for e in ends]
            result.extend(ends)
            pos = ends[-1]
            if n < cap:
                break
    return result


def chunks(
    data: Any,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    avg_size: int = DEFAULT_AVG_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
) -> list[int]:
    """End offsets of the content-defined chunks of ``data`` (the last one is ``len(data)``)."""
    params = _params(min_size, avg_size, max_size)
    return _find(params, byte_view(data), True)


def iter_chunks(
    data: Any,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    avg_size: int = DEFAULT_AVG_SIZE,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Iterator[memoryview]:
    """The chunks of ``data`` as zero-copy memoryview slices, in order."""
    view = byte_view(data)
    start = 0
    for end in chunks(view, min_size=min_size, avg_size=avg_size, max_size=max_size):
        yield view[start:end]
        start = end


class Chunker:
    """Streaming chunker: ``feed`` pieces, then ``finish``; same boundaries as :func:`chunks`.

    Offsets are absolute (from the first byte fed since the chunker was created or last
    finished). ``feed`` returns the boundaries that are already certain; it may hold some back
    (fewer than ``2 * max_size`` bytes are ever copied into its buffer; pieces are otherwise
    scanned in place), ``finish`` returns the rest including the end of
    the data, and resets the chunker for a new stream. One object may be shared by threads:
    a lock serialises calls (the C scan itself runs without the GIL).
    """

    def __init__(
        self,
        *,
        min_size: int = DEFAULT_MIN_SIZE,
        avg_size: int = DEFAULT_AVG_SIZE,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._params = _params(min_size, avg_size, max_size)
        self.min_size = min_size
        self.avg_size = avg_size
        self.max_size = max_size
        self._lock = threading.Lock()
        self._buf = bytearray()  # bytes fed but not yet part of a reported chunk
        self._base = 0  # absolute offset of _buf[0]
        self._unscanned = 0  # bytes appended to _buf since it was last scanned

    @property
    def position(self) -> int:
        """Total bytes fed since the start of the current stream."""
        with self._lock:
            return self._base + len(self._buf)

    def feed(self, piece: Any) -> list[int]:
        """Add ``piece``; return absolute end offsets of the chunks completed so far."""
        view = byte_view(piece, "piece")
        with self._lock:
            if not self._buf:
                return self._scan_in_place(view)
            # Join the pending tail with at most max_size bytes of the piece: enough for a cut
            # to be certain, and the last cut then lies inside the piece, so the rest of the
            # piece is scanned in place instead of being copied.
            pending = len(self._buf)
            head = view[: self.max_size]
            self._buf += head
            self._unscanned += len(head)
            # A rescan can only find a cut once enough new bytes arrived; this keeps tiny pieces
            # from rescanning the whole pending tail every time.
            if len(self._buf) < self.max_size and self._unscanned < self.min_size:
                return []
            ends = _find(self._params, self._buf, False)
            self._unscanned = 0
            if not ends:
                return []
            used = ends[-1]
            out = self._shift(ends, used)
            if len(head) < len(view):
                self._buf = bytearray()
                return out + self._scan_in_place(view[used - pending :])
            del self._buf[:used]
            return out

    def _scan_in_place(self, view: memoryview) -> list[int]:
        """Cut ``view`` (nothing pending) without copying it; keep only its uncut tail."""
        ends = _find(self._params, view, False)
        used = ends[-1] if ends else 0
        self._buf += view[used:]
        self._unscanned = 0
        return self._shift(ends, used)

    def finish(self) -> list[int]:
        """End of stream: return the remaining end offsets and reset for a new stream."""
        with self._lock:
            ends = _find(self._params, self._buf, True)
            out = [self._base + e for e in ends]
            self._buf = bytearray()
            self._base = 0
            self._unscanned = 0
            return out

    def _shift(self, ends: list[int], used: int) -> list[int]:
        base = self._base
        self._base += used
        return [base + e for e in ends] if base else ends
