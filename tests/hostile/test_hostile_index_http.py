"""Hostile requests to IndexApp over a real loopback server: malformed, truncated, oversized
and abandoned uploads, odd paths and headers on the Simple API. Every one gets a normal HTTP
answer (4xx), nothing is stored, memory stays bounded and the server keeps serving."""

from __future__ import annotations

import base64
import socket
import tracemalloc

import httpx
import pytest

from registry_core.index import Index
from registry_core.server import IndexApp, start_server

BOUNDARY = "xYzZY"


@pytest.fixture()
def site(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    index = Index(store)
    token, _ = index.create_token()
    app = IndexApp(index, max_upload_bytes=4 << 20)
    handle = start_server(app, tls=False)
    client = httpx.Client(base_url=handle.url(), timeout=60)
    try:
        yield app, index, token, handle, client
    finally:
        client.close()
        handle.stop()
        app.close()
        index.close()


def _auth(token: str) -> dict[str, str]:
    basic = base64.b64encode(f"__token__:{token}".encode()).decode()
    return {"authorization": f"Basic {basic}"}


def _part(name: str, value: bytes, filename: str | None = None, extra: str = "") -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n{extra}\r\n".encode() + value + b"\r\n"


def _form(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def _post(client, token, body, **headers):
    h = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **_auth(token), **headers}
    return client.post("/legacy/", content=body, headers=h)


def _nothing_stored(app, index) -> None:
    assert list(index.storage.walk()) == []
    assert index.projects() == []


ACTION = _part(":action", b"file_upload")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"garbage without any boundary", 400),
        (_form(ACTION), 400),  # no file part
        (_form(ACTION, _part("content", b"x", "a-1.0.tar.gz"), close=False), 400),  # truncated
        (
            _form(ACTION, _part("content", b"x", "a-1.0.tar.gz"), _part("content", b"y", "b.whl")),
            400,
        ),
        (_form(ACTION, _part("name", b"\xff\xfe"), _part("content", b"x", "a-1.0.tar.gz")), 400),
        (_form(*[_part(f"f{i}", b"v") for i in range(600)]), 400),  # too many fields
        (_form(_part("description", b"d" * (5 << 20))), 413),  # one field too large
        (
            _form(ACTION, _part("content", b"x", "a-1.0.tar.gz", "X-Big: " + "h" * 9000 + "\r\n")),
            400,
        ),
        (_form(ACTION, b"--" + BOUNDARY.encode() + b"\r\nNo-Disposition: 1\r\n\r\nx\r\n"), 400),
        (_form(ACTION, _part("content", b"not a zip", "a-1.0-py3-none-any.whl")), 400),
        (_form(ACTION, _part("content", b"x", "no-version.tar.gz")), 400),
        (_form(ACTION, _part("content", b"x", "..\\a-1.0.tar.gz")), 400),
        (_form(_part(":action", b"doc_upload"), _part("content", b"x", "a-1.0.tar.gz")), 400),
        (
            _form(ACTION, _part("protocol_version", b"7"), _part("content", b"x", "a-1.0.tar.gz")),
            400,
        ),
        (
            _form(
                ACTION,
                _part("sha256_digest", b"zz"),
                _part("content", b"x", "a-1.0.tar.gz"),
            ),
            400,
        ),
    ],
)
def test_malformed_upload_bodies(site, body, status):
    app, index, token, _, client = site
    r = _post(client, token, body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.count("\n") == 1 and token not in r.text
    _nothing_stored(app, index)
    assert client.get("/simple/").status_code == 200


def test_bad_boundaries_and_types(site):
    app, index, token, _, client = site
    for ctype in (
        "multipart/form-data",
        "multipart/form-data; boundary=" + "b" * 300,
        "text/plain",
    ):
        r = client.post("/legacy/", content=b"x", headers={"content-type": ctype, **_auth(token)})
        assert r.status_code in (400, 415), (ctype, r.text)
    for value in (
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Digest x",
        "Basic",
    ):
        r = client.post("/legacy/", content=b"x", headers={"authorization": value})
        assert r.status_code == 401, value
    _nothing_stored(app, index)


def test_oversized_streamed_upload_is_bounded(site):
    """40 MiB streamed without Content-Length into a 4 MiB limit: 413, little memory held."""
    app, index, token, _, client = site
    head = (
        ACTION
        + (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="a-1.0.tar.gz"\r\n\r\n'
        ).encode()
    )

    def body():
        yield head
        chunk = b"z" * (64 << 10)
        for _ in range(640):
            yield chunk

    tracemalloc.start()
    try:
        r = _post(client, token, body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert peak < 12 << 20, peak  # the spool keeps 1 MiB in memory, the rest goes to disk
    _nothing_stored(app, index)
    # a declared length far over the limit is refused before any of the body is read
    assert _raw(site, token, ACTION, declared=1 << 40).startswith(b"HTTP/1.1 413")


def _raw(site, token, body: bytes, *, declared: int) -> bytes:
    """Send a request head declaring ``declared`` bytes and ``body``; return the answer."""
    handle = site[3]
    head = (
        f"POST /legacy/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        f"boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n"
        f"Authorization: {_auth(token)['authorization']}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", handle.port), timeout=30) as s:
        s.sendall(head + body)
        return s.recv(65536)


def test_abandoned_upload_leaves_nothing(site):
    """The client sends half a body and closes the connection: nothing stored, server fine."""
    app, index, token, handle, client = site
    body = ACTION + _part("content", b"q" * (2 << 20), "a-1.0.tar.gz")
    handle = site[3]
    head = (
        f"POST /legacy/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        f"boundary={BOUNDARY}\r\nContent-Length: {len(body) + 1000}\r\n"
        f"Authorization: {_auth(token)['authorization']}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", handle.port)) as s:
        s.sendall(head + body[: len(body) // 2])
    # a later upload and page still work, and the abandoned one left nothing
    assert client.get("/simple/").status_code == 200
    _nothing_stored(app, index)
    tmp = index.storage.state_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    "path",
    [
        "/simple/%00/",
        "/simple/a/b/c",
        "/simple/" + "a" * 5000 + "/",
        "/simple/..//",
        "/simple/a%2F..%2F/",
        "/x.whl.metadata",
        "/.registry-core/index.sqlite3.metadata",
        "/" + "a/" * 200 + "f.whl.metadata",
    ],
)
def test_odd_paths(site, path):
    _, _, _, _, client = site
    r = client.get(path)
    assert 300 <= r.status_code < 500, (path, r.status_code)


@pytest.mark.parametrize(
    "headers",
    [
        {"accept": ", ".join(["text/html;q=0.1"] * 400)},
        {"accept": "*/*;q=nan"},
        {"accept": ";;;,,,/"},
        {"if-none-match": '"' * 3000},
        {"if-none-match": ", ".join(['"a"'] * 100)},
    ],
)
def test_odd_page_headers(site, headers):
    _, _, _, _, client = site
    r = client.get("/simple/", headers=headers)
    assert r.status_code in (200, 304, 406)
