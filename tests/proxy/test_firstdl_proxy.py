"""First downloads through the proxy: pip and uv install from a registry-core upstream whose
files' EXPANDED patches are ready; the proxy asks for them (the upstream's log shows the
``226``), rebuilds and verifies each file, and serves it. A patch that is not ready yet, a
corrupt one, and ``first_downloads=False`` give plain files; a plain upstream (pypiserver) is
never asked. Real servers on loopback; waits are events (``precompute_idle``), never sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import httpx
import pytest
from _proxy_support import PROJECT
from test_proxy_pypiserver import pypiserver  # noqa: F401  (the real pypiserver fixture)

from _packages import client_env, run, tool
from registry_core.flags import FeatureFlags
from registry_core.index import Index
from registry_core.proxy import ProxyApp, start_proxy
from registry_core.server import IndexApp, RegistryApp, start_server

MODULE = PROJECT.replace("-", "_")
ON = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": True})


class AccessLog:
    """ASGI wrapper: one (method, path, status, asked-expanded) row per answered request;
    ``corrupt``: flip a byte in the middle of every 226 body (Content-Digest recomputed, so
    only the patch decoder can tell)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rows: list[tuple[str, str, int, bool]] = []
        self.corrupt = False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        hdrs = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        asked = "expanded" in hdrs.get("delta-engines", "") and "a-im" in hdrs
        state: dict = {}

        async def logged(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                self.rows.append((scope["method"], scope["path"], message["status"], asked))
                if message["status"] == 226 and self.corrupt:
                    state["start"], state["body"] = message, bytearray()
                    return
            elif "start" in state:  # buffer the 226, then send it corrupted
                state["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                body = state["body"]
                body[len(body) // 2] ^= 0x20
                digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
                start = state["start"]
                start["headers"] = [
                    (k, v) for k, v in start["headers"] if k.lower() != b"content-digest"
                ] + [(b"content-digest", f"sha-256=:{digest}:".encode())]
                await send(start)
                await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        return await self.inner(scope, receive, logged)

    def files(self, name: str) -> list[tuple[int, bool]]:
        return [(st, asked) for m, p, st, asked in self.rows if m == "GET" and p.endswith(name)]


@pytest.fixture(scope="module")
def site(pki, built, tmp_path_factory):
    """Our index over TLS with both releases uploaded and nothing precomputed yet;
    ``ready(*files)`` computes their EXPANDED patches and waits for them."""
    ca, cert, key = pki
    index = Index(tmp_path_factory.mktemp("firstdl-upstream"))
    raw, _ = index.create_token()
    for b in built.values():
        for path in (b.wheel, b.sdist):
            with open(path, "rb") as fh:
                index.upload(path.name, fh, token=raw)
    # min_delta_saving=0: the small generated sdists save close to the default 10 %, and these
    # tests follow the first-download path, not the threshold (tested in tests/server)
    files = RegistryApp(index.storage, flags=ON, min_delta_saving=0.0)
    log = AccessLog(IndexApp(index, files=files, serial_ttl=0))
    handle = start_server(log, certfile=cert, keyfile=key, quic=False)
    handle.log, handle.files, handle.ca = log, files, ca
    handle.base = f"https://127.0.0.1:{handle.port}"

    def ready(*paths):
        for p in paths:
            record = index.file(p.name)
            assert record is not None
            files.precompute_first(record.path)
        assert files.precompute_idle(timeout=300)

    handle.ready = ready
    yield handle
    handle.stop()
    files.close()
    index.close()


@pytest.fixture
def proxy(site, tmp_path):
    opened = []

    def start(**kw):
        kw.setdefault("first_downloads", "always")  # these tests are about the EXPANDED path
        app = ProxyApp(site.base, tmp_path / f"cache{len(opened)}", verify=site.ca, **kw)
        handle = start_proxy(app, port=0)
        handle.proxy, handle.index = app, handle.url("/simple/")
        opened.append(handle)
        return handle

    yield start
    for handle in opened:
        handle.stop()


def _version(target) -> str:
    text = (target / MODULE / "__init__.py").read_text()
    return next(ln for ln in text.splitlines() if ln.startswith("VERSION"))


def _pip(index: str, target, spec: str, *extra: str) -> None:
    pip = [tool("pip"), "install", "--index-url", index, "--only-binary", ":all:", *extra]
    run([*pip, "--target", str(target), spec], env=client_env())


def test_pip_first_install_is_an_expanded_patch_then_the_upgrade_a_delta(
    site, built, proxy, tmp_path
):
    wheel, new = built["1.0"].wheel, built["1.1"].wheel
    site.ready(wheel)
    served = site.files.stats.first_downloads_served
    p = proxy()
    target = tmp_path / "site"
    _pip(p.index, target, f"{PROJECT}==1.0")
    assert _version(target) == "VERSION = '1.0'"
    st = p.proxy.stats
    assert st.expanded == 1 and st.fulls == 1 and st.deltas == 0, st
    assert site.log.files(wheel.name)[-1] == (226, True), site.log.files(wheel.name)
    assert site.files.stats.first_downloads_served == served + 1
    assert st.corrupt_refused == 0
    assert p.proxy.transport.stats["fetch_expanded_streamed"] == 1  # decoded as it arrived
    assert st.upstream_bytes < st.full_equivalent_bytes == len(wheel.read_bytes())
    cached = tmp_path / "cache0" / "files" / PROJECT / wheel.name
    assert cached.read_bytes() == wheel.read_bytes()
    # the upgrade names the cached 1.0 as its base: a delta, no `expanded` in the request
    _pip(p.index, target, f"{PROJECT}==1.1", "--upgrade")
    assert _version(target) == "VERSION = '1.1'"
    assert p.proxy.stats.deltas == 1 and p.proxy.stats.expanded == 1, p.proxy.stats
    assert site.log.files(new.name)[-1] == (226, False)


def test_uv_first_install_is_an_expanded_patch(site, built, proxy, tmp_path):
    wheel = built["1.1"].wheel
    site.ready(wheel)
    p = proxy()
    target = tmp_path / "site"
    uv = [tool("uv"), "pip", "install", "--index-url", p.index, "--no-build"]
    run([*uv, "--target", str(target), f"{PROJECT}==1.1"], env=client_env())
    assert _version(target) == "VERSION = '1.1'"
    assert p.proxy.stats.expanded == 1 and p.proxy.stats.corrupt_refused == 0, p.proxy.stats
    assert site.log.files(wheel.name)[-1] == (226, True)


def _get(handle, name: str) -> httpx.Response:
    return httpx.get(handle.url(f"/files/{PROJECT}/{name}"), timeout=120)


def test_not_ready_is_plain_then_the_next_first_download_is_a_patch(site, built, proxy):
    sdist = built["1.0"].sdist
    before = site.files.stats.first_downloads_scheduled
    a = proxy()
    r = _get(a, sdist.name)  # nothing precomputed for it: 200 at once, computation queued
    assert r.status_code == 200 and r.content == sdist.read_bytes()
    assert site.log.files(sdist.name)[-1] == (200, True)
    assert a.proxy.stats.expanded == 0 and a.proxy.stats.fulls == 1
    assert site.files.stats.first_downloads_scheduled == before + 1
    assert site.files.precompute_idle(timeout=300)
    b = proxy()  # another CI machine, empty cache
    r = _get(b, sdist.name)
    assert r.status_code == 200 and r.content == sdist.read_bytes()
    assert site.log.files(sdist.name)[-1] == (226, True)
    assert b.proxy.stats.expanded == 1


def test_a_corrupt_patch_falls_back_to_one_plain_get(site, built, proxy):
    sdist = built["1.1"].sdist
    site.ready(sdist)
    p = proxy()
    site.log.corrupt = True
    try:
        r = _get(p, sdist.name)
    finally:
        site.log.corrupt = False
    assert r.status_code == 200 and r.content == sdist.read_bytes()
    assert site.log.files(sdist.name)[-2:] == [(226, True), (200, False)]
    st = p.proxy.stats
    assert st.expanded == 0 and st.fulls == 1 and st.corrupt_refused == 0, st
    assert p.proxy.transport.stats["fetch_delta_fallbacks"] == 1


def test_first_downloads_off_asks_plainly(site, built, proxy):
    wheel = built["1.0"].wheel
    site.ready(wheel)
    p = proxy(first_downloads=False)
    r = _get(p, wheel.name)
    assert r.status_code == 200 and r.content == wheel.read_bytes()
    assert site.log.files(wheel.name)[-1] == (200, False)
    assert p.proxy.stats.expanded == 0 and p.proxy.stats.fulls == 1


def test_plain_upstream_gets_plain_requests(pypiserver, built, tmp_path):  # noqa: F811
    """pypiserver sends no digests: first downloads are plain GETs, checked against the page."""
    app = ProxyApp(pypiserver, tmp_path / "cache")

    async def main():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
        ) as c:
            rs = [await c.get(f"/files/{PROJECT}/{b.wheel.name}") for b in built.values()]
        stats = app.transport.stats
        await app.aclose()
        return rs, stats

    rs, stats = asyncio.run(main())
    assert [r.content for r in rs] == [b.wheel.read_bytes() for b in built.values()]
    assert app.stats.expanded == 0 and app.stats.fulls == 2
    assert stats["fetch_expanded"] == 0 and stats["fetch_full"] == 0  # never asked via fetch


def test_cli_no_first_downloads_option():
    import argparse

    from registry_core.cli._proxy import add_proxy_parser, stats_summary
    from registry_core.proxy import ProxyStats

    parser = argparse.ArgumentParser()
    add_proxy_parser(parser.add_subparsers())
    base = ["proxy", "--upstream", "https://x.test", "--cache-dir", "c"]
    assert parser.parse_args(base).first_downloads == "auto"
    assert parser.parse_args([*base, "--no-first-downloads"]).first_downloads == "never"
    for mode in ("auto", "always", "never"):
        assert parser.parse_args([*base, "--first-downloads", mode]).first_downloads == mode
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--first-downloads", "sometimes"])
    warm = parser.parse_args([*base, "--no-first-downloads", "warm", "-r", "req.txt"])
    assert warm.first_downloads == "never"  # given before `warm`: kept
    warm = parser.parse_args([*base, "--first-downloads", "always", "warm", "-r", "req.txt"])
    assert warm.first_downloads == "always"
    line = stats_summary(
        ProxyStats(upstream_bytes=5, full_equivalent_bytes=10, fulls=2, expanded=1)
    )
    assert "2 full (1 as EXPANDED patches)" in line, line
