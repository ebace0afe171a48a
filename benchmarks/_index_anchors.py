"""The servers bench_index.py compares, each started as its own process on loopback.

- :class:`ByteRelay`: a TCP relay that counts the bytes it carries in each direction. Every
  "upstream link" of the benchmark goes through one, so pypiserver, devpi-server and our proxy
  are measured the same way (bytes on the wire, headers included).
- :func:`start_pypiserver`: pypiserver serving a directory (the plain local index, the anchor).
- :func:`start_devpi`: devpi-server with one mirror index whose ``mirror_url`` is the given
  simple URL (the caching proxy users pick today); set up through devpi's REST API.
- :func:`start_child`: one of our servers (``index`` or ``proxy``) run by ``bench_index.py
  --child ...`` in a separate process, so its CPU is its own and it does not share the GIL
  with the harness.
- :func:`proc_cpu`: user+system CPU seconds of a process (and its reaped children) from /proc.

Only the standard library (and httpx for the REST calls) is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port that was free a moment ago (the child binds it; a race is unlikely here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its waited-for children (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


class ByteRelay:
    """Relay 127.0.0.1:<port> to ``target``, counting bytes: ``down`` (target to client), ``up``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._srv.getsockname()[1]
        self._lock = threading.Lock()
        self.down = 0
        self.up = 0
        self.connections = 0
        self._socks: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def total(self) -> int:
        with self._lock:
            return self.down + self.up

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.down, self.up

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._socks.update((client, server))
                self.connections += 1
            pair = [client, server, 0]  # the second pump of a pair to finish closes both
            for src, dst, down in ((server, client, True), (client, server, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, down, pair), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool, pair: list) -> None:
        buf = bytearray(256 << 10)
        view = memoryview(buf)
        try:
            while True:
                n = src.recv_into(buf)
                if not n:
                    break
                dst.sendall(view[:n])
                with self._lock:
                    if down:
                        self.down += n
                    else:
                        self.up += n
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with self._lock:
                pair[2] += 1
                last = pair[2] == 2
                if last:
                    self._socks.difference_update(pair[:2])
            if last:
                for s in pair[:2]:
                    s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks)
            self._socks.clear()
        with contextlib.suppress(OSError):
            self._srv.shutdown(socket.SHUT_RDWR)
        self._srv.close()
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(timeout=5)


class Proc:
    """A server process: ``url``, ``pid``, ``cpu()``, ``stop()``; log kept under ``log``."""

    def __init__(self, name: str, popen: subprocess.Popen, url: str, log: Path) -> None:
        self.name, self.popen, self.url, self.log = name, popen, url, log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return proc_cpu(self.popen.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http(proc: Proc, path: str = "/", deadline_s: float = 60.0) -> None:
    """Poll ``proc.url + path`` until it answers (any status) or the process dies."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            httpx.get(proc.url + path, timeout=2.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # startup poll only; nothing is measured here
    proc.stop()
    raise RuntimeError(f"{proc.name} did not answer within {deadline_s:.0f} s:\n{proc.tail()}")


def _popen(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)


def start_pypiserver(root: Path, log: Path) -> Proc:
    """pypiserver on loopback serving ``root`` (no auth, no fallback to pypi.org)."""
    exe = shutil.which("pypi-server", path=str(BIN)) or "pypi-server"
    port = free_port()
    cmd = [exe, "run", "-p", str(port), "-i", "127.0.0.1", "-a", ".", "-P", "."]
    cmd += ["--disable-fallback", "--hash-algo", "sha256", str(root)]
    proc = Proc("pypiserver", _popen(cmd, log), f"http://127.0.0.1:{port}", log)
    wait_http(proc, "/health")
    return proc


def start_devpi(serverdir: Path, mirror_url: str, log: Path) -> tuple[Proc, str]:
    """devpi-server with index ``root/up`` mirroring ``mirror_url``; returns (proc, simple URL)."""
    init = shutil.which("devpi-init", path=str(BIN))
    server = shutil.which("devpi-server", path=str(BIN))
    if not init or not server:
        raise RuntimeError("devpi-server is not installed: .venv/bin/pip install devpi-server")
    password = os.urandom(12).hex()  # local throwaway root password, never printed
    subprocess.run(
        [init, "--serverdir", str(serverdir), "--no-root-pypi", "--root-passwd", password],
        check=True,
        capture_output=True,
    )
    port = free_port()
    cmd = [server, "--serverdir", str(serverdir), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--request-timeout", "60"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = Proc("devpi-server", _popen(cmd, log, env=env), f"http://127.0.0.1:{port}", log)
    wait_http(proc, "/+api")
    r = httpx.put(
        f"{proc.url}/root/up",
        json={"type": "mirror", "mirror_url": mirror_url, "volatile": False},
        auth=("root", password),
        headers={"Accept": "application/json"},
        timeout=30,
    )
    if r.status_code != 200:
        proc.stop()
        raise RuntimeError(f"devpi: creating the mirror index failed: {r.status_code} {r.text}")
    return proc, f"{proc.url}/root/up/+simple/"


def start_child(role: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Run ``bench_index.py --child ROLE ARGS``; it prints one JSON line with its URL when up.

    The child keeps its stdin open as a control channel (one command per line, one JSON reply
    per line): see ``bench_index.child_main``.
    """
    script = Path(__file__).resolve().parent / "bench_index.py"
    cmd = [sys.executable, str(script), "--child", role, *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    errlog = open(log, "wb")  # noqa: SIM115 (kept open for the child's lifetime)
    popen = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, env=env
    )
    errlog.close()
    proc = Proc(role, popen, "", log)
    hello = child_call(proc, None, timeout_s=120)
    proc.url = hello["url"]
    proc.info = hello  # type: ignore[attr-defined]
    return proc


def child_call(proc: Proc, command: str | None, timeout_s: float = 600) -> dict:
    """Send ``command`` (None: just read the greeting) and return the child's JSON reply."""
    assert proc.popen.stdin is not None and proc.popen.stdout is not None
    if command is not None:
        proc.popen.stdin.write((command + "\n").encode())
        proc.popen.stdin.flush()
    result: list[bytes] = []
    reader = threading.Thread(
        target=lambda: result.append(proc.popen.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    reader.join(timeout_s)
    if not result or not result[0]:
        raise RuntimeError(f"{proc.name}: no reply to {command!r}:\n{proc.tail()}")
    reply = json.loads(result[0])
    if "error" in reply:
        raise RuntimeError(f"{proc.name}: {command!r} failed: {reply['error']}\n{proc.tail()}")
    return reply
