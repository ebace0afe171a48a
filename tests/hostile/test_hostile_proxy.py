"""A hostile or failing upstream behind the proxy (a real HTTP server on loopback whose
behaviour each test switches): a body cut off mid-transfer, bytes that do not match the page's
sha256, nonsense pages, unsafe filenames, a file over the size limit, the upstream gone. The
proxy answers with a normal HTTP status, stores nothing that did not verify (no file, no
temporary), and succeeds on the next request once the upstream behaves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.index import JSON_V1
from registry_core.proxy import ProxyApp

GOOD = random.Random(7).randbytes(200_000)
SHA = hashlib.sha256(GOOD).hexdigest()
NAME = "evil-1.0.tar.gz"


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: dict = {}

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.state.setdefault("conns", []).append(self.connection)

    def _send(self, status: int, body: bytes, ctype: str = "application/octet-stream"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        st = self.state
        st.setdefault("hits", []).append(self.path)
        if self.path == "/simple/evil/":
            if st.get("page") == "garbage":
                return self._send(200, b"{not json", "application/vnd.pypi.simple.v1+json")
            files = [
                {"filename": NAME, "url": f"/f/{NAME}", "hashes": {"sha256": SHA}},
                {"filename": "big-1.0.tar.gz", "url": "/f/big", "hashes": {"sha256": "b" * 64}},
                {"filename": "../escape-1.0.tar.gz", "url": "/f/esc", "hashes": {"sha256": SHA}},
                {"filename": ".hidden-1.0.tar.gz", "url": "/f/hid", "hashes": {"sha256": SHA}},
                {"filename": "nohash-1.0.tar.gz", "url": "/f/nohash", "hashes": {}},
            ]
            doc = {"meta": {"api-version": "1.1"}, "name": "evil", "files": files}
            return self._send(200, json.dumps(doc).encode(), "application/vnd.pypi.simple.v1+json")
        if self.path == f"/f/{NAME}":
            mode = st.get("file", "good")
            if mode == "half":  # announce the whole length, send half, hang up
                self.send_response(200)
                self.send_header("content-length", str(len(GOOD)))
                self.end_headers()
                self.wfile.write(GOOD[: len(GOOD) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return None
            if mode == "corrupt":
                return self._send(200, GOOD[:-1] + bytes([GOOD[-1] ^ 1]))
            return self._send(200, GOOD)
        if self.path == "/f/big":
            return self._send(200, b"z" * 300_000)
        return self._send(404, b"no\n", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # the proxy hanging up on an oversized body is the point, not a server error


@pytest.fixture
def evil():
    state: dict = {}
    handler = type("H", (_Upstream,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def stop() -> None:  # gone for good: kept-alive connections are cut too
        server.shutdown()
        server.server_close()
        for conn in state.get("conns", []):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    state["stop"] = stop
    yield base, state
    if thread.is_alive():
        stop()
    thread.join()


def _files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "files").rglob("*") if p.is_file())


async def _get(app, *paths):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
    ) as c:
        return [await c.get(p) for p in paths]


def test_cut_off_mid_transfer_stores_nothing_then_recovers(evil, tmp_path):
    base, state = evil
    state["file"] = "half"
    app = ProxyApp(base, tmp_path / "c", max_file_bytes=1 << 20)

    async def main():
        (bad,) = await _get(app, f"/files/evil/{NAME}")
        assert bad.status_code == 502
        assert _files(tmp_path / "c") == []  # no file, no temporary
        state["file"] = "good"
        (good,) = await _get(app, f"/files/evil/{NAME}")
        await app.aclose()
        return good

    good = asyncio.run(main())
    assert good.status_code == 200 and good.content == GOOD
    assert _files(tmp_path / "c") == [NAME]


def test_corrupt_bytes_never_stored_or_served(evil, tmp_path):
    base, state = evil
    state["file"] = "corrupt"
    app = ProxyApp(base, tmp_path / "c")

    async def main():
        (bad,) = await _get(app, f"/files/evil/{NAME}")
        stored = _files(tmp_path / "c")
        state["file"] = "good"
        (good,) = await _get(app, f"/files/evil/{NAME}")
        await app.aclose()
        return bad, stored, good

    bad, stored, good = asyncio.run(main())
    assert bad.status_code == 502 and b"does not match" in bad.content
    assert GOOD[:1000] not in bad.content and stored == []
    assert app.stats.corrupt_refused == 1
    assert good.content == GOOD


def test_unsafe_or_unverifiable_names_left_out(evil, tmp_path):
    base, state = evil
    app = ProxyApp(base, tmp_path / "c")

    async def main():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
        ) as c:
            page = await c.get("/simple/evil/", headers={"accept": JSON_V1})
            rs = [
                await c.get(p)
                for p in (
                    "/files/evil/nohash-1.0.tar.gz",
                    "/files/evil/..%2Fescape-1.0.tar.gz",
                    "/files/evil/.hidden-1.0.tar.gz",
                )
            ]
        await app.aclose()
        return page, rs

    page, rs = asyncio.run(main())
    names = {f["filename"] for f in page.json()["files"]}
    assert names == {NAME, "big-1.0.tar.gz"}
    assert [r.status_code for r in rs] == [404, 404, 404]
    assert not any(h in state["hits"] for h in ("/f/nohash", "/f/esc", "/f/hid"))


def test_file_over_the_size_limit(evil, tmp_path):
    base, _ = evil
    app = ProxyApp(base, tmp_path / "c", max_file_bytes=250_000)

    async def main():
        (r,) = await _get(app, "/files/evil/big-1.0.tar.gz")
        await app.aclose()
        return r

    r = asyncio.run(main())
    assert r.status_code == 502 and _files(tmp_path / "c") == []


def test_garbage_page_then_stale_copy(evil, tmp_path):
    base, state = evil
    state["page"] = "garbage"
    fresh = ProxyApp(base, tmp_path / "c1")

    async def first():
        (r,) = await _get(fresh, "/simple/evil/")
        await fresh.aclose()
        return r

    assert asyncio.run(first()).status_code == 502
    state["page"] = "good"
    app = ProxyApp(base, tmp_path / "c2", page_ttl=0)

    async def main():
        (ok,) = await _get(app, "/simple/evil/")
        state["page"] = "garbage"
        (stale,) = await _get(app, "/simple/evil/")
        await app.aclose()
        return ok, stale

    ok, stale = asyncio.run(main())
    assert ok.status_code == stale.status_code == 200 and ok.content == stale.content
    assert app.stats.stale_pages == 1


def test_upstream_gone(evil, tmp_path):
    """The upstream process stops: the cached page and file keep being served; an uncached
    file is a 502, not a hang."""
    base, state = evil
    app = ProxyApp(base, tmp_path / "c", page_ttl=0)

    async def main():
        (f1,) = await _get(app, f"/files/evil/{NAME}")
        state["stop"]()
        page, f2, big = await _get(
            app, "/simple/evil/", f"/files/evil/{NAME}", "/files/evil/big-1.0.tar.gz"
        )
        await app.aclose()
        return f1, page, f2, big

    f1, page, f2, big = asyncio.run(main())
    assert f1.content == f2.content == GOOD and page.status_code == 200
    assert big.status_code == 502
    assert app.stats.stale_pages >= 1


def test_credentials_in_upstream_url_refused(tmp_path):
    with pytest.raises(InvalidArgumentError, match="credentials"):
        ProxyApp("https://user:secret@example.org/simple", tmp_path)


def test_page_entries_that_cannot_be_checked_are_dropped():
    """From an https upstream, an http:// file link is left out (no downgrade); a bad
    core-metadata hash is not advertised to clients."""
    from registry_core.index import SimpleFile, SimpleProject
    from registry_core.proxy._app import _page

    files = (
        SimpleFile("a-1.0.tar.gz", "http://mirror.test/a-1.0.tar.gz", {"sha256": SHA}),
        SimpleFile("a-1.1.tar.gz", "https://files.test/a-1.1.tar.gz", {"sha256": "zz" * 32}),
        SimpleFile(
            "a-1.2.tar.gz",
            "https://files.test/a-1.2.tar.gz",
            {"sha256": SHA},
            core_metadata={"sha256": "not-hex"},
        ),
    )
    page = _page(SimpleProject("a", files), None, None, ("https://",))
    assert list(page.files) == ["a-1.2.tar.gz"]
    app = ProxyApp.__new__(ProxyApp)
    (served,) = app.client_page(page).files
    assert served.url == "/files/a/a-1.2.tar.gz" and served.core_metadata is False
