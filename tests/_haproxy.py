"""Debian's haproxy in front of registry-core instances on loopback, started by the test.

``HAProxy(workdir, backends)`` writes a configuration (HTTP mode; health checks on ``/readyz``
every 100 ms, one failure -- or one refused connection of a real request -- takes a server
out and one success puts it back; ``retries 3``,
``option redispatch 1`` so every retry may go to another server, ``retry-on
all-retryable-errors`` so a request whose server refused the connection, reset it or closed it
before answering is sent again), runs haproxy in the foreground and logs one line per request
(with the retry count) to ``haproxy.log``. ``server_states()`` reads the stats socket;
``wait_state(name, "UP")`` waits (bounded) until haproxy sees a server so; ``requests()``
parses the log.

Tests skip (with the reason) only when the binary is absent and ``CI`` is not ``true``; on CI
a missing binary fails them. An haproxy that is present but fails to start is a test error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HAPROXY = os.environ.get("HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"

#: One log line per request: the fields :meth:`HAProxy.requests` reads, space separated.
_LOG_FORMAT = "RC %b/%s %ST %rc %tsc %Ta %{+Q}r"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require() -> None:
    """Skip (locally) or fail (CI=true) when haproxy is not installed."""
    if os.path.isfile(HAPROXY) and os.access(HAPROXY, os.X_OK):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"haproxy is not installed ({HAPROXY}), and CI=true: install haproxy")
    pytest.skip(f"haproxy is not installed ({HAPROXY}; apt-get install -y haproxy)")


@dataclass(frozen=True)
class LoggedRequest:
    """One request as haproxy logged it."""

    backend: str
    server: str
    status: int
    #: Retries haproxy made (a leading ``+`` in the log: redispatched to another server).
    retries: int
    redispatched: bool
    #: The termination state (``--`` for a normal end).
    termination: str
    request: str


class HAProxy:
    """One haproxy process balancing ``backends`` (name -> port on 127.0.0.1)."""

    def __init__(self, workdir: Path, backends: dict[str, int], *, check_path: str = "/readyz"):
        require()
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket_path = workdir / "haproxy.sock"
        self.log = workdir / "haproxy.log"
        self.config = workdir / "haproxy.cfg"
        servers = "\n".join(
            # observe layer4: the first refused connection takes a server out at once, not at
            # the next health check, so a killed instance gets no more new requests than were
            # being dispatched to it at that moment (each then retried on the other one)
            f"    server {name} 127.0.0.1:{port} check inter 100 fall 1 rise 1"
            " observe layer4 error-limit 1 on-error mark-down"
            for name, port in backends.items()
        )
        self.config.write_text(
            f"""\
global
    log stdout format raw local0
    stats socket {self.socket_path} mode 600 level admin
    maxconn 512

defaults
    mode http
    log global
    log-format "{_LOG_FORMAT}"
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors

frontend registry
    bind 127.0.0.1:{self.port}
    default_backend instances

backend instances
    balance roundrobin
    option httpchk GET {check_path}
    http-check expect status 200
{servers}
"""
        )
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration: {check.stderr.decode()}")
        self._log_file = open(self.log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(self.config)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                self.server_states()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        "haproxy did not start:\n" + self.log.read_text(errors="replace")
                    ) from None
                time.sleep(0.02)

    def command(self, line: str) -> str:
        """One command on the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """Server name -> its status as haproxy sees it (``UP``, ``DOWN``, ``UP 1/2``...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        px, sv, st = header.index("pxname"), header.index("svname"), header.index("status")
        out = {}
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) > st and fields[px] == "instances" and fields[sv] != "BACKEND":
                out[fields[sv]] = fields[st]
        return out

    def wait_state(self, name: str, state: str, *, timeout: float = 30.0) -> None:
        """Wait until haproxy reports server ``name`` in ``state`` (polling the socket)."""
        deadline = time.monotonic() + timeout
        while (got := self.server_states().get(name)) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy: server {name} is {got!r}, not {state!r}")
            time.sleep(0.02)

    def requests(self) -> list[LoggedRequest]:
        """Every request logged so far."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("RC "):
                continue
            parts = line.split(" ", 6)
            backend, _, server = parts[1].partition("/")
            retries = parts[3]
            out.append(
                LoggedRequest(
                    backend=backend,
                    server=server,
                    status=int(parts[2]) if parts[2].lstrip("-").isdigit() else -1,
                    retries=int(retries.lstrip("+")),
                    redispatched=retries.startswith("+"),
                    termination=parts[4],
                    request=parts[6].strip('"'),
                )
            )
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
