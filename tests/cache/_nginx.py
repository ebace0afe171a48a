"""A real nginx on a free loopback port, in a temp dir, configured as the Bazel docs configure
an nginx remote cache (WebDAV ``PUT``, ``create_full_put_path``, ``client_max_body_size``).

Used by ``tests/cache/test_bazel_tier.py`` and ``benchmarks/bench_cache.py``. nginx runs as the
current user in the foreground (``daemon off;``, one worker) with its own configuration, pid
file, temp paths and logs under the work dir (``-p`` prefix, ``-e`` error log), so nothing in
/etc or /var is touched. The cache lives under ``<workdir>/root/cache/`` and is served at
``http://127.0.0.1:<port>/cache/``; ``blob_path()`` names the file nginx stores for a URL path,
so a test can tamper with it.

Tests skip (with the reason) only when the nginx binary is absent and ``CI`` is not ``true``;
on CI a missing binary fails them. A present nginx that fails to start is a test error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

_CONF = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port}{ssl};
        server_name localhost;{certs}
        # As in Bazel's "Remote Caching" docs: nginx with its WebDAV module.
        location /cache/ {{
            root {work}/root;
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size {max_body};
            dav_access user:rw;
            allow all;
            log_not_found off;  # a miss is the normal answer, not an error worth a line
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_nginx() -> str:
    """The nginx binary; skip (or fail when CI=true) when it is not installed."""
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed, and CI=true: apt-get install -y nginx")
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    return NGINX


class NginxServer:
    """One nginx process; ``url`` is the cache's base URL, ``stop()`` takes it down."""

    def __init__(self, workdir: Path, *, max_body: str = "1G", tls: bool = False) -> None:
        """``tls=True``: https with a certificate from a test CA (``ca_pem`` names it)."""
        binary = require_nginx()
        self.work = Path(workdir)
        self.root = self.work / "root"
        (self.root / "cache").mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.work / sub).mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/cache"
        self.ca_pem: Path | None = None
        ssl = certs = ""
        if tls:
            import trustme

            ca = trustme.CA()
            self.ca_pem = self.work / "ca.pem"
            ca.cert_pem.write_to_path(str(self.ca_pem))
            pem = self.work / "server.pem"
            ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
                str(pem)
            )
            ssl = " ssl"
            certs = f"\n        ssl_certificate {pem};\n        ssl_certificate_key {pem};"
        self.conf = self.work / "nginx.conf"
        # Run as root, nginx's workers would switch to "nobody" and lose the temp dir: keep
        # the current user (a non-root nginx never switches, and must not be told to).
        user = "user root root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
        self.conf.write_text(
            _CONF.format(
                user=user,
                work=self.work,
                port=self.port,
                max_body=max_body,
                ssl=ssl,
                certs=certs,
            )
        )
        self.log = self.work / "error.log"
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.work), "-c", str(self.conf), "-e", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if tls:
                        return  # listening (the TLS handshake is the tests' business)
                    s.sendall(b"HEAD /cache/cas/ready HTTP/1.0\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1."):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"nginx did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def blob_path(self, url_path: str) -> Path:
        """The file nginx keeps for ``url_path`` under the cache (``"ac/<key>"``, ``"cas/..."``)."""
        return self.root / "cache" / url_path

    def stop(self) -> None:
        """Stop nginx (SIGTERM: a fast shutdown) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
