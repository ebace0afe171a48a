"""Real clients through the proxy: pip and uv install release N, then upgrade to N+1, from
``http://127.0.0.1:PORT/simple/`` (the proxy on loopback, plain HTTP) in front of our index
over TLS. The upgrade's wheel crosses from the upstream as a delta."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest
from _proxy_support import PROJECT

from _packages import BIN, client_env, run, tool
from registry_core.proxy import ProxyApp, start_proxy

MODULE = PROJECT.replace("-", "_")


@pytest.fixture
def proxy(upstream, tmp_path):
    app = ProxyApp(upstream.base, tmp_path / "cache", verify=upstream.ca)
    handle = start_proxy(app, port=0)
    handle.proxy = app
    handle.index = handle.url("/simple/")
    yield handle
    handle.stop()


def _version(target) -> str:
    text = (target / MODULE / "__init__.py").read_text()
    return next(ln for ln in text.splitlines() if ln.startswith("VERSION"))


def test_pip_install_then_upgrade(proxy, tmp_path):
    assert proxy.index.startswith("http://127.0.0.1:")
    target = tmp_path / "site"
    pip = [tool("pip"), "install", "--index-url", proxy.index, "--only-binary", ":all:"]
    run([*pip, "--target", str(target), f"{PROJECT}==1.0"], env=client_env())
    assert _version(target) == "VERSION = '1.0'"
    before = proxy.proxy.stats
    run([*pip, "--upgrade", "--target", str(target), f"{PROJECT}==1.1"], env=client_env())
    assert _version(target) == "VERSION = '1.1'"
    after = proxy.proxy.stats
    assert before.deltas == 0 and after.deltas == 1, after
    assert after.corrupt_refused == 0


def test_uv_install_then_upgrade(proxy, tmp_path):
    target = tmp_path / "site"
    uv = [tool("uv"), "pip", "install", "--index-url", proxy.index, "--no-build"]
    env = client_env()
    run([*uv, "--target", str(target), f"{PROJECT}==1.0"], env=env)
    assert _version(target) == "VERSION = '1.0'"
    run([*uv, "--upgrade", "--target", str(target), f"{PROJECT}==1.1"], env=env)
    assert _version(target) == "VERSION = '1.1'"
    assert proxy.proxy.stats.deltas == 1, proxy.proxy.stats


def test_run_proxy_in_the_foreground(upstream, tmp_path):
    """run_proxy (what ``registry-core proxy`` calls) announces its URL, serves, and stops on
    SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import sys; from registry_core.proxy import run_proxy; "
        "run_proxy(sys.argv[1], sys.argv[2], '127.0.0.1', int(sys.argv[3]), verify=sys.argv[4])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, upstream.base, str(tmp_path / "c"), str(port), upstream.ca],
        stdout=subprocess.PIPE,
        text=True,
        cwd=BIN,
    )
    try:
        line = proc.stdout.readline()  # blocks until the server is up (or the process dies)
        assert f"http://127.0.0.1:{port}/simple/" in line, line
        r = httpx.get(f"http://127.0.0.1:{port}/simple/{PROJECT}/", timeout=30)
        assert r.status_code == 200 and f"/files/{PROJECT}/" in r.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
