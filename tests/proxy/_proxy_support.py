"""Helpers the proxy tests share (a uniquely named module: conftest.py is not importable
by name when several test directories have one)."""

from __future__ import annotations

import asyncio
from collections import Counter

PROJECT = "demo-proxy-pkg"
VERSIONS = ("1.0", "1.1")


class Counting:
    """ASGI wrapper: counts requests per (method, path); ``down`` answers 503 to all."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.hits: Counter[tuple[str, str]] = Counter()
        self.down = False
        self.inflight = 0
        self.peak = 0  # most file requests (not /simple/) in flight at once

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        self.hits[(scope["method"], scope["path"])] += 1
        if self.down:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"down\n"})
            return
        page = scope["path"].startswith("/simple/")
        if not page:
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            return await self.inner(scope, receive, send)
        finally:
            if not page:
                self.inflight -= 1

    def count(self, suffix: str, method: str = "GET") -> int:
        return sum(n for (m, p), n in self.hits.items() if m == method and p.endswith(suffix))


class Clock:
    """A clock the test moves by hand (page TTLs without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)
