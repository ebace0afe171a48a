"""Project pages through the proxy: fetched from a real upstream (our index over TLS on
loopback), cached with the upstream ETag, revalidated after page_ttl (the clock is moved by
hand), served stale while the upstream answers 503, links rewritten to /files/."""

from __future__ import annotations

import json

import httpx
import pytest
from _proxy_support import PROJECT, Clock, run
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError
from registry_core.index import HTML_V1, JSON_V1
from registry_core.proxy import ProxyApp


def _proxy(upstream, tmp_path, **kw) -> ProxyApp:
    return ProxyApp(upstream.base, tmp_path / "cache", verify=upstream.ca, **kw)


async def _get(app: ProxyApp, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
    ) as c:
        return await c.get(path, headers=headers)


def test_json_page_links_rewritten_hashes_kept(upstream, built, tmp_path):
    app = _proxy(upstream, tmp_path)

    async def main():
        try:
            return await _get(app, f"/simple/{PROJECT}/", accept=JSON_V1)
        finally:
            await app.aclose()

    r = run(main())
    assert r.status_code == 200 and r.headers["content-type"].startswith(JSON_V1)
    doc = json.loads(r.content)
    names = {f["filename"]: f for f in doc["files"]}
    for b in built.values():
        for path in (b.wheel, b.sdist):
            f = names[path.name]
            assert f["url"] == f"/files/{PROJECT}/{path.name}"
            import hashlib

            assert f["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    wheel = names[built["1.0"].wheel.name]
    assert isinstance(wheel["core-metadata"], dict) and "sha256" in wheel["core-metadata"]


def test_html_page_and_redirects(upstream, tmp_path):
    app = _proxy(upstream, tmp_path)

    async def main():
        try:
            html = await _get(app, f"/simple/{PROJECT}/", accept=HTML_V1)
            legacy = await _get(app, f"/simple/{PROJECT}/")
            odd = await _get(app, "/simple/Demo_Proxy.Pkg/")
            slash = await _get(app, f"/simple/{PROJECT}")
            missing = await _get(app, "/simple/no-such-project-here/")
            index = await _get(app, "/simple/", accept=JSON_V1)
            return html, legacy, odd, slash, missing, index
        finally:
            await app.aclose()

    html, legacy, odd, slash, missing, index = run(main())
    assert html.status_code == 200 and html.headers["content-type"].startswith(HTML_V1)
    assert f'href="/files/{PROJECT}/' in html.text and "#sha256=" in html.text
    assert legacy.headers["content-type"].startswith("text/html")
    assert odd.status_code == 301 and odd.headers["location"] == f"/simple/{PROJECT}/"
    assert slash.status_code == 301 and slash.headers["location"] == f"/simple/{PROJECT}/"
    assert missing.status_code == 404
    assert [p["name"] for p in json.loads(index.content)["projects"]] == [PROJECT]


def test_ttl_revalidation_and_stale_when_down(upstream, tmp_path):
    clock = Clock()
    app = _proxy(upstream, tmp_path, page_ttl=60, clock=clock)
    page_path = f"/simple/{PROJECT}/"
    c = upstream.counting

    async def main():
        try:
            before = c.count(page_path)
            r1 = await _get(app, page_path)
            r2 = await _get(app, page_path)  # within the TTL: not asked upstream
            assert c.count(page_path) - before == 1
            clock.now += 61
            r3 = await _get(app, page_path)  # revalidated: 304 from upstream
            assert c.count(page_path) - before == 2
            assert app.stats.page_revalidated == 1
            clock.now += 61
            c.down = True
            try:
                r4 = await _get(app, page_path)  # upstream 503: the cached page, stale
            finally:
                c.down = False
            return r1, r2, r3, r4
        finally:
            await app.aclose()

    r1, r2, r3, r4 = run(main())
    assert r1.status_code == r2.status_code == r3.status_code == r4.status_code == 200
    assert r1.content == r2.content == r3.content == r4.content
    assert app.stats.stale_pages == 1 and app.stats.page_fetches == 1
    assert "warning" not in r3.headers and r4.headers["warning"].startswith("110 ")


def test_page_survives_restart_and_upstream_outage(upstream, tmp_path):
    """A page cached by one proxy is served by the next one while the upstream is down."""
    first = _proxy(upstream, tmp_path)

    async def fill():
        try:
            return await _get(first, f"/simple/{PROJECT}/", accept=JSON_V1)
        finally:
            await first.aclose()

    ok = run(fill())
    second = _proxy(upstream, tmp_path)

    async def outage():
        upstream.counting.down = True
        try:
            return await _get(second, f"/simple/{PROJECT}/", accept=JSON_V1)
        finally:
            upstream.counting.down = False
            await second.aclose()

    r = run(outage())
    assert r.status_code == 200 and r.content == ok.content
    assert second.stats.stale_pages == 1


def test_no_copy_and_upstream_down_is_502(upstream, tmp_path):
    app = _proxy(upstream, tmp_path)

    async def main():
        upstream.counting.down = True
        try:
            return await _get(app, f"/simple/{PROJECT}/")
        finally:
            upstream.counting.down = False
            await app.aclose()

    r = run(main())
    assert r.status_code == 502 and b"upstream" in r.content


def test_methods_and_paths(upstream, tmp_path):
    app = _proxy(upstream, tmp_path)

    async def main():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
        ) as cl:
            post = await cl.post(f"/simple/{PROJECT}/", content=b"x")
            other = await cl.get("/etc/passwd")
            traversal = await cl.get(f"/files/{PROJECT}/..%2F..%2Fetc%2Fpasswd")
            hidden = await cl.get(f"/files/{PROJECT}/.secret")
        await app.aclose()
        return post, other, traversal, hidden

    post, other, traversal, hidden = run(main())
    assert post.status_code == 405
    assert other.status_code == traversal.status_code == hidden.status_code == 404


@pytest.mark.parametrize("bad", ["ftp://example.org", "example.org", ""])
def test_bad_upstream_refused(bad, tmp_path):
    with pytest.raises(InvalidArgumentError):
        ProxyApp(bad, tmp_path)


_names = st.from_regex(r"[a-z][a-z0-9]{0,8}-[0-9]{1,2}\.[0-9]{1,2}\.tar\.gz", fullmatch=True)
_sha = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(
    st.lists(st.tuples(_names, _sha, st.sampled_from([False, True, "broken"])), max_size=8),
    st.sampled_from([JSON_V1, HTML_V1]),
    st.one_of(st.none(), st.text("abcdef0123456789", min_size=1, max_size=20)),
)
def test_cached_page_round_trip(tmp_path_factory, files, media, etag):
    """A page stored on disk (body, media type, URL, ETag) loads back as the same files."""
    from registry_core.index import SimpleFile, SimpleProject, render_project

    root = tmp_path_factory.mktemp("pages")
    app = ProxyApp("https://upstream.test", root)
    entries, seen = [], set()
    for name, sha, yanked in files:
        if name in seen:
            continue
        seen.add(name)
        entries.append(
            SimpleFile(name, f"https://files.test/{name}", {"sha256": sha}, yanked=yanked)
        )
    body = render_project(SimpleProject("proj", tuple(entries)), media)
    app._store_page("proj", body, media, "https://upstream.test/simple/proj/", etag)
    page = app._load_page("proj")
    assert page is not None and page.etag == etag and page.fetched is None
    assert [(f.filename, f.url, f.hashes["sha256"]) for f in page.files.values()] == [
        (f.filename, f.url, f.hashes["sha256"]) for f in entries
    ]
    assert [bool(f.yanked) for f in page.files.values()] == [bool(f.yanked) for f in entries]


def test_page_etag_304_per_media(upstream, tmp_path):
    app = _proxy(upstream, tmp_path)
    path = f"/simple/{PROJECT}/"

    async def main():
        try:
            j = await _get(app, path, accept=JSON_V1)
            h = await _get(app, path, accept=HTML_V1)
            same = await _get(app, path, accept=JSON_V1, **{"if-none-match": j.headers["etag"]})
            cross = await _get(app, path, accept=HTML_V1, **{"if-none-match": j.headers["etag"]})
            return j, h, same, cross
        finally:
            await app.aclose()

    j, h, same, cross = run(main())
    assert j.headers["etag"] != h.headers["etag"] and j.headers["vary"] == "Accept"
    assert same.status_code == 304 and same.content == b""
    assert cross.status_code == 200 and cross.content == h.content
