"""``serve --config`` with ``[server.acme]`` against Debian's pebble (started by the test, a
loopback DNS answering for the tenant's domain): the HTTP-01 listener answers the challenge, the
certificate is issued into the store, and a TLS client sending the tenant's domain as SNI gets
that certificate, verified against pebble's root and answered by the tenant."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from _haproxy import free_port
from _pebble import start_pebble

DOMAIN = "pypi.acme.test"
CONFIG = """\
version = 2

[server]
host = "127.0.0.1"
port = {port}
tls = "self-signed"
http3 = false
certificates = "{certs}"

[server.acme]
directory_url = "{directory}"
email = "ops@acme.test"
ca_bundle = "{ca_bundle}"
http_port = {http_port}

[storage]
directory = "{root}"

[tenants.acme]
public = true
domains = ["{domain}"]
"""


def _get(port: int, cafile: str) -> bytes:
    ctx = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
    return reply


def test_serve_gets_and_serves_the_tenant_domain_certificate(tmp_path):
    http_port, port = free_port(), free_port()
    pebble = start_pebble(tmp_path / "pebble", http_port=http_port, domains=[DOMAIN])
    proc = None
    try:
        config = tmp_path / "registry.toml"
        config.write_text(
            CONFIG.format(
                port=port,
                certs=tmp_path / "certs",
                directory=pebble.directory_url,
                ca_bundle=pebble.ca_bundle,
                http_port=http_port,
                root=tmp_path / "root",
                domain=DOMAIN,
            )
        )
        stderr = tmp_path / "stderr.txt"
        with open(stderr, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "registry_core.cli", "serve", "--config", str(config)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        up = threading.Event()

        def read() -> None:
            assert proc is not None and proc.stdout is not None
            for line in proc.stdout:
                if "serving on" in line:
                    up.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not up.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not start: {stderr.read_text()[-3000:]}")
        root = tmp_path / "pebble-root.pem"
        root.write_bytes(pebble.root_pem())
        deadline = time.monotonic() + 90  # issuance: an order, a challenge, finalize
        while not (tmp_path / "certs").exists() or "certificates issued" not in stderr.read_text():
            assert proc.poll() is None, stderr.read_text()[-3000:]
            assert time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(0.05)
        reply = _get(port, str(root))  # verified against pebble's root, for the tenant's name
        assert reply.startswith(b"HTTP/1.1 ") and b"acme" in reply
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        pebble.stop()
