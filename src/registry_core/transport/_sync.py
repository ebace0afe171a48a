"""A blocking wrapper: runs a :class:`Transport` on a private event loop thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ._client import Response, Transport

__all__ = ["SyncTransport"]


class SyncTransport:
    """``with SyncTransport(verify=...) as t: t.get(url)``; same arguments as Transport."""

    def __init__(self, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="registry-core-sync-transport"
        )
        self._thread.start()
        self._transport: Transport = self._call(self._make(kwargs))

    @staticmethod
    async def _make(kwargs: dict[str, Any]) -> Transport:
        return Transport(**kwargs)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def transport(self) -> Transport:
        """The underlying async Transport (stats, connections)."""
        return self._transport

    def get(self, url: str, **kwargs: Any) -> Response:
        return self._call(self._transport.get(url, **kwargs))

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self._call(self._transport.request(method, url, **kwargs))

    def fetch(self, url: str, **kwargs: Any) -> bytes:
        return self._call(self._transport.fetch(url, **kwargs))

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._transport.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> SyncTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
