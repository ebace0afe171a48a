"""Range requests (RFC 9110 section 14) as pip and uv use them to read wheel metadata."""

from __future__ import annotations

import asyncio
import io
import ssl
import zipfile

import httpx
import pytest

from registry_core.server import MemoryStorage, RegistryApp
from registry_core.server._ranges import UNSATISFIABLE, ByteRange, if_range_matches, parse_range
from registry_core.wire import etag_for

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9, 10240)),
        ("bytes=10-", ByteRange(10, 10239, 10240)),
        ("bytes=-100", ByteRange(10140, 10239, 10240)),
        ("bytes=-99999", ByteRange(0, 10239, 10240)),
        ("bytes=5-99999", ByteRange(5, 10239, 10240)),
        ("Bytes = 1-2", ByteRange(1, 2, 10240)),
        ("bytes=10240-", UNSATISFIABLE),
        ("bytes=20000-20010", UNSATISFIABLE),
        ("bytes=-0", UNSATISFIABLE),
        ("bytes=9-1", None),  # invalid: ignored
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("items=0-1", None),
        ("bytes=0-1,5-6", None),  # several ranges: the full 200
        ("bytes=" + "1" * 30 + "-", None),
        ("bytes=0-1" + " " * 2000, None),
    ],
)
def test_parse_range(value, expected):
    assert parse_range(value, 10240) == expected


def test_parse_range_empty_representation():
    assert parse_range("bytes=0-", 0) is UNSATISFIABLE
    assert parse_range("bytes=-5", 0) is UNSATISFIABLE


def test_if_range():
    tag = etag_for(DATA)
    assert if_range_matches(None, tag) and if_range_matches(tag, tag)
    assert not if_range_matches("W/" + tag, tag)
    assert not if_range_matches('"other"', tag)
    assert not if_range_matches("Sat, 29 Oct 1994 19:43:31 GMT", tag)


@pytest.fixture
def app():
    return RegistryApp(MemoryStorage({"f/data.bin": DATA}))


def test_single_ranges_are_206(app, call):
    for spec, lo, hi in (("0-9", 0, 9), ("100-", 100, 10239), ("-300", 9940, 10239)):
        status, headers, body, _ = call(app, "GET", "/f/data.bin", [("range", "bytes=" + spec)])
        assert status == 206, spec
        assert headers["content-range"] == f"bytes {lo}-{hi}/10240"
        assert int(headers["content-length"]) == hi - lo + 1 == len(body)
        assert body == DATA[lo : hi + 1]
        assert headers["etag"] == etag_for(DATA) and headers["accept-ranges"] == "bytes"
        assert "content-encoding" not in headers
    assert app.stats.ranges_served == 3


def test_unsatisfiable_range_is_416(app, call):
    status, headers, body, _ = call(app, "GET", "/f/data.bin", [("range", "bytes=10240-")])
    assert status == 416 and headers["content-range"] == "bytes */10240" and body == b""


def test_multi_range_and_malformed_get_the_full_200(app, call):
    for value in ("bytes=0-1,4-5", "bytes=5-1", "lines=1-2"):
        status, headers, body, _ = call(app, "GET", "/f/data.bin", [("range", value)])
        assert status == 200 and body == DATA and headers["accept-ranges"] == "bytes"


def test_if_range_strong_etag_only(app, call):
    tag = etag_for(DATA)
    status, _, body, _ = call(
        app, "GET", "/f/data.bin", [("range", "bytes=0-3"), ("if-range", tag)]
    )
    assert status == 206 and body == DATA[:4]
    for other in ('"stale"', "W/" + tag, "Sat, 29 Oct 1994 19:43:31 GMT"):
        status, _, body, _ = call(
            app, "GET", "/f/data.bin", [("range", "bytes=0-3"), ("if-range", other)]
        )
        assert status == 200 and body == DATA


def test_head_ignores_range(app, call):
    status, headers, body, _ = call(app, "HEAD", "/f/data.bin", [("range", "bytes=0-3")])
    assert status == 200 and body == b"" and headers["content-length"] == "10240"


def test_range_wins_over_content_coding():
    doc = b'{"k": "value"}\n' * 4000
    app = RegistryApp(MemoryStorage({"i/index.json": doc}))
    transport = httpx.ASGITransport(app=app)

    async def main():
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            return await c.get(
                "/i/index.json", headers={"range": "bytes=-10", "accept-encoding": "gzip"}
            )

    r = asyncio.run(main())
    assert r.status_code == 206 and r.content == doc[-10:]
    assert "content-encoding" not in r.headers


class LazyRemoteFile(io.RawIOBase):
    """What pip's lazy wheel does: HEAD for the size, then ranged GETs as zipfile seeks/reads
    (the first read is the tail, ``bytes=-N``, where the central directory lives)."""

    def __init__(self, get, head, url):
        self._get, self._url, self._pos = get, url, 0
        r = head(url)
        assert r.headers["accept-ranges"] == "bytes"
        self.size = int(r.headers["content-length"])
        self.tail = get(url, headers={"range": f"bytes=-{min(self.size, 10_000)}"})
        assert self.tail.status_code == 206
        self.statuses = [206]

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = base + offset
        return self._pos

    def read(self, n=-1):
        if n < 0 or self._pos + n > self.size:
            n = self.size - self._pos
        if n <= 0:
            return b""
        r = self._get(self._url, headers={"range": f"bytes={self._pos}-{self._pos + n - 1}"})
        self.statuses.append(r.status_code)
        assert r.headers["content-range"] == f"bytes {self._pos}-{self._pos + n - 1}/{self.size}"
        self._pos += len(r.content)
        return r.content

    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _read_metadata(get, head, url):
    f = LazyRemoteFile(get, head, url)
    with zipfile.ZipFile(f) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name), f


def test_pip_style_metadata_read_in_process(releases):
    version, wheel = releases[1]
    app = RegistryApp(MemoryStorage({f"p/pkg-{version}-py3-none-any.whl": wheel}))
    with httpx.Client(transport=_SyncASGI(app), base_url="https://t") as c:
        meta, f = _read_metadata(c.get, c.head, f"/p/pkg-{version}-py3-none-any.whl")
    assert f"Version: {version}".encode() in meta
    assert set(f.statuses) == {206} and len(f.statuses) >= 2


@pytest.mark.network
def test_pip_style_metadata_read_over_http2(pki, server, artifacts):
    path = "/simple/pkg/pkg-1.2-py3-none-any.whl"
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=pki[0])) as c:
        url = f"https://127.0.0.1:{server.port}{path}"
        meta, f = _read_metadata(c.get, c.head, url)
        assert c.get(url, headers={"range": "bytes=0-3"}).http_version == "HTTP/2"
    assert b"Version: 1.2" in meta and set(f.statuses) == {206}
    assert f.tail.content == artifacts[1][path][-10_000:]


class _SyncASGI(httpx.BaseTransport):
    """httpx's ASGITransport is async-only: run each request on a fresh loop."""

    def __init__(self, app):
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request):
        async def run():
            request.stream = httpx.ByteStream(request.read())
            r = await self._inner.handle_async_request(request)
            body = await r.aread()
            return httpx.Response(r.status_code, headers=r.headers, content=body, request=request)

        return asyncio.run(run())
