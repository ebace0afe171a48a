"""Files through the proxy from our index over TLS: release N in full, N+1 as a 226 delta
against the cached N (stats and the upstream's own request log say so), bytes equal to the
upstream's; concurrent requests share one download; files not on the page are never asked
upstream; core metadata checked and served; a restarted proxy re-verifies its cache."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
from _proxy_support import PROJECT, run

from registry_core.proxy import ProxyApp


def _proxy(upstream, tmp_path, **kw) -> ProxyApp:
    return ProxyApp(upstream.base, tmp_path / "cache", verify=upstream.ca, **kw)


def _client(app: ProxyApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test")


def test_release_then_upgrade_is_a_delta(upstream, built, tmp_path):
    app = _proxy(upstream, tmp_path)
    old, new = built["1.0"].wheel, built["1.1"].wheel

    async def main():
        async with _client(app) as c:
            r1 = await c.get(f"/files/{PROJECT}/{old.name}")
            s1 = app.stats
            r2 = await c.get(f"/files/{PROJECT}/{new.name}")
            s2 = app.stats
        await app.aclose()
        return r1, s1, r2, s2

    r1, s1, r2, s2 = run(main())
    assert app.stats == s2  # the counters outlive the closed upstream client
    assert r1.status_code == 200 and r1.content == old.read_bytes()
    assert r2.status_code == 200 and r2.content == new.read_bytes()
    assert s1.fulls == 1 and s1.deltas == 0
    assert s2.deltas == 1 and s2.fulls == 1
    moved = s2.upstream_bytes - s1.upstream_bytes
    assert moved < len(new.read_bytes()) // 2, (moved, len(new.read_bytes()))
    assert s2.full_equivalent_bytes == len(old.read_bytes()) + len(new.read_bytes())
    assert r2.headers["etag"] == f'"{hashlib.sha256(new.read_bytes()).hexdigest()}"'
    cached = tmp_path / "cache" / "files" / PROJECT / new.name
    assert cached.read_bytes() == new.read_bytes()


def test_sdist_base_is_an_older_sdist(upstream, built, tmp_path):
    """A wheel is never the base of an sdist: 1.1's sdist with only the 1.0 wheel cached is
    fetched in full; with the 1.0 sdist cached it is a delta."""
    app = _proxy(upstream, tmp_path)

    async def main():
        async with _client(app) as c:
            await c.get(f"/files/{PROJECT}/{built['1.0'].wheel.name}")
            r = await c.get(f"/files/{PROJECT}/{built['1.1'].sdist.name}")
            s1 = app.stats
            app.cache.remove(f"{PROJECT}/{built['1.1'].sdist.name}")
            await c.get(f"/files/{PROJECT}/{built['1.0'].sdist.name}")
            r2 = await c.get(f"/files/{PROJECT}/{built['1.1'].sdist.name}")
            s2 = app.stats
        await app.aclose()
        return r, s1, r2, s2

    r, s1, r2, s2 = run(main())
    assert r.content == r2.content == built["1.1"].sdist.read_bytes()
    assert s1.deltas == 0 and s1.fulls == 2
    assert s2.deltas == 1


def test_concurrent_requests_share_one_download(upstream, built, tmp_path):
    app = _proxy(upstream, tmp_path)
    wheel = built["1.0"].wheel
    c = upstream.counting

    async def main():
        before = c.count(wheel.name)
        async with _client(app) as cl:
            rs = await asyncio.gather(*(cl.get(f"/files/{PROJECT}/{wheel.name}") for _ in range(8)))
        await app.aclose()
        return rs, c.count(wheel.name) - before

    rs, asked = run(main())
    assert all(r.status_code == 200 and r.content == wheel.read_bytes() for r in rs)
    assert asked == 1 and app.stats.fulls == 1


def test_unlisted_files_are_never_fetched(upstream, tmp_path):
    app = _proxy(upstream, tmp_path)
    c = upstream.counting

    async def main():
        async with _client(app) as cl:
            r = await cl.get(f"/files/{PROJECT}/{PROJECT.replace('-', '_')}-9.9-py3-none-any.whl")
            other = await cl.get("/files/some-other-project/x-1.0.tar.gz")
        await app.aclose()
        return r, other

    r, other = run(main())
    assert r.status_code == 404 and other.status_code == 404
    assert c.count("-9.9-py3-none-any.whl") == 0 and c.count("x-1.0.tar.gz") == 0


def test_head_etag_and_metadata(upstream, built, tmp_path):
    app = _proxy(upstream, tmp_path)
    wheel = built["1.0"].wheel
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()

    async def main():
        async with _client(app) as cl:
            head = await cl.head(f"/files/{PROJECT}/{wheel.name}")
            same = await cl.get(
                f"/files/{PROJECT}/{wheel.name}", headers={"if-none-match": f'"{sha}"'}
            )
            meta = await cl.get(f"/files/{PROJECT}/{wheel.name}.metadata")
            page = await cl.get(
                f"/simple/{PROJECT}/", headers={"accept": "application/vnd.pypi.simple.v1+json"}
            )
        await app.aclose()
        return head, same, meta, page

    head, same, meta, page = run(main())
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(wheel.read_bytes())
    assert same.status_code == 304
    assert meta.status_code == 200 and b"Name: demo-proxy-pkg" in meta.content
    advertised = next(
        f["core-metadata"] for f in page.json()["files"] if f["filename"] == wheel.name
    )
    assert hashlib.sha256(meta.content).hexdigest() == advertised["sha256"]


def test_restart_reverifies_and_replaces_a_tampered_file(upstream, built, tmp_path):
    wheel = built["1.0"].wheel
    first = _proxy(upstream, tmp_path)

    async def fill():
        async with _client(first) as cl:
            await cl.get(f"/files/{PROJECT}/{wheel.name}")
            await cl.get(f"/files/{PROJECT}/{built['1.0'].sdist.name}")
        await first.aclose()

    run(fill())
    cached = tmp_path / "cache" / "files" / PROJECT / wheel.name
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF
    cached.write_bytes(bytes(data))
    second = _proxy(upstream, tmp_path)
    assert second.stats.cache_bytes == len(data) + built["1.0"].sdist.stat().st_size

    async def again():
        async with _client(second) as cl:
            w = await cl.get(f"/files/{PROJECT}/{wheel.name}")
            s = await cl.get(f"/files/{PROJECT}/{built['1.0'].sdist.name}")
        await second.aclose()
        return w, s

    w, s = run(again())
    assert w.content == wheel.read_bytes() and s.content == built["1.0"].sdist.read_bytes()
    st = second.stats
    assert st.corrupt_refused == 1 and st.cache_hits == 1 and st.fulls == 1
    assert cached.read_bytes() == wheel.read_bytes()


def test_ranges_on_cached_and_uncacheable_files(upstream, built, tmp_path):
    """bytes=a-b, a suffix (what pip and uv send to read a wheel's central directory), 416
    past the end, If-Range with another ETag -> the whole file; the same for a file too large
    for the cache (served from memory)."""
    wheel = built["1.0"].wheel
    data = wheel.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    path = f"/files/{PROJECT}/{wheel.name}"

    async def ask(app):
        async with _client(app) as cl:
            out = [
                await cl.get(path, headers={"range": "bytes=10-19"}),
                await cl.get(path, headers={"range": "bytes=-100"}),
                await cl.get(path, headers={"range": f"bytes={len(data)}-"}),
                await cl.get(path, headers={"range": "bytes=0-9", "if-range": '"other"'}),
                await cl.get(path, headers={"range": "bytes=0-9", "if-range": f'"{sha}"'}),
            ]
        await app.aclose()
        return out

    for bound in (10 << 20, len(data) - 1):
        app = _proxy(upstream, tmp_path / str(bound), max_cache_bytes=bound)
        part, suffix, past, other, same = run(ask(app))
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        assert suffix.status_code == 206 and suffix.content == data[-100:]
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
        assert other.status_code == 200 and other.content == data
        assert same.status_code == 206 and same.content == data[:10]


def test_downloads_are_bounded(upstream, built, tmp_path):
    """max_downloads=1: four different files asked at once reach the upstream one by one."""
    app = _proxy(upstream, tmp_path, max_downloads=1)
    files = [p for b in built.values() for p in (b.wheel, b.sdist)]
    c = upstream.counting

    async def main():
        c.peak = 0
        async with _client(app) as cl:
            await cl.get(f"/simple/{PROJECT}/")
            rs = await asyncio.gather(*(cl.get(f"/files/{PROJECT}/{p.name}") for p in files))
        await app.aclose()
        return rs

    rs = run(main())
    assert [r.content for r in rs] == [p.read_bytes() for p in files]
    assert c.peak == 1
