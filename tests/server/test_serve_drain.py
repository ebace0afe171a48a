"""ServerHandle.drain: a graceful stop for rolling restarts behind a load balancer.

A real in-flight request (an application that waits on an event the test sets) finishes with
its whole answer while the server refuses new connections and closes idle keep-alive ones;
a request still running when the drain deadline passes is reset and the server stops anyway.
Real sockets on loopback; every wait is on an event or a blocking read with a timeout.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.server import start_server

TIMEOUT = 20.0  # generous bound for blocking calls on a loaded 2-core machine


class SlowApp:
    """``/fast``: answers at once. ``/slow``: tells ``started``, waits for ``release``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            self.started.set()
            await asyncio.to_thread(self.release.wait, TIMEOUT)
            body = b"slow answer " * 1000
        else:
            body = b"fast"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _get(port: int, path: str, result: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        result["status"] = response.status
        result["body"] = response.read()
    except Exception as exc:  # reported to the test
        result["error"] = exc
    finally:
        conn.close()


def test_drain_finishes_in_flight_request_and_refuses_new_connections() -> None:
    app = SlowApp()
    handle = start_server(app, tls=False)
    try:
        # An idle keep-alive connection: the drain must close it.
        idle = socket.create_connection(("127.0.0.1", handle.port), timeout=TIMEOUT)
        idle.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while not head.endswith(b"fast"):
            chunk = idle.recv(4096)
            assert chunk, "the server closed a keep-alive connection before the drain"
            head += chunk

        slow: dict = {}
        client = threading.Thread(target=_get, args=(handle.port, "/slow", slow))
        client.start()
        assert app.started.wait(TIMEOUT), "the slow request never reached the app"
        assert not handle.draining

        drainer = threading.Thread(target=handle.drain, args=(TIMEOUT,))
        drainer.start()
        # The idle connection is closed once the drain began; the listener closes before it.
        assert idle.recv(4096) == b""
        idle.close()
        assert handle.draining
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", handle.port), timeout=TIMEOUT).close()
        assert drainer.is_alive(), "drain returned while a request was still in flight"

        app.release.set()
        client.join(TIMEOUT)
        drainer.join(TIMEOUT)
        assert not drainer.is_alive()
        assert slow.get("error") is None, slow
        assert slow["status"] == 200
        assert slow["body"] == b"slow answer " * 1000
        assert not handle._thread.is_alive()
        handle.drain(1.0)  # again: nothing left to do
    finally:
        app.release.set()
        handle.stop()


def test_drain_deadline_resets_what_still_runs() -> None:
    app = SlowApp()
    handle = start_server(app, tls=False)
    try:
        slow: dict = {}
        client = threading.Thread(target=_get, args=(handle.port, "/slow", slow))
        client.start()
        assert app.started.wait(TIMEOUT)
        handle.drain(0.05)  # the app waits for release, which never comes in time
        assert not handle._thread.is_alive()
        client.join(TIMEOUT)
        assert "status" not in slow
        assert isinstance(slow.get("error"), (ConnectionError, http.client.HTTPException))
    finally:
        app.release.set()
        handle.stop()


def test_drain_over_tls_client_gets_its_answer() -> None:
    """TLS (HTTP/1.1 over TLS from http.client): the same graceful path."""
    app = SlowApp()
    handle = start_server(app, quic=False)
    try:
        ctx = ssl.create_default_context(cafile=handle.certfile)
        conn = http.client.HTTPSConnection("localhost", handle.port, context=ctx, timeout=TIMEOUT)
        result: dict = {}

        def fetch() -> None:
            try:
                conn.request("GET", "/slow")
                response = conn.getresponse()
                result["status"], result["body"] = response.status, response.read()
            except Exception as exc:
                result["error"] = exc

        client = threading.Thread(target=fetch)
        client.start()
        assert app.started.wait(TIMEOUT)
        drainer = threading.Thread(target=handle.drain, args=(TIMEOUT,))
        drainer.start()
        app.release.set()
        client.join(TIMEOUT)
        conn.close()  # the client takes the server's close_notify by closing
        drainer.join(TIMEOUT)
        assert result.get("status") == 200, result
        assert len(result["body"]) == 12_000
        assert not handle._thread.is_alive()
    finally:
        app.release.set()
        handle.stop()


@pytest.mark.parametrize("bad", [-1, float("inf"), "5", True])
def test_drain_timeout_checked(bad) -> None:
    handle = start_server(SlowApp(), tls=False)
    try:
        with pytest.raises(InvalidArgumentError, match="timeout_s"):
            handle.drain(bad)
        assert not handle.draining
    finally:
        handle.stop()


def test_drain_http3_in_flight_request_finishes_then_connection_closed() -> None:
    """HTTP/3: the request in flight gets its answer, then the server closes the QUIC
    connection itself (CONNECTION_CLOSE) instead of waiting for the client's idle timeout."""
    from aioquic.asyncio import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration

    app = SlowApp()
    handle = start_server(app, quic=True)

    class Client(QuicConnectionProtocol):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.status: int | None = None
            self.body = b""
            self.done = asyncio.Event()

        def quic_event_received(self, event) -> None:
            for e in self.h3.handle_event(event):
                if isinstance(e, HeadersReceived):
                    self.status = int(dict(e.headers)[b":status"])
                elif isinstance(e, DataReceived):
                    self.body += e.data
                if getattr(e, "stream_ended", False):
                    self.done.set()

    async def main() -> tuple[int | None, bytes, bool]:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
        config.load_verify_locations(handle.certfile)
        config.server_name = "localhost"
        config.idle_timeout = 600.0  # the close must come from the server's drain
        async with connect(
            "127.0.0.1", handle.port, configuration=config, create_protocol=Client
        ) as client:
            stream = client._quic.get_next_available_stream_id()
            client.h3.send_headers(
                stream,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", b"/slow"),
                ],
                end_stream=True,
            )
            client.transmit()
            await asyncio.to_thread(app.started.wait, TIMEOUT)
            drainer = threading.Thread(target=handle.drain, args=(TIMEOUT,))
            drainer.start()
            app.release.set()
            await asyncio.wait_for(client.done.wait(), TIMEOUT)
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)  # closed by the server
            await asyncio.to_thread(drainer.join, TIMEOUT)
            return client.status, client.body, drainer.is_alive()

    try:
        status, body, still_draining = asyncio.run(main())
        assert status == 200 and body == b"slow answer " * 1000
        assert not still_draining and not handle._thread.is_alive()
    finally:
        app.release.set()
        handle.stop()


def test_drain_http2_in_flight_stream_finishes() -> None:
    """HTTP/2 (httpx over TLS): the stream in flight gets its whole answer during the drain."""
    import httpx

    app = SlowApp()
    handle = start_server(app, quic=False)
    result: dict = {}
    client = httpx.Client(http2=True, verify=ssl.create_default_context(cafile=handle.certfile))

    def fetch() -> None:
        try:
            response = client.get(handle.url("/slow", host="localhost"), timeout=TIMEOUT)
            result["version"], result["status"] = response.http_version, response.status_code
            result["body"] = response.content
        except Exception as exc:
            result["error"] = exc

    try:
        fetcher = threading.Thread(target=fetch)
        fetcher.start()
        assert app.started.wait(TIMEOUT)
        drainer = threading.Thread(target=handle.drain, args=(TIMEOUT,))
        drainer.start()
        app.release.set()
        fetcher.join(TIMEOUT)
        client.close()
        drainer.join(TIMEOUT)
        assert result.get("status") == 200, result
        assert result["version"] == "HTTP/2" and result["body"] == b"slow answer " * 1000
        assert not drainer.is_alive() and not handle._thread.is_alive()
    finally:
        app.release.set()
        client.close()
        handle.stop()
