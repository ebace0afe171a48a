"""IndexApp over a real loopback server (plain HTTP/1.1, httpx): Simple API pages, redirects,
negotiation, ETags, core metadata, the upload API and the precompute hook."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _packages import build_project
from registry_core.errors import InvalidArgumentError
from registry_core.index import Index
from registry_core.server import IndexApp, RegistryApp, start_server

JSON_V1 = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    return {v: build_project(root, "Demo_Pkg", v, payload_kb=16) for v in ("1.0", "1.1")}


@pytest.fixture()
def site(tmp_path, built):
    """A fresh index holding Demo_Pkg 1.0 (wheel + sdist), served over plain HTTP."""
    store = tmp_path / "store"
    store.mkdir()
    index = Index(store)
    raw, _ = index.create_token()
    for path in (built["1.0"].wheel, built["1.0"].sdist):
        with open(path, "rb") as f:
            index.upload(path.name, f, token=raw)
    files = RegistryApp(index.storage)
    app = IndexApp(index, files=files, serial_ttl=0)  # changes made behind its back show at once
    handle = start_server(app, tls=False)
    client = httpx.Client(base_url=handle.url(), follow_redirects=False, timeout=30)
    try:
        yield app, index, raw, client
    finally:
        client.close()
        handle.stop()
        app.close()
        index.close()


def _upload(client, path, token, *, action="file_upload", data=None, user="__token__", **kw):
    blob = path.read_bytes()
    form = {
        ":action": action,
        "protocol_version": "1",
        "sha256_digest": hashlib.sha256(blob).hexdigest(),
        **(data or {}),
    }
    auth = (user, token) if token is not None else None
    return client.post("/legacy/", data=form, files={"content": (path.name, blob)}, auth=auth, **kw)


def test_home_and_project_list(site):
    app, _, _, client = site
    home = client.get("/")
    assert home.status_code == 200 and b'href="/simple/"' in home.content
    html = client.get("/simple/")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert '<a href="demo-pkg/">demo-pkg</a>' in html.text
    js = client.get("/simple/", headers={"accept": JSON_V1})
    assert js.headers["content-type"] == JSON_V1
    assert js.json()["projects"] == [{"name": "demo-pkg"}]
    assert client.get("/simple", params={"a": "1"}).headers["location"] == "/simple/?a=1"


def test_redirects_to_the_normalized_name(site):
    _, _, _, client = site
    r = client.get("/simple/Demo_Pkg/", params={"x": "y"})
    assert r.status_code == 301 and r.headers["location"] == "/simple/demo-pkg/?x=y"
    r = client.get("/simple/demo-pkg")
    assert r.status_code == 301 and r.headers["location"] == "/simple/demo-pkg/"
    assert client.get("/simple/Demo.Pkg", follow_redirects=True).status_code == 200
    assert client.get("/simple/nope/").status_code == 404
    assert client.get("/simple/..%2F/").status_code == 404
    assert client.get("/simple/-bad-/").status_code == 404
    assert client.post("/simple/demo-pkg/").status_code == 405


def test_project_page_links_hashes_metadata(site):
    app, index, _, client = site
    r = client.get("/simple/demo-pkg/", headers={"accept": JSON_V1})
    assert r.status_code == 200
    assert r.headers["vary"] == "Accept, Accept-Encoding"
    doc = r.json()
    assert doc["meta"]["api-version"] == "1.1"
    assert doc["versions"] == ["1.0"]
    by_name = {f["filename"]: f for f in doc["files"]}
    assert set(by_name) == {"demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"}
    wheel = by_name["demo_pkg-1.0-py3-none-any.whl"]
    assert wheel["url"] == "/demo-pkg/demo_pkg-1.0-py3-none-any.whl"
    body = client.get(wheel["url"]).content
    assert hashlib.sha256(body).hexdigest() == wheel["hashes"]["sha256"]
    assert wheel["size"] == len(body)
    assert wheel["upload-time"].endswith("Z")
    meta = client.get(wheel["url"] + ".metadata")
    assert meta.status_code == 200
    assert hashlib.sha256(meta.content).hexdigest() == wheel["core-metadata"]["sha256"]
    assert wheel["dist-info-metadata"] == wheel["core-metadata"]
    assert meta.content == index.metadata("demo_pkg-1.0-py3-none-any.whl")
    assert b"Name: Demo_Pkg" in meta.content or b"Name: demo-pkg" in meta.content.lower()
    assert meta.headers["etag"] == '"' + wheel["core-metadata"]["sha256"] + '"'
    assert meta.headers["repr-digest"].startswith("sha-256=:")
    again = client.get(wheel["url"] + ".metadata", headers={"if-none-match": meta.headers["etag"]})
    assert again.status_code == 304
    assert app.metadata_hits["demo_pkg-1.0-py3-none-any.whl"] == 2
    # a .metadata under another directory is not that file's metadata
    assert client.get("/other/demo_pkg-1.0-py3-none-any.whl.metadata").status_code == 404
    html = client.get("/simple/demo-pkg/").text
    assert f'#sha256={wheel["hashes"]["sha256"]}' in html
    assert "data-core-metadata=" in html and "data-dist-info-metadata=" in html


def test_negotiation_and_406(site):
    _, _, _, client = site
    r = client.get("/simple/demo-pkg/", headers={"accept": "application/vnd.pypi.simple.v1+html"})
    assert r.headers["content-type"] == "application/vnd.pypi.simple.v1+html"
    r = client.get("/simple/demo-pkg/", headers={"accept": "application/json"})
    assert r.status_code == 406
    assert r.headers["vary"] == "Accept"


def test_etag_cache_and_serial(site, built):
    app, index, raw, client = site
    first = client.get("/simple/demo-pkg/")
    etag = first.headers["etag"]
    builds = app.stats["page_builds"]
    assert client.get("/simple/demo-pkg/", headers={"if-none-match": etag}).status_code == 304
    second = client.get("/simple/demo-pkg/")
    assert second.content == first.content and app.stats["page_builds"] == builds
    assert app.stats["page_hits"] >= 2
    js = client.get("/simple/demo-pkg/", headers={"accept": JSON_V1})
    assert js.headers["etag"] != etag  # per media type
    index.yank("demo_pkg-1.0.tar.gz", "broken")
    third = client.get("/simple/demo-pkg/", headers={"if-none-match": etag})
    assert third.status_code == 200 and third.headers["etag"] != etag
    assert 'data-yanked="broken"' in third.text


def test_gzip_pages(site):
    _, _, _, client = site
    plain = client.get("/simple/demo-pkg/", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    zipped = client.get("/simple/demo-pkg/", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decodes it
    assert int(zipped.headers["content-length"]) < len(plain.content)
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = client.get(
        "/simple/demo-pkg/",
        headers={"accept-encoding": "gzip", "if-none-match": zipped.headers["etag"]},
    )
    assert again.status_code == 304
    odd = client.get("/simple/demo-pkg/", headers={"accept-encoding": "gzip;q=x, ;;"})
    assert odd.status_code == 200


def test_serial_ttl(tmp_path, built):
    """With a long serial_ttl a change made behind the app's back (here: a yank through the
    index) is not seen yet; an upload through the app is seen at once."""
    store = tmp_path / "s"
    store.mkdir()
    index = Index(store)
    raw, _ = index.create_token()
    with open(built["1.0"].wheel, "rb") as f:
        index.upload(built["1.0"].wheel.name, f, token=raw)
    app = IndexApp(index, serial_ttl=3600)
    handle = start_server(app, tls=False)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as client:
            first = client.get("/simple/demo-pkg/")
            index.yank(built["1.0"].wheel.name)
            assert client.get("/simple/demo-pkg/").headers["etag"] == first.headers["etag"]
            assert _upload(client, built["1.1"].wheel, raw).status_code == 200
            after = client.get("/simple/demo-pkg/")
            assert after.headers["etag"] != first.headers["etag"]
            assert "demo_pkg-1.1" in after.text and "data-yanked" in after.text
    finally:
        handle.stop()
        app.close()
        index.close()
    with pytest.raises(InvalidArgumentError):
        IndexApp(index, serial_ttl=-1)


def test_head_on_page(site):
    _, _, _, client = site
    r = client.head("/simple/demo-pkg/")
    assert r.status_code == 200 and r.content == b""
    get = client.get("/simple/demo-pkg/")
    assert r.headers["content-length"] == get.headers["content-length"]
    assert r.headers["etag"] == get.headers["etag"]


def test_hidden_state_is_not_served(site):
    _, _, _, client = site
    assert client.get("/.registry-core/index.sqlite3").status_code == 404


def test_upload_and_precompute(site, built):
    app, index, raw, client = site
    r = _upload(client, built["1.1"].wheel, raw)
    assert r.status_code == 200, r.text
    assert r.text.strip() == "OK"
    assert index.file(built["1.1"].wheel.name) is not None
    doc = client.get("/simple/demo-pkg/", headers={"accept": JSON_V1}).json()
    assert doc["versions"] == ["1.0", "1.1"]
    # the file server was asked for the patch 1.0 -> 1.1 and computed it
    assert app.files.precompute_idle(timeout=60)
    assert app.files.stats.precomputed >= 1
    # the same bytes again: accepted (what --skip-existing relies on), nothing new
    assert _upload(client, built["1.1"].wheel, raw).status_code == 200


def test_upload_refusals(site, built, tmp_path):
    app, index, raw, client = site
    wheel = built["1.1"].wheel
    r = _upload(client, wheel, None)
    assert r.status_code == 401 and "www-authenticate" in r.headers
    assert _upload(client, wheel, "rc-nope-nope").status_code == 401
    assert _upload(client, wheel, raw, user="alice").status_code == 401
    r = client.post("/legacy/", content=b"x", headers={"authorization": "Bearer " + raw})
    assert r.status_code == 401
    assert _upload(client, wheel, raw, action="remove_pkg").status_code == 400
    r = _upload(client, wheel, raw, data={"sha256_digest": "0" * 64})
    assert r.status_code == 400 and "digest" in r.text
    scoped, _ = index.create_token(scope="other")
    assert _upload(client, wheel, scoped).status_code == 403
    r = client.post(
        "/legacy/",
        content=b"{}",
        headers={"content-type": "application/json"},
        auth=("__token__", raw),
    )
    assert r.status_code == 415
    # the same filename with other bytes: 409
    fake = tmp_path / built["1.0"].wheel.name
    fake.write_bytes(built["1.1"].wheel.read_bytes())
    r = _upload(client, fake, raw)
    assert r.status_code == 409, r.text
    # a path in the filename
    evil = tmp_path / "x.whl"
    evil.write_bytes(b"x")
    r = client.post(
        "/legacy/",
        data={":action": "file_upload"},
        files={"content": ("../demo_pkg-9.0-py3-none-any.whl", b"x")},
        auth=("__token__", raw),
    )
    assert r.status_code == 400
    assert index.file(wheel.name) is None
    assert app.stats["upload_errors"] >= 9
    assert raw not in repr(app.stats)


def test_upload_size_limit(tmp_path, built):
    store = tmp_path / "s"
    store.mkdir()
    index = Index(store)
    raw, _ = index.create_token()
    app = IndexApp(index, max_upload_bytes=1000)
    handle = start_server(app, tls=False)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as client:
            r = _upload(client, built["1.0"].wheel, raw)
            assert r.status_code == 413
            big = b"x" * (20 << 20)
            r = client.post(
                "/legacy/",
                content=big,
                headers={"content-type": "multipart/form-data; boundary=b"},
                auth=("__token__", raw),
            )
            assert r.status_code == 413
        assert list(index.storage.walk()) == []
    finally:
        handle.stop()
        app.close()
        index.close()


# -- the upload form parser, against the encoder twine uses (urllib3 via requests) -----------


@given(
    fields=st.lists(
        st.tuples(
            st.text("abcdefghijklmnopqrstuvwxyz_:", min_size=1, max_size=12),
            st.text(max_size=200),
        ),
        max_size=12,
    ),
    content=st.binary(max_size=3000),
    cuts=st.lists(st.integers(1, 97), max_size=30),
)
def test_upload_form_decodes_what_urllib3_encodes(fields, content, cuts):
    from urllib3.filepost import encode_multipart_formdata

    from registry_core.server._multipart import UploadForm

    body, ctype = encode_multipart_formdata(
        [*fields, ("content", ("x-1.0.tar.gz", content, "application/octet-stream"))]
    )
    form = UploadForm(ctype, max_file_bytes=1 << 20)
    pos = 0
    for cut in cuts:  # arbitrary chunk boundaries, as the network delivers them
        form.feed(body[pos : pos + cut])
        pos += cut
    form.feed(body[pos:])
    form.finish()
    want: dict[str, list[str]] = {}
    for name, value in fields:
        want.setdefault(name, []).append(value)
    assert form.fields == want
    assert form.filename == "x-1.0.tar.gz"
    assert form.file is not None and form.file.read() == content
    assert form.file_size == len(content)
    form.close()


def test_lifespan_goes_to_the_file_server_and_stops_uploads(tmp_path):
    import asyncio

    store = tmp_path / "l"
    store.mkdir()
    index = Index(store)
    app = IndexApp(index)
    sent = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app._upload_pool._shutdown
    index.close()
