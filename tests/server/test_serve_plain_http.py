"""``start_server(app, tls=False)``: plain HTTP/1.1 on TCP only, under the same limits.

A real RegistryApp on loopback, read with httpx and with a raw socket: ``url()`` says
``http://``, no Alt-Svc, no UDP listener, TLS arguments refused; the read timeout, the
per-IP cap and the request-head bound still hold. Waits are upper bounds for hangs.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time

import httpx
import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.server import RegistryApp, ServerLimits, serve, start_server

HANG = 30.0


def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=HANG)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (or HANG passes)."""
    out = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while chunk := s.recv(65536):
            out += chunk
    return out


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {HANG:g}s")
        time.sleep(0.02)


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "pkg").mkdir()
    data = b"plain http says hello\n" * 100
    (tmp_path / "pkg" / "hello.txt").write_bytes(data)
    return tmp_path, data


def test_plain_http_serves_with_httpx(tree):
    root, data = tree
    app = RegistryApp(root)
    with start_server(app, tls=False) as srv:
        assert srv.scheme == "http" and srv.certfile is None and srv.quic is False
        assert srv.url("/pkg/hello.txt") == f"http://127.0.0.1:{srv.port}/pkg/hello.txt"
        with httpx.Client() as client:
            r = client.get(srv.url("/pkg/hello.txt"), headers={"accept-encoding": "identity"})
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"
        assert r.content == data
        assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert "alt-svc" not in r.headers
        assert app.alt_svc is None  # nothing advertised HTTP/3
        # no UDP listener on the port
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", srv.port))  # free: the server bound TCP only
        finally:
            udp.close()


def test_plain_http_with_a_raw_socket(tree):
    root, data = tree
    with start_server(RegistryApp(root), tls=False) as srv:
        s = _raw(srv.port)
        s.sendall(b"GET /pkg/hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        reply = _read_all(s)
        s.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == data


def test_plain_http_read_timeout_still_applies(tree):
    root, _ = tree
    with start_server(RegistryApp(root), tls=False, limits=ServerLimits(read_timeout=0.5)) as srv:
        s = _raw(srv.port)
        s.sendall(b"GET /pkg/hello.txt HTTP/1.1\r\n")  # and never finish the head
        assert _read_all(s) == b""  # closed by the server, not by HANG
        s.close()
        _wait_for(lambda: srv.stats["read_timeouts"] == 1, "read timeout counted")


def test_plain_http_per_ip_cap_still_applies(tree):
    root, _ = tree
    limits = ServerLimits(max_connections_per_ip=1)
    with start_server(RegistryApp(root), tls=False, limits=limits) as srv:
        held = _raw(srv.port)
        held.sendall(b"GET /pkg/hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert held.recv(12) == b"HTTP/1.1 200"  # admitted and answered
        refused = _raw(srv.port)
        refused.sendall(b"GET /pkg/hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert _read_all(refused) == b""  # reset at accept
        refused.close()
        assert srv.stats["refused_per_ip"] == 1
        held.close()


def test_plain_http_oversized_head_is_refused(tree):
    root, _ = tree
    with start_server(RegistryApp(root), tls=False) as srv:
        s = _raw(srv.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000)  # never terminated
        reply = _read_all(s)
        s.close()
        assert reply.startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"certfile": "c.pem", "keyfile": "k.pem"},
        {"certfile": "c.pem"},
        {"names": ["localhost"]},
        {"quic": True},
        {"http2": False},
        {"tls": "no"},
    ],
)
def test_plain_http_refuses_tls_arguments(tree, kwargs):
    root, _ = tree
    kwargs = {"tls": False, **kwargs}
    with pytest.raises(InvalidArgumentError):
        start_server(RegistryApp(root), **kwargs)


def test_serve_plain_http_announces_http(tree):
    """``serve(tls=False)`` in a subprocess: its one line says http://, it answers there, and
    SIGTERM stops it."""
    import signal
    import subprocess
    import sys

    root, data = tree
    code = (
        "import sys; from registry_core.server import serve; "
        "serve(sys.argv[1], port=0, tls=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, (line, proc.stderr.read())
        assert "certificate" not in line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        with httpx.Client() as client:
            assert client.get(f"http://127.0.0.1:{port}/pkg/hello.txt").content == data
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(HANG)
        proc.stdout.close()
        proc.stderr.close()
    with pytest.raises(InvalidArgumentError):
        serve(root, tls=False, self_signed=True)


class _Big:
    """Streams 8 MiB in 64 KiB pieces (for the write timeout)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        piece, count = b"x" * (64 << 10), 128
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(piece) * count).encode())],
            }
        )
        for i in range(count):
            await send({"type": "http.response.body", "body": piece, "more_body": i < count - 1})


def test_plain_http_write_timeout_still_applies():
    limits = ServerLimits(write_timeout=0.5, read_timeout=None)
    with start_server(_Big(), tls=False, limits=limits) as srv:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(HANG)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")  # and never read
        _wait_for(
            lambda: srv.stats["write_timeouts"] >= 1 and srv.stats["open"] == 0,
            "unread connection aborted",
        )
        s.close()


def test_plain_http_h2c_prior_knowledge(tree):
    """Not required, but hypercorn speaks it: an HTTP/2 client without TLS is served too."""
    root, data = tree
    with start_server(RegistryApp(root), tls=False) as srv:
        with httpx.Client(http1=False, http2=True) as client:
            r = client.get(srv.url("/pkg/hello.txt"), headers={"accept-encoding": "identity"})
        assert r.http_version == "HTTP/2" and r.content == data


def test_plain_http_on_ipv6_loopback(tree):
    root, data = tree
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with start_server(RegistryApp(root), host="::1", tls=False) as srv:
        assert srv.url("/pkg/hello.txt").startswith("http://[::1]:")
        with httpx.Client() as client:
            assert client.get(srv.url("/pkg/hello.txt")).content == data
