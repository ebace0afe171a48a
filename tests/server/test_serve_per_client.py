"""``ServerLimits.max_requests_per_ip``: at most N requests of one client address are in the
application at once, the others wait in arrival order; other addresses are not held up, and a
waiter that goes away passes its turn on."""

from __future__ import annotations

import asyncio

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.server import ServerLimits
from registry_core.server._serve import _PerClient


def test_per_client_limit_orders_and_isolates():
    async def main() -> None:
        gate = _PerClient(2)
        inside: list[str] = []
        release = {i: asyncio.Event() for i in range(5)}
        order: list[int] = []

        async def request(i: int, ip: str) -> None:
            await gate.acquire(ip)
            try:
                inside.append(ip)
                order.append(i)
                await release[i].wait()
            finally:
                inside.remove(ip)
                gate.release(ip)

        tasks = [asyncio.create_task(request(i, "10.0.0.1")) for i in range(4)]
        other = asyncio.create_task(request(4, "10.0.0.2"))
        for _ in range(5):
            await asyncio.sleep(0)  # let every task reach the gate (no timing involved)
        assert sorted(order) == [0, 1, 4]  # two of the busy client, the other client at once
        assert inside.count("10.0.0.1") == 2
        tasks[2].cancel()  # a waiter that goes away
        release[0].set()
        await tasks[0]
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == [0, 1, 4, 3]  # 2 was cancelled: 3 got the turn, in order
        for i in (1, 3, 4):
            release[i].set()
        await asyncio.gather(tasks[1], tasks[3], other)
        with pytest.raises(asyncio.CancelledError):
            await tasks[2]
        assert gate.active == {} and gate.waiting == {}

    asyncio.run(main())


def test_cancelled_after_being_handed_the_turn_passes_it_on():
    async def main() -> None:
        gate = _PerClient(1)
        await gate.acquire("a")
        second = asyncio.create_task(gate.acquire("a"))
        third = asyncio.create_task(gate.acquire("a"))
        await asyncio.sleep(0)
        gate.release("a")  # hands the turn to `second` ...
        second.cancel()  # ... which is cancelled before it runs
        await asyncio.wait_for(third, 5)  # the turn reached `third`
        assert gate.active == {"a": 1}
        gate.release("a")
        assert gate.active == {} and gate.waiting == {}

    asyncio.run(main())


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_max_requests_per_ip_is_validated(bad):
    with pytest.raises(InvalidArgumentError):
        ServerLimits(max_requests_per_ip=bad)


class _CountingApp:
    """Counts the requests that reach it; ``/big`` streams 8 MiB in 64 KiB pieces."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        self.calls.append(scope["path"])
        piece = b"x" * (64 << 10)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(piece) * 128).encode())],
            }
        )
        for i in range(128):
            await send({"type": "http.response.body", "body": piece, "more_body": i < 127})


def _tls(port: int):
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(30)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _wait_for(condition, what: str, bound: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {bound:g}s"
        time.sleep(0.02)


@pytest.mark.network
def test_a_request_whose_connection_went_away_while_waiting_never_runs(tmp_path, monkeypatch):
    from registry_core.server import start_server

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    app = _CountingApp()
    limits = ServerLimits(max_requests_per_ip=1, write_timeout=None, read_timeout=None)
    with start_server(app, quic=False, limits=limits) as srv:
        first, second = _tls(srv.port), _tls(srv.port)
        first.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")  # runs, never read: blocks
        _wait_for(lambda: app.calls == ["/big"], "first request in the app")
        second.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")  # waits for its turn
        second.close()
        _wait_for(lambda: srv.stats["open"] == 1, "second connection gone")
        first.close()  # the first request's sends fail; the turn passes to the second
        _wait_for(lambda: srv.stats["open"] == 0, "first connection gone")
        tail = _tls(srv.port)  # a later request from the same address still gets its turn
        tail.sendall(b"GET /tail HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        _wait_for(lambda: "/tail" in app.calls, "a later request runs")
        tail.close()
    assert app.calls == ["/big", "/tail"]  # the abandoned one never ran
