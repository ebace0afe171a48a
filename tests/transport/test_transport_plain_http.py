"""Transport(allow_http=True): plain http:// through the transport seam, refused otherwise.

The server is a real one on loopback (the standard library's ThreadingHTTPServer serving a
directory): it sends no digests, which is what a plain upstream such as pypiserver does.
"""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from registry_core.errors import DigestMismatchError, InvalidArgumentError
from registry_core.transport import Transport


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain")
    (root / "hello.txt").write_bytes(b"hello over plain http\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_get_with_allow_http(plain):
    async def main():
        async with Transport(transport=httpx.AsyncHTTPTransport(), allow_http=True) as t:
            return await t.get(plain + "/hello.txt")

    r = asyncio.run(main())
    assert r.status == 200 and r.content == b"hello over plain http\n"


def test_http_refused_by_default(plain):
    async def main():
        async with Transport(transport=httpx.AsyncHTTPTransport()) as t:
            await t.get(plain + "/hello.txt")

    with pytest.raises(InvalidArgumentError, match="allow_http"):
        asyncio.run(main())


def test_allow_http_needs_the_seam():
    with pytest.raises(InvalidArgumentError, match="transport= seam"):
        Transport(allow_http=True)


def test_other_schemes_stay_refused():
    async def main():
        async with Transport(transport=httpx.AsyncHTTPTransport(), allow_http=True) as t:
            await t.get("ftp://127.0.0.1/x")

    with pytest.raises(InvalidArgumentError):
        asyncio.run(main())


def test_fetch_over_http_still_needs_a_digest(plain):
    """allow_http changes the scheme check only: an artifact without any digest is refused."""

    async def main():
        async with Transport(transport=httpx.AsyncHTTPTransport(), allow_http=True) as t:
            await t.fetch(plain + "/hello.txt")

    with pytest.raises(DigestMismatchError):
        asyncio.run(main())
