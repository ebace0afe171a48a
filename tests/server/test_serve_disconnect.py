"""A client that closes (or half-closes) while the application is still answering frees its
connection slot at once: the application is told ``http.disconnect``, the server closes its side
(no CLOSE-WAIT) and the per-IP budget is released, on HTTP/1.1 and HTTP/2, plain and TLS.

Before the fix, hypercorn kept the socket until the application returned, so an application
that streams (SSE) or waits on anything but ``receive`` held the slot forever: with
``max_connections_per_ip=2`` the third abandoned request was refused. Real sockets on loopback;
every wait is a bounded poll on a condition against a generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import h2.events
import pytest

from registry_core.server import ServerHandle, ServerLimits, start_server

DEADLINE = 15.0  # generous: a loaded 2-core machine; the fix frees a slot in milliseconds


def wait_for(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {DEADLINE:g}s: {what}")
        time.sleep(0.01)


class StreamingApp:
    """``/ok``: a small answer. Anything else: a streamed response that never ends by itself,
    in one of three ways (``mode``): waits on an event (never calls ``receive``), sends a
    chunk every 50 ms, or waits on ``receive`` for ``http.disconnect``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.lock = threading.Lock()
        self.started = 0
        self.ended = 0
        self.disconnects = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/ok":
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        with self.lock:
            self.started += 1
        try:
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"data: hi\n\n", "more_body": True})
            if self.mode == "idle":
                await asyncio.Event().wait()
            elif self.mode == "stream":
                while True:
                    await asyncio.sleep(0.05)
                    chunk = b": ping\n\n"
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            else:
                while (await receive())["type"] != "http.disconnect":
                    pass
                with self.lock:
                    self.disconnects += 1
        finally:
            with self.lock:
                self.ended += 1


@contextlib.contextmanager
def serving(app: StreamingApp, tls: bool, pki) -> Iterator[ServerHandle]:
    limits = ServerLimits(max_connections_per_ip=2, close_timeout=0.5)
    if tls:
        _, cert, key = pki
        handle = start_server(app, certfile=cert, keyfile=key, quic=False, limits=limits)
    else:
        handle = start_server(app, tls=False, limits=limits)
    try:
        yield handle
    finally:
        handle.stop()


def connect(handle: ServerHandle, tls: bool, h2: bool, pki) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=DEADLINE)
    if not tls:
        return sock
    ctx = ssl.create_default_context(cafile=pki[0])
    ctx.set_alpn_protocols(["h2"] if h2 else ["http/1.1"])
    tls_sock = ctx.wrap_socket(sock, server_hostname="registry.test")
    assert tls_sock.selected_alpn_protocol() == ("h2" if h2 else "http/1.1")
    return tls_sock


def h1_open(sock: socket.socket, path: str) -> bytes:
    """Send a GET for ``path`` and read until the first event (or the whole small answer)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: registry.test\r\n\r\n".encode())
    buf = b""
    while b"data: hi" not in buf and not buf.endswith(b"\r\n\r\nok"):
        data = sock.recv(65536)
        if not data:
            break
        buf += data
    return buf


def h2_open(sock: socket.socket, path: str) -> tuple[int, bytes]:
    """HTTP/2 (prior knowledge on plain TCP): GET ``path``; returns (status, first data)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "registry.test"),
            (":path", path),
        ],
        end_stream=True,
    )
    sock.sendall(conn.data_to_send())
    status, body = 0, b""
    while not body:
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sock.sendall(conn.data_to_send())
    return status, body


def abandon(handle: ServerHandle, tls: bool, h2: bool, pki, half_close: bool = False) -> None:
    sock = connect(handle, tls, h2, pki)
    try:
        if h2:
            status, body = h2_open(sock, "/stream")
            assert status == 200 and body.startswith(b"data: hi")
        else:
            assert b"data: hi" in h1_open(sock, "/stream")
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # EOF to the server; we still could read
            wait_for(lambda: handle.stats["open"] == 0, "the half-closed connection is freed")
    finally:
        sock.close()


def normal_request(handle: ServerHandle, tls: bool, h2: bool, pki) -> None:
    with contextlib.closing(connect(handle, tls, h2, pki)) as sock:
        if h2:
            assert h2_open(sock, "/ok") == (200, b"ok")
        else:
            head = h1_open(sock, "/ok")
            assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"ok"), head


CASES = [
    pytest.param(False, False, id="h1-plain"),
    pytest.param(True, False, id="h1-tls"),
    pytest.param(False, True, id="h2c-plain"),
    pytest.param(True, True, id="h2-tls"),
]


@pytest.mark.parametrize("mode", ["idle", "stream", "receive"])
@pytest.mark.parametrize(("tls", "h2"), CASES)
def test_abandoned_streams_free_their_slots(tls, h2, mode, pki):
    """Five requests opened and abandoned one after the other under a per-IP cap of two: each
    slot is freed, no socket stays in CLOSE-WAIT, and a normal request then succeeds."""
    app = StreamingApp(mode)
    with serving(app, tls, pki) as handle:
        for i in range(5):
            abandon(handle, tls, h2, pki)
            wait_for(lambda: handle.stats["open"] == 0, f"abandoned request {i} frees its slot")
        assert handle.stats["refused_per_ip"] == 0
        assert handle.stats["accepted"] == 5
        normal_request(handle, tls, h2, pki)
        assert handle.stats["refused_per_ip"] == 0
        # the applications end too: told http.disconnect, failing to send, or cancelled
        wait_for(lambda: app.ended == 5, "every abandoned application call ends")
        if mode == "receive":
            assert app.disconnects == 5


@pytest.mark.parametrize(("tls", "h2"), CASES)
def test_half_close_frees_the_slot(tls, h2, pki):
    """A client that only shuts its sending side (FIN, still reading) is treated as gone."""
    app = StreamingApp("idle")
    with serving(app, tls, pki) as handle:
        for _ in range(5):
            abandon(handle, tls, h2, pki, half_close=True)
        normal_request(handle, tls, h2, pki)
        assert handle.stats["refused_per_ip"] == 0
        wait_for(lambda: app.ended == 5, "every abandoned application call ends")


def test_cap_still_counts_open_streams(pki):
    """The fix frees closed connections only: two streams a client keeps open still use the
    two slots, and a third connection is refused."""
    app = StreamingApp("idle")
    with serving(app, False, pki) as handle:
        held = [connect(handle, False, False, pki) for _ in range(2)]
        try:
            for sock in held:
                assert b"data: hi" in h1_open(sock, "/stream")
            extra = connect(handle, False, False, pki)
            with contextlib.closing(extra), contextlib.suppress(OSError):  # reset: refused
                extra.sendall(b"GET /ok HTTP/1.1\r\nHost: registry.test\r\n\r\n")
                assert extra.recv(100) == b""
            wait_for(lambda: handle.stats["refused_per_ip"] == 1, "the third is refused")
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: handle.stats["open"] == 0, "both held slots are freed on close")
        normal_request(handle, False, False, pki)
