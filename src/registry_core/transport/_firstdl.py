"""First downloads decoded while the body arrives: an ExpandedDecoder fed from the network.

A ``226`` answering a first download (docs/wire.md section 3, "First downloads") carries an
EXPANDED patch: the artifact's layout and its expanded form as one zstd frame. Rebuilding it
means recompressing every deflate stream, the slow part, so it should run while later bytes
are still on the wire. :class:`StreamingDecode` is the body sink the Transport hands each
chunk to as it is read: the chunk is queued (no work on the event loop) and a worker thread
feeds it to :class:`registry_core.delta.ExpandedDecoder`; once the body is complete,
:meth:`StreamingDecode.result` waits (under the caller's deadline) for ``finish()``, which
returns the artifact only after its SHA-256 matched the patch's declared target.

Nothing the decoder produces is used before the Transport checked ``Content-Digest`` over the
whole body and the header checks tied the declared target to ``Repr-Digest`` and the ETag
(``expected_sha256``: a patch declaring another target is refused with DigestMismatchError as
soon as its header is in, before any content is decoded). Memory: the queued chunks (at most
the body, bounded by the response limit) plus what the decoder holds (bounded by
``max_output_size``, see delta/_expanded.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import queue
import threading
from typing import Any

from ..errors import DigestMismatchError, TransportError

__all__ = ["StreamingDecode", "new_decoder"]

_END = object()


def new_decoder(max_output_size: int) -> Any:
    """A fresh ``ExpandedDecoder`` with the limits ``DeltaAggregator.apply`` would use for a
    ``max_output_size``-byte artifact (``DeltaAggregator.expanded_decoder``)."""
    from ..delta import DeltaAggregator

    return DeltaAggregator(archive_aware=True, max_output_size=max_output_size).expanded_decoder()


class StreamingDecode:
    """Feed a response body to ``decoder`` (``.feed(chunk)`` / ``.finish()``) on a worker
    thread of ``executor`` while the body is read.

    The event loop only queues chunks (:meth:`feed`) and says when the body ended
    (:meth:`close`) or was abandoned (:meth:`abort`: a failed attempt, a digest mismatch, a
    cancelled fetch; the worker then drops what is queued and stops). ``expected_sha256``: the
    target the patch must declare (checked after each chunk once the decoder has read the
    header: DigestMismatchError, the server contradicting its own headers). ``idle_timeout``:
    seconds the worker waits for the next chunk before giving up on its own (a safety net so a
    worker never outlives a forgotten sink).
    """

    def __init__(
        self,
        decoder: Any,
        executor: concurrent.futures.Executor,
        *,
        expected_sha256: bytes | None = None,
        idle_timeout: float = 600.0,
    ) -> None:
        self.decoder = decoder
        self.expected_sha256 = expected_sha256
        self.chunks = 0
        self.received = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._abandoned = threading.Event()
        self._ended = False
        self._idle = idle_timeout
        self._future = executor.submit(self._work)

    # -- the event loop's side -------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Queue the next bytes of the body (never blocks)."""
        if self._ended or not chunk:
            return
        self.chunks += 1
        self.received += len(chunk)
        self._queue.put(bytes(chunk))

    def close(self) -> None:
        """The body is complete: the worker calls ``finish()`` after the last chunk."""
        if not self._ended:
            self._ended = True
            self._queue.put(_END)

    def abort(self) -> None:
        """Abandon the decode: queued chunks are dropped, ``finish()`` is never called."""
        self._abandoned.set()
        if not self._ended:
            self._ended = True
            self._queue.put(_END)

    @property
    def done(self) -> bool:
        return self._future.done()

    async def result(self, timeout: float) -> bytes:
        """The verified artifact, waiting at most ``timeout`` seconds after the body ended
        (TimeoutError past it; the decode is then abandoned). Raises what the decoder raised."""
        if not self._ended:
            raise TransportError("StreamingDecode.result before the body was complete")
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._future), timeout)
        except BaseException:
            self.abort()
            raise

    # -- the worker's side -----------------------------------------------------------------------

    def _work(self) -> bytes:
        error: BaseException | None = None
        while True:
            try:
                item = self._queue.get(timeout=self._idle)
            except queue.Empty:
                self._abandoned.set()
                break
            if item is _END:
                break
            if error is not None or self._abandoned.is_set():
                continue  # drain until the end marker; the outcome is already decided
            try:
                self.decoder.feed(item)
                self._check_target()
            except BaseException as exc:  # surfaced by result(); the loop keeps draining
                error = exc
        try:
            if error is not None:
                raise error
            if self._abandoned.is_set():
                raise TransportError("the streamed decode was abandoned")
            self._check_target()
        except BaseException:
            self._close_decoder()  # stops the Rebuilder's workers, drops what was decoded
            raise
        out: bytes = self.decoder.finish()
        return out

    def _close_decoder(self) -> None:
        close = getattr(self.decoder, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing must not mask the failure
                close()

    def _check_target(self) -> None:
        declared = getattr(self.decoder, "target_sha256", b"")
        want = self.expected_sha256
        if want is not None and declared and not hmac.compare_digest(declared, want):
            raise DigestMismatchError(
                f"the patch declares target sha256 {bytes(declared).hex()}, not the "
                f"{want.hex()} its Repr-Digest/ETag announced; nothing was written"
            )

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn()`` (from the worker thread) once the decode ended, however it ended."""
        self._future.add_done_callback(lambda _f: fn())
