"""`registry-core serve` start-up, run as a user runs it (a subprocess): a certificate, port or
address that cannot be used ends in ONE line on stderr and a non-zero exit, "serving on" is
printed only once the server answers TLS with its certificate, a missing ``[server]`` extra is
named, and the flags are read once where serve starts (Alt-Svc follows QUIC_TRANSPORT)."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.network

HINT = "registry-core serve needs the server extra: pip install 'registry-core[server]'"


@pytest.fixture
def env(tmp_path):
    """A hermetic environment: own cache folder (self-signed certs), no flag sources."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_CORE_")}
    e["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return e


@pytest.fixture
def www(tmp_path):
    d = tmp_path / "www"
    (d / "simple" / "pkg").mkdir(parents=True)
    (d / "simple" / "pkg" / "hello.txt").write_bytes(b"hello registry\n")
    return d


def _serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "registry_core.cli", "serve", *args]


def _fails_with_one_line(cmd, env, cwd) -> str:
    """Runs ``cmd``; asserts it exits non-zero within an upper bound, printing one stderr line
    and never "serving on"; returns that line."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "serving on" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _write_pair(tmp_path, name: str = "a", host: str = "127.0.0.1"):
    from registry_core.server._serve import make_self_signed

    d = tmp_path / name
    d.mkdir()
    return make_self_signed([host], d)


def test_missing_certificate_fails_before_serving(tmp_path, env, www):
    line = _fails_with_one_line(
        _serve_cmd(
            str(www),
            "--certfile",
            str(tmp_path / "nope.pem"),
            "--keyfile",
            str(tmp_path / "nope-key.pem"),
            "--port",
            "0",
        ),
        env,
        tmp_path,
    )
    assert "nope.pem" in line and "no such file" in line


def test_garbage_certificate_fails_before_serving(tmp_path, env, www):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    _, key = _write_pair(tmp_path)
    line = _fails_with_one_line(
        _serve_cmd(str(www), "--certfile", str(bad), "--keyfile", key, "--port", "0"), env, tmp_path
    )
    assert "bad.pem" in line and "no PEM certificate" in line


def test_key_of_another_certificate_fails_before_serving(tmp_path, env, www):
    cert, _ = _write_pair(tmp_path, "a")
    _, other_key = _write_pair(tmp_path, "b")
    line = _fails_with_one_line(
        _serve_cmd(str(www), "--certfile", cert, "--keyfile", other_key, "--port", "0"),
        env,
        tmp_path,
    )
    assert "does not belong to the certificate" in line


def test_encrypted_key_fails_instead_of_prompting(tmp_path, env, www):
    from cryptography.hazmat.primitives import serialization

    cert, key = _write_pair(tmp_path)
    pkey = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    enc = tmp_path / "enc.pem"
    enc.write_bytes(
        pkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    line = _fails_with_one_line(
        _serve_cmd(str(www), "--certfile", cert, "--keyfile", str(enc), "--port", "0"),
        env,
        tmp_path,
    )
    assert "encrypted" in line


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_port_out_of_range_is_one_line(tmp_path, env, www, port):
    line = _fails_with_one_line(
        _serve_cmd(str(www), "--self-signed", "--port", port), env, tmp_path
    )
    assert "port must be" in line and port in line


def test_tcp_address_in_use_names_tcp_and_the_address(tmp_path, env, www):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = _fails_with_one_line(
            _serve_cmd(str(www), "--self-signed", "--port", str(port)), env, tmp_path
        )
    assert f"TCP 127.0.0.1:{port}" in line and "in use" in line


def test_udp_address_in_use_names_udp_and_the_address(tmp_path, env, www):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        line = _fails_with_one_line(
            _serve_cmd(str(www), "--self-signed", "--port", str(port)), env, tmp_path
        )
    assert f"UDP 127.0.0.1:{port}" in line and "in use" in line


def test_missing_server_extra_is_named(tmp_path, env, www):
    code = (
        "import sys; sys.modules['hypercorn'] = None\n"
        "from registry_core.cli import main\n"
        f"sys.exit(main(['serve', {str(www)!r}, '--self-signed', '--port', '0']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and HINT in lines[0], proc.stderr
    assert "serving on" not in proc.stdout


class _Server:
    """``registry-core serve`` in a subprocess; the port is parsed from its "serving on" line."""

    def __init__(self, args, env, cwd):
        self.proc = subprocess.Popen(
            _serve_cmd(*args),
            env=env,
            cwd=cwd,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.line = self.proc.stdout.readline()  # blocks until printed (or the process ends)
        assert "serving on" in self.line, (self.line, self.proc.stderr.read())
        self.port = int(self.line.split("https://127.0.0.1:")[1].split("/")[0])
        self.certfile = self.line.rsplit("certificate ", 1)[1].strip()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


def _tls_get(port: int, cafile: str, path: str) -> bytes:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_serving_on_is_printed_once_tls_answers(tmp_path, env, www):
    srv = _Server([str(www), "--self-signed", "--port", "0"], env, tmp_path)
    try:
        # No retry: the line is the ready signal, so the first connection must succeed.
        reply = _tls_get(srv.port, srv.certfile, "/simple/pkg/hello.txt")
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello registry\n")
    finally:
        assert srv.stop() == 0


def _alt_svc(reply: bytes) -> str | None:
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower().splitlines()
    return next((h.split(":", 1)[1].strip() for h in head if h.startswith("alt-svc:")), None)


@pytest.mark.parametrize("quic", ["on", "off"])
def test_flags_are_read_where_serve_starts(tmp_path, env, www, quic):
    env["REGISTRY_CORE_FLAGS"] = f"QUIC_TRANSPORT={quic}"
    srv = _Server([str(www), "--self-signed", "--port", "0"], env, tmp_path)
    try:
        alt = _alt_svc(_tls_get(srv.port, srv.certfile, "/simple/pkg/hello.txt"))
    finally:
        srv.stop()
    if quic == "on":
        assert alt == f'h3=":{srv.port}"; ma=3600'
    else:
        assert alt is None


def test_project_file_flags_reach_the_server(tmp_path, env, www):
    """The nearest pyproject.toml is read by serve (the edge), not by the library."""
    (tmp_path / "pyproject.toml").write_text('[tool.registry-core.flags]\nQUIC_TRANSPORT = "on"\n')
    srv = _Server([str(www), "--self-signed", "--port", "0"], env, tmp_path)
    try:
        alt = _alt_svc(_tls_get(srv.port, srv.certfile, "/simple/pkg/hello.txt"))
    finally:
        srv.stop()
    assert alt == f'h3=":{srv.port}"; ma=3600'


def test_cli_defaults_are_server_limits_defaults():
    from registry_core.cli._serve import DEFAULTS
    from registry_core.server import ServerLimits

    limits = ServerLimits()
    assert {k: getattr(limits, k) for k in DEFAULTS} == DEFAULTS
