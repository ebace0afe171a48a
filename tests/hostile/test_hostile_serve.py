"""R9 at the process level: what one client can hold on the server is bounded.

Each test builds the hostile client in the test (raw TLS sockets, a raw HTTP/2 connection) and
runs it against a real hypercorn server on loopback: slow request heads and bodies are closed
after the read timeout, connections beyond the caps are reset, a client that never reads
(HTTP/1.1 with a full socket, HTTP/2 with a closed flow-control window) is aborted after the
write timeout, and 8 such clients on a 32 MiB file do not pin the server's memory (its peak RSS
from /proc, with a measured allowance). Waits are upper bounds for hangs, never durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry_core.server import ServerLimits, start_server

pytestmark = pytest.mark.network

HANG = 30.0  # upper bound for anything that should happen after a 1-2 s timeout


def _wait_for(condition, what: str, bound: float = HANG) -> None:
    """Poll ``condition`` until true; fails after ``bound`` seconds (a hang, not a duration)."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {bound:g}s")
        time.sleep(0.02)


class _App:
    """A small real ASGI app: reads the whole request body, then answers.

    ``/big``: 8 MiB in 64 KiB pieces; ``/slow``: answers after ``compute`` seconds of work
    (the server must not count them as client silence).
    """

    def __init__(self, compute: float = 0.0) -> None:
        self.compute = compute
        self.bodies: list[int] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            size += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        self.bodies.append(size)
        if scope["path"] == "/slow":
            await asyncio.sleep(self.compute)  # the application's work, not a synchronisation
        piece, count = b"x" * (64 << 10), (128 if scope["path"] == "/big" else 1)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(piece) * count).encode())],
            }
        )
        for i in range(count):
            await send({"type": "http.response.body", "body": piece, "more_body": i < count - 1})


def _tls(
    port: int, alpn: str = "http/1.1", source: str | None = None, rcvbuf: int | None = None
) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    raw = socket.socket()
    try:
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            raw.bind((source, 0))
        raw.settimeout(HANG)
        raw.connect(("127.0.0.1", port))
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()  # a refused handshake must not leak the socket
        raise


def _closed_by_server(sock: ssl.SSLSocket) -> bool:
    """Reads until the server closes (True) or HANG passes (False)."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _server(app, **limits):
    return start_server(app, quic=False, limits=ServerLimits(**limits))


def test_slow_request_head_is_closed_after_the_read_timeout(cache):
    with _server(_App(), read_timeout=1.0) as srv:
        s = _tls(srv.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")  # and nothing more
        assert _closed_by_server(s)
        s.close()
        assert srv.stats["read_timeouts"] == 1


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_slow_request_body_is_closed_after_the_read_timeout(cache, method):
    app = _App()
    with _server(app, read_timeout=1.0) as srv:
        s = _tls(srv.port)
        s.sendall(
            f"{method} /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"y" * 10
        )
        assert _closed_by_server(s)
        s.close()
        assert srv.stats["read_timeouts"] == 1
        assert app.bodies == []  # the app never got a complete body


def test_application_compute_time_is_not_client_silence(cache):
    """A response that takes 2.5 read timeouts to compute is still delivered."""
    with _server(_App(compute=2.5), read_timeout=1.0) as srv:
        s = _tls(srv.port)
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"x" * 100)
        assert srv.stats["read_timeouts"] == 0


def _handshake_refused(port: int, source: str | None = None) -> bool:
    try:
        s = _tls(port, source=source)
    except (ConnectionError, ssl.SSLError, OSError):
        return True
    try:  # TLS 1.3: the handshake may complete client-side before the reset is seen
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        return s.recv(1) == b""
    except (ConnectionError, ssl.SSLError, OSError):
        return True
    finally:
        s.close()


def _admitted(s: ssl.SSLSocket) -> bool:
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    return s.recv(12) == b"HTTP/1.1 200"


def test_connections_beyond_the_per_ip_cap_are_refused(cache):
    with _server(_App(), max_connections_per_ip=2) as srv:
        held = [_tls(srv.port), _tls(srv.port)]
        assert all(_admitted(s) for s in held)
        assert _handshake_refused(srv.port)
        assert srv.stats["refused_per_ip"] == 1
        other = _tls(srv.port, source="127.0.0.2")  # another address has its own budget
        assert _admitted(other)
        other.close()
        held.pop().close()
        _wait_for(lambda: srv.stats["open"] == 1, "closed connection released")
        again = _tls(srv.port)
        assert _admitted(again)
        again.close()
        for s in held:
            s.close()


def test_connections_beyond_the_total_cap_are_refused(cache):
    with _server(_App(), max_connections=2) as srv:
        held = [_tls(srv.port), _tls(srv.port, source="127.0.0.3")]
        assert all(_admitted(s) for s in held)
        assert _handshake_refused(srv.port, source="127.0.0.4")
        assert srv.stats["refused_total"] == 1
        for s in held:
            s.close()


def test_http1_client_that_never_reads_is_aborted(cache):
    with _server(_App(), write_timeout=1.0, read_timeout=None) as srv:
        s = _tls(srv.port, rcvbuf=4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")  # and never read
        _wait_for(
            lambda: srv.stats["write_timeouts"] >= 1 and srv.stats["open"] == 0,
            "unread connection aborted",
        )
        s.close()


def test_http2_client_that_never_opens_its_window_is_aborted(cache):
    import h2.config
    import h2.connection
    import h2.settings

    with _server(_App(), write_timeout=1.0, read_timeout=None) as srv:
        s = _tls(srv.port, alpn="h2")
        assert s.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        conn.send_headers(
            1,
            [(":method", "GET"), (":path", "/big"), (":scheme", "https"), (":authority", "a")],
            end_stream=True,
        )
        s.sendall(conn.data_to_send())
        # The client keeps reading frames (so TCP is not what blocks) but never sends a
        # WINDOW_UPDATE: the response cannot progress.
        assert _closed_by_server(s)
        s.close()
        assert srv.stats["write_timeouts"] >= 1


# -- memory: a subprocess server, measured from /proc ------------------------------------------


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _hung_up(socks: list[socket.socket]) -> bool:
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    return len(
        [
            fd
            for fd, ev in poller.poll(0)
            if ev & (select.POLLERR | select.POLLHUP | select.POLLRDHUP)
        ]
    ) == len(socks)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_clients_that_never_read_do_not_pin_server_memory(tmp_path):
    """8 clients ask for a 32 MiB file and never read: the server's peak RSS grows by less
    than 40 MiB (one copy of the file would be 32; eight copies, the old behaviour, 256), and
    the server drops them after the write timeout."""
    www = tmp_path / "www"
    (www / "big").mkdir(parents=True)
    big = os.urandom(32 << 20)
    (www / "big" / "blob-1.0.bin").write_bytes(big)
    (www / "small.txt").write_bytes(b"ok\n")
    listing = sorted(p.relative_to(www) for p in www.rglob("*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_CORE_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "registry_core.cli",
            "serve",
            str(www),
            "--self-signed",
            "--port",
            "0",
            "--no-http3",
            "--write-timeout",
            "2",
            "--read-timeout",
            "off",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "serving on" in line, proc.stderr.read()
        port = int(line.split("https://127.0.0.1:")[1].split("/")[0])
        warm = _tls(port)  # warm up the code paths (imports, TLS, a response)
        warm.sendall(b"GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert _closed_by_server(warm)
        warm.close()
        base = _status(proc.pid, "VmHWM")
        attackers = []
        for _ in range(8):
            s = _tls(port, rcvbuf=4096)
            s.sendall(b"GET /big/blob-1.0.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            attackers.append(s)
        _wait_for(lambda: _hung_up(attackers), "unread connections dropped by the server")
        peak = _status(proc.pid, "VmHWM")
        for s in attackers:
            s.close()
        # Still serving, to a client that reads.
        ok = _tls(port)
        ok.sendall(b"GET /small.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := ok.recv(65536):
            reply += chunk
        ok.close()
        assert reply.endswith(b"ok\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=HANG)
        proc.stdout.close()
        proc.stderr.close()
    grown = peak - base
    print(
        f"server peak RSS {base / 2**20:.1f} MiB -> {peak / 2**20:.1f} MiB "
        f"(+{grown / 2**20:.1f} MiB) for 8 unread 32 MiB downloads"
    )
    assert grown < 40 << 20
    # nothing written but the index's private state (serve DIR keeps its database there)
    served = sorted(
        p.relative_to(www)
        for p in www.rglob("*")
        if ".registry-core" not in p.relative_to(www).parts
    )
    assert served == listing


def test_oversized_incomplete_request_head_is_refused(cache):
    """Pins the configured h11 bound (hypercorn's default too: this passes before and after)."""
    with _server(_App()) as srv:
        s = _tls(srv.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000)  # never terminated
        reply = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := s.recv(65536):
                reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 431")


async def _quic_connect(
    port: int, hold: asyncio.Event | None = None, connected: asyncio.Event | None = None
) -> bool:
    """True when a QUIC handshake with the server completes (within a 3 s idle timeout)."""
    from aioquic.asyncio import QuicConnectionProtocol, connect
    from aioquic.quic.configuration import QuicConfiguration

    class _HandshakeOnly(QuicConnectionProtocol):
        def quic_event_received(self, event) -> None:
            pass  # no stream objects for the server's HTTP/3 control streams

    cfg = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE, idle_timeout=3.0
    )
    try:
        async with connect(
            "127.0.0.1",
            port,
            configuration=cfg,
            wait_connected=True,
            create_protocol=_HandshakeOnly,
        ):
            if connected is not None:
                connected.set()
            if hold is not None:
                await hold.wait()
            return True
    except ConnectionError:
        return False


def test_quic_connections_beyond_the_cap_are_dropped(cache):
    with start_server(_App(), limits=ServerLimits(max_quic_connections=1)) as srv:

        async def main() -> tuple[bool, bool, int]:
            hold, connected = asyncio.Event(), asyncio.Event()
            first = asyncio.create_task(_quic_connect(srv.port, hold, connected))
            await asyncio.wait_for(connected.wait(), HANG)
            deadline = time.monotonic() + HANG
            while srv.stats["quic_refused"] == 0:  # a second client, until the cap shows
                assert not await _quic_connect(srv.port)
                assert time.monotonic() < deadline, "second QUIC connection never refused"
            refused = srv.stats["quic_refused"]
            hold.set()
            admitted_first = await first
            # Once the first is closed its slot is free again (bounded retries).
            while not await _quic_connect(srv.port):
                assert time.monotonic() < deadline, "slot never freed"
            return admitted_first, True, refused

        admitted_first, admitted_later, refused = asyncio.run(main())
        assert admitted_first and admitted_later and refused >= 1
