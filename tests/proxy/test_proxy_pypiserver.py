"""The proxy in front of a real pypiserver (plain HTTP, no digests, no deltas) started by the
test: full files, each checked against the page's sha256; pip installs through the proxy; an
upgrade is a full download (pypiserver cannot send a patch) and the proxy never tries one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import httpx
import pytest
from _proxy_support import PROJECT

from _packages import BIN, client_env, run, tool
from registry_core.proxy import ProxyApp, start_proxy

MODULE = PROJECT.replace("-", "_")
STARTUP = 60.0  # upper bound for pypiserver to answer, not a synchronisation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pypiserver(built, tmp_path_factory):
    exe = BIN / "pypi-server"
    if not exe.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("pypi-server is not installed (test extra)")
        pytest.skip("pypi-server is not installed (pip install -e .[test])")
    root = tmp_path_factory.mktemp("pypiserver")
    for b in built.values():
        shutil.copy(b.wheel, root)
        shutil.copy(b.sdist, root)
    port = _free_port()
    proc = subprocess.Popen(
        [str(exe), "run", "-p", str(port), "-i", "127.0.0.1", "--disable-fallback", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=client_env(),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP
    while True:  # last resort: pypiserver has no readiness signal but answering
        try:
            if httpx.get(base + f"/simple/{PROJECT}/", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"pypi-server did not answer within {STARTUP:g}s")
        time.sleep(0.05)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_full_files_verified(pypiserver, built, tmp_path):
    import asyncio

    app = ProxyApp(pypiserver, tmp_path / "cache")

    async def main():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
        ) as c:
            page = await c.get(f"/simple/{PROJECT}/")
            rs = [
                await c.get(f"/files/{PROJECT}/{p.name}")
                for b in built.values()
                for p in (b.wheel, b.sdist)
            ]
        await app.aclose()
        return page, rs

    page, rs = asyncio.run(main())
    assert page.status_code == 200 and f"/files/{PROJECT}/" in page.text
    expected = [p.read_bytes() for b in built.values() for p in (b.wheel, b.sdist)]
    assert [r.content for r in rs] == expected
    st = app.stats
    assert st.fulls == 4 and st.deltas == 0 and st.corrupt_refused == 0
    assert st.full_equivalent_bytes == sum(len(x) for x in expected)


def test_pip_through_proxy_to_pypiserver(pypiserver, tmp_path):
    app = ProxyApp(pypiserver, tmp_path / "cache")
    with start_proxy(app, port=0) as handle:
        index = handle.url("/simple/")
        target = tmp_path / "site"
        pip = [tool("pip"), "install", "--index-url", index, "--only-binary", ":all:"]
        run([*pip, "--target", str(target), f"{PROJECT}==1.0"])
        run([*pip, "--upgrade", "--target", str(target), f"{PROJECT}==1.1"])
        text = (target / MODULE / "__init__.py").read_text()
        assert "VERSION = '1.1'" in text
        st = app.stats
    assert st.fulls == 2 and st.deltas == 0 and st.corrupt_refused == 0


def test_uv_through_proxy_to_pypiserver(pypiserver, tmp_path):
    """uv with no PEP 658 metadata on the pages (pypiserver has none) still installs."""
    app = ProxyApp(pypiserver, tmp_path / "cache")
    with start_proxy(app, port=0) as handle:
        target = tmp_path / "site"
        uv = [tool("uv"), "pip", "install", "--index-url", handle.url("/simple/"), "--no-build"]
        run([*uv, "--target", str(target), f"{PROJECT}==1.1"])
        assert "VERSION = '1.1'" in (target / MODULE / "__init__.py").read_text()
    assert app.stats.fulls == 1 and app.stats.corrupt_refused == 0
