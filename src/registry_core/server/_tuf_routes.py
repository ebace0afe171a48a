"""TufApp: the index's TUF metadata over HTTP, at ``/tuf/<file>`` (mounted by IndexApp).

Serves the files a :class:`registry_core.signing.TufRepository` wrote: ``timestamp.json``,
``<version>.<role>.json`` (consistent snapshots), ``root.json``. Nothing else: names outside
that grammar are answered 404 without touching the file system. The metadata is signed, so
plain HTTP is fine for it; TLS still hides what a client looks at.

The refresh schedule lives here: a ``timestamp.json`` request first re-signs whatever is due
(:meth:`TufRepository.refresh`), at most once per ``refresh_interval`` seconds, on a worker
thread, so an idle registry never serves an expired timestamp to its next client. Nothing
here imports tuf: the repository object does.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ._app import fold_headers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = ["TUF_PREFIX", "TufApp"]

log = logging.getLogger("registry_core.server.tuf")

TUF_PREFIX = "/tuf/"


class TufApp:
    """ASGI app serving ``repository``'s metadata files under ``prefix``.

    ``refresh_interval``: seconds between refresh checks (0: before every timestamp
    request); ``None`` turns the refresh off (the operator schedules it).
    """

    def __init__(
        self,
        repository: Any,
        *,
        prefix: str = TUF_PREFIX,
        refresh_interval: float | None = 60.0,
    ) -> None:
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise InvalidArgumentError(f"prefix must start and end with '/', not {prefix!r}")
        if refresh_interval is not None and not refresh_interval >= 0:
            raise InvalidArgumentError("refresh_interval must be >= 0 seconds or None")
        self.repository = repository
        self.prefix = prefix
        self.refresh_interval = refresh_interval
        self._checked = float("-inf")
        self._refresh_lock = threading.Lock()
        self.stats = {"served": 0, "bytes": 0, "not_found": 0, "refreshes": 0}

    def handles(self, path: str) -> bool:
        """Whether ``path`` is one of this app's."""
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        path: str = scope["path"]
        if method not in ("GET", "HEAD"):
            # The request body is never read: the connection ends with this answer, and says
            # so, or a client reusing it races the server's close.
            allow = [("allow", "GET, HEAD"), ("connection", "close")]
            await _reply(send, 405, b"method not allowed\n", allow, method)
            return
        name = path[len(self.prefix) :] if path.startswith(self.prefix) else ""
        if name == "timestamp.json":
            await self._maybe_refresh()
        try:
            body = await asyncio.to_thread(self.repository.read_file, name) if name else None
        except OSError:
            log.exception("cannot read TUF metadata %r", name)
            await _reply(send, 503, b"TUF metadata unavailable\n", [], method)
            return
        if body is None:
            self.stats["not_found"] += 1
            await _reply(send, 404, b"no such TUF metadata\n", [], method)
            return
        self.stats["served"] += 1
        self.stats["bytes"] += len(body)
        if name == "timestamp.json" or name == "root.json":
            cache = "no-cache"
        else:  # a consistent-snapshot file: its name changes with its content
            cache = "public, max-age=300"
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = fold_headers(scope.get("headers", []))
        if headers.get("if-none-match") == etag:
            await _reply(send, 304, b"", [("etag", etag), ("cache-control", cache)], "HEAD")
            return
        await _reply(
            send,
            200,
            body,
            [("content-type", "application/json"), ("etag", etag), ("cache-control", cache)],
            method,
        )

    async def _maybe_refresh(self) -> None:
        if self.refresh_interval is None:
            return
        now = time.monotonic()
        if now - self._checked < self.refresh_interval:
            return
        self._checked = now
        await asyncio.to_thread(self._refresh)

    def _refresh(self) -> None:
        if not self._refresh_lock.acquire(blocking=False):
            return  # another request is refreshing; the repository's lock orders the rest
        try:
            if self.repository.refresh():
                self.stats["refreshes"] += 1
        except Exception:
            log.exception("refreshing the TUF metadata failed; serving what is on disk")
        finally:
            self._refresh_lock.release()


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[str, str]], method: str
) -> None:
    base = [("content-length", str(len(body)))] if status != 304 else []
    if status in (404, 405, 503):
        base.append(("content-type", "text/plain; charset=utf-8"))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in base + headers],
        }
    )
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
