"""Failures on the real network path: GOAWAY, truncation, bad digests, size limits, retries."""

from __future__ import annotations

import asyncio

import pytest

from _servers import RESOLVE, flags, url
from registry_core.errors import DigestMismatchError, ResponseTooLargeError, TransportError
from registry_core.transport import RetryPolicy, Transport

pytestmark = pytest.mark.network


def run(coro):
    return asyncio.run(coro)


def make(pki, **kw):
    kw.setdefault("flags", flags())
    kw.setdefault("http3", False)
    return Transport(verify=pki[0], resolve=RESOLVE, **kw)


def test_goaway_mid_stream_is_transparent(pki, goaway_server, artifacts):
    """The server closes each connection after 5 requests while 1 MiB bodies are in flight."""

    async def main():
        async with make(pki, coalesce_requests=False) as t:
            rs = await asyncio.gather(
                *(t.get(url(goaway_server, f"/blob/1mib.bin?{i}")) for i in range(10))
            )
            seq = [await t.get(url(goaway_server, f"/small.txt?{i}")) for i in range(12)]
            return rs, seq, t.stats

    rs, seq, stats = run(main())
    assert all(r.content == artifacts[1]["/blob/1mib.bin"] for r in rs)
    assert all(r.status == 200 for r in seq)
    assert stats["connections_h2"] >= 22 // 6  # the server really did close connections
    assert stats["replays"] > 0


def test_truncated_body_raises_and_writes_nothing(pki, server, tmp_path):
    dest = tmp_path / "out.bin"

    async def main():
        async with make(pki, retry=RetryPolicy(max_attempts=2, base=0.001)) as t:
            await t.fetch(url(server, "/evil/truncated"), dest=dest)

    with pytest.raises(TransportError, match="attempt"):
        run(main())
    assert not dest.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("path", ["/evil/wrong-digest", "/evil/wrong-etag"])
def test_wrong_digest_raises_and_writes_nothing(pki, server, tmp_path, path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous version")

    async def main():
        async with make(pki) as t:
            await t.fetch(url(server, path), dest=dest)

    with pytest.raises(DigestMismatchError):
        run(main())
    assert dest.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_unverifiable_artifact_is_refused(pki, server):
    async def main():
        async with make(pki) as t:
            await t.fetch(url(server, "/evil/no-digest"))

    with pytest.raises(DigestMismatchError, match="no digest"):
        run(main())


@pytest.mark.parametrize("http3", [False, True], ids=["h2", "h3"])
def test_oversized_response_raises(pki, server, tmp_path, http3):
    dest = tmp_path / "out.bin"

    async def main():
        async with make(pki, http3=http3, max_response_size=1 << 20) as t:
            with pytest.raises(ResponseTooLargeError, match="declares"):
                await t.get(url(server, "/blob/1mib.bin"), max_size=1000)
            await t.fetch(url(server, "/evil/big"), dest=dest)  # no Content-Length given

    with pytest.raises(ResponseTooLargeError, match="exceeds"):
        run(main())
    assert not dest.exists()


def test_decompression_bomb_is_refused(pki, server):
    async def main():
        async with make(pki, max_response_size=8 << 20) as t:
            await t.get(url(server, "/evil/bomb"))

    with pytest.raises(ResponseTooLargeError):
        run(main())


def test_503_is_retried_with_backoff(pki, server):
    delays = []

    class Recording(RetryPolicy):
        def delay(self, attempt, **kw):
            d = super().delay(attempt, **kw)
            delays.append(d)
            return d

    async def main():
        async with make(pki, retry=Recording(max_attempts=4, base=0.01, rng=lambda: 0.5)) as t:
            return await t.get(url(server, "/evil/flaky"))

    r = run(main())
    assert r.status == 200 and r.content == b"ok"
    assert delays == [0.005, 0.01]  # U(0, base*2^n) with rng fixed at 0.5


def test_connection_refused_is_a_transport_error(pki):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        async with make(pki, retry=RetryPolicy(max_attempts=2, base=0.001)) as t:
            await t.get(f"https://registry.test:{port}/x")

    with pytest.raises(TransportError, match="2 attempt"):
        run(main())


def test_timeout(pki, server):
    async def main():
        async with make(pki, timeout=0.000_001, retry=RetryPolicy(max_attempts=1)) as t:
            await t.get(url(server, "/small.txt"))

    with pytest.raises(TransportError, match="timed out"):
        run(main())


def test_cancelled_first_requester_does_not_fail_the_shared_connect(
    pki, server, artifacts, monkeypatch
):
    """Two requests wait for the same new connection; the one that started opening it is
    cancelled. The inline copy of single-flight handed CancelledError to the other one."""
    gate = asyncio.Event()
    real_open = Transport._open_h2

    async def gated_open(self, origin, address):
        await gate.wait()
        return await real_open(self, origin, address)

    monkeypatch.setattr(Transport, "_open_h2", gated_open)

    async def main():
        async with make(pki, http3=False, coalesce_requests=False) as t:
            first = asyncio.ensure_future(t.get(url(server, "/small.txt?first")))
            second = asyncio.ensure_future(t.get(url(server, "/small.txt?second")))
            for _ in range(50):  # let both reach the connection attempt (yields, no clock)
                await asyncio.sleep(0)
            first.cancel()
            for _ in range(50):
                await asyncio.sleep(0)
            gate.set()
            r = await asyncio.wait_for(second, 30)
            with pytest.raises(asyncio.CancelledError):
                await first
            return r, t.stats

    r, stats = run(main())
    assert r.status == 200 and r.content == artifacts[1]["/small.txt"]
    assert stats["connections_h2"] == 1
