"""ProxyApp: the pull-through delta proxy as an ASGI app.

pip and uv point at it (``--index-url http://127.0.0.1:3141/simple/``). Project pages come
from the upstream index, are cached on disk with their ETag, revalidated after ``page_ttl``
and served stale when the upstream is down; their file links are rewritten to the proxy's
``/files/<project>/<filename>``. A file is downloaded once (concurrent requests share the
download), as a registry-core delta against the newest older version of the same project the
cache holds when the upstream can send one; a first download (no older version cached) from an
upstream that sends digests (registry-core) asks for the file's EXPANDED patch (docs/wire.md
section 3, "First downloads") and stores the rebuilt artifact; otherwise the file comes in
full. Its bytes are checked against the SHA-256 the page advertises before anything is stored
or served. Files not listed on
their project's page are never fetched.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._util import LRU, SingleFlight, atomic_write
from ..errors import (
    DigestMismatchError,
    InvalidArgumentError,
    ProxyError,
    SignatureError,
    TransportError,
    UpstreamError,
)
from ..telemetry._context import span
from ._cache import FileCache, safe_filename, safe_project
from ._eviction import EvictionPolicy

if TYPE_CHECKING:
    from ..flags import FeatureFlags
    from ..index._simple import SimpleFile, SimpleProject
    from ..signing import TrustedIndex
    from ..transport import Transport

__all__ = ["ProxyApp", "ProxyStats"]

log = logging.getLogger("registry_core.proxy")

UPSTREAM_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
_CHUNK = 256 << 10
_MAX_PAGE = 64 << 20
_MAX_METADATA = 16 << 20
_PAGES_IN_MEMORY = 512
_FETCH_COUNTERS = ("fetch_bytes_wire", "fetch_delta", "fetch_full", "fetch_dcz", "fetch_expanded")
_HEX = frozenset("0123456789abcdefABCDEF")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def normalize(name: str) -> str:
    """PEP 503 normalization (packaging's, the one the index uses too)."""
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


@dataclass(frozen=True)
class ProxyStats:
    """What the proxy moved. ``upstream_bytes``: bytes received from the upstream (pages,
    files, metadata, as on the wire); ``full_equivalent_bytes``: what the files fetched would
    have cost as full downloads; ``deltas``: files fetched as a patch against a cached older
    version; ``fulls``: files fetched without one (first downloads), of which ``expanded`` came
    as an EXPANDED patch (rebuilt and verified here) and the rest as the file itself;
    ``cache_hits``: files served from the cache; ``stale_pages``: pages served from the cache
    because the upstream failed; ``corrupt_refused``: downloads (or cached files) whose bytes
    did not match the page's SHA-256, never stored or served."""

    upstream_bytes: int = 0
    full_equivalent_bytes: int = 0
    deltas: int = 0
    fulls: int = 0
    cache_hits: int = 0
    stale_pages: int = 0
    corrupt_refused: int = 0
    page_fetches: int = 0
    page_revalidated: int = 0
    evictions: int = 0
    cache_bytes: int = 0
    expanded: int = 0


@dataclass
class _Counters:
    upstream_bytes: int = 0
    full_equivalent_bytes: int = 0
    fulls: int = 0
    cache_hits: int = 0
    stale_pages: int = 0
    corrupt_refused: int = 0
    page_fetches: int = 0
    page_revalidated: int = 0


@dataclass
class _Page:
    """An upstream project page: parsed (absolute URLs), with what revalidates it."""

    project: SimpleProject
    etag: str | None
    fetched: float | None  # the proxy clock's time; None: loaded from disk, revalidate first
    files: dict[str, SimpleFile] = field(default_factory=dict)
    rendered: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # media -> body, etag
    stale: bool = False  # the last revalidation failed: served with a Warning header


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class ProxyApp:
    """The pull-through proxy (ASGI). See the module docstring for what it serves.

    upstream: the index's root (``https://pypi.org`` or ``http://127.0.0.1:8080``; a trailing
    ``/simple`` is accepted). https upstreams are reached with TLS verified (``verify``: True,
    or a CA bundle path); an http upstream through httpx's HTTP/1.1 pool, only because its URL
    says so (its files are still checked against the page's SHA-256). cache_dir: where files
    and pages are kept. max_cache_bytes: the files' bound; ``eviction`` picks victims (least
    recently used by default). page_ttl: seconds a page is served without asking upstream.
    transport: a :class:`~registry_core.transport.Transport` of the proxy's own (its fetch
    counters feed :attr:`stats`). max_file_bytes: the largest file fetched; a download is
    held in memory until verified, and at most ``max_downloads`` run at once (others wait),
    so downloads hold at most ``max_downloads * max_file_bytes``. timeout:
    seconds one upstream request (a whole download) may take.

    ``/simple/`` lists the projects whose pages the proxy holds (not the upstream's whole
    list: pip and uv never read it, and PyPI's is hundreds of thousands of names).

    The upstream is trusted to name where its files are (PyPI's pages point at another host);
    from an https upstream only https file URLs are followed.

    trust: a :class:`~registry_core.signing.TrustedIndex` over the upstream's TUF metadata:
    every file is then checked against its signed length and sha256 (and every patch against
    its envelope, through ``Transport.fetch(trust=)``) before it is stored or served, whatever
    the page says; a refusal answers 502 and stores nothing.

    first_downloads ("auto"): a file with no older version in the cache may be asked for as
    an EXPANDED patch when the upstream sends digests (a registry-core index; learned from a
    HEAD or a download, like deltas): the Transport decodes it while it arrives, verifies it,
    and falls back to one plain GET on any failure. "auto": only while plain downloads from
    that host have been measured slower than the Transport's ``first_download_below`` (the
    rebuild costs more than the halved transfer saves on fast links; plain until measured).
    "always" (True): every first download from such an upstream; "never" (False): plain GETs.
    Plain upstreams (pypiserver, PyPI's file host) send no SHA-256 digests and get plain GETs.
    A ``transport`` given to the proxy decides with its own ``first_downloads``.
    """

    def __init__(
        self,
        upstream: str,
        cache_dir: str | os.PathLike[str],
        *,
        max_cache_bytes: int = 10 << 30,
        eviction: EvictionPolicy | None = None,
        page_ttl: float = 60.0,
        verify: bool | str = True,
        transport: Transport | None = None,
        flags: FeatureFlags | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_file_bytes: int = 1 << 30,
        timeout: float = 300.0,
        max_downloads: int = 4,
        trust: TrustedIndex | None = None,
        first_downloads: bool | str = "auto",
    ) -> None:
        upstream = upstream.strip().rstrip("/")
        if upstream.endswith("/simple"):
            upstream = upstream[: -len("/simple")]
        if not upstream.startswith(("https://", "http://")):
            raise InvalidArgumentError(f"upstream must be an http(s):// URL, not {upstream!r}")
        if "@" in upstream.split("://", 1)[1].split("/", 1)[0]:
            raise InvalidArgumentError(
                "credentials in the upstream URL are not supported (they would end up in logs)"
            )
        if page_ttl < 0:
            raise InvalidArgumentError(f"page_ttl must be >= 0, not {page_ttl!r}")
        if max_downloads <= 0:
            raise InvalidArgumentError(f"max_downloads must be positive, not {max_downloads!r}")
        if max_file_bytes <= 0:
            raise InvalidArgumentError(f"max_file_bytes must be positive, not {max_file_bytes!r}")
        self.upstream = upstream
        self.trust = trust
        from ..transport._throughput import first_download_mode

        self.first_downloads = first_download_mode(first_downloads)
        self._schemes = ("http://", "https://") if upstream.startswith("http://") else ("https://",)
        self.cache_dir = Path(cache_dir)
        self.page_ttl = page_ttl
        self.verify = verify
        self.flags = flags
        self.clock = clock
        self.max_file_bytes = max_file_bytes
        self.timeout = timeout
        self.cache = FileCache(
            self.cache_dir, max_bytes=max_cache_bytes, policy=eviction, clock=clock
        )
        self._transport = transport
        self._own_transport = transport is None
        self._base_stats: dict[str, int] = {}
        self._folded: collections.Counter[str] = collections.Counter()
        if transport is not None:
            self._base_stats = dict(transport.stats)
        # parsed pages kept in memory (the rest are on disk, revalidated when read again)
        self._pages: LRU[str, _Page] = LRU(max_entries=_PAGES_IN_MEMORY)
        self._page_flight: SingleFlight[_Page | None] = SingleFlight()
        self._file_flight: SingleFlight[tuple[Path | None, bytes | None]] = SingleFlight()
        self._upstream_digests: bool | None = None  # does the upstream send verifiable files?
        self._c = _Counters()
        self.max_downloads = max_downloads
        self._download_slots = asyncio.Semaphore(max_downloads)

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        """The upstream client (built on first use, inside the serving event loop)."""
        if self._transport is None:
            from ..transport import Transport

            if self.upstream.startswith("http://"):
                import httpx

                self._transport = Transport(
                    transport=httpx.AsyncHTTPTransport(),
                    allow_http=True,
                    flags=self.flags,
                    timeout=self.timeout,
                    max_response_size=self.max_file_bytes,
                    first_downloads=self.first_downloads,
                )
            else:
                self._transport = Transport(
                    verify=self.verify,
                    flags=self.flags,
                    timeout=self.timeout,
                    max_response_size=self.max_file_bytes,
                    first_downloads=self.first_downloads,
                )
            self._base_stats = dict(self._transport.stats)
        return self._transport

    async def aclose(self) -> None:
        """Close the upstream connections (a Transport given to the proxy is left open)."""
        if self._transport is not None and self._own_transport:
            t = self._transport
            for name in _FETCH_COUNTERS:  # stats stay whole after the client is gone
                self._folded[name] += self._transport_count(name)
            self._transport = None
            await t.aclose()

    def _transport_count(self, name: str) -> int:
        if self._transport is None:
            return 0
        return int(self._transport.stats.get(name, 0)) - int(self._base_stats.get(name, 0))

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of the counters (see :class:`ProxyStats`)."""
        c = self._c

        def since(name: str) -> int:
            return self._folded[name] + self._transport_count(name)

        return ProxyStats(
            upstream_bytes=c.upstream_bytes + since("fetch_bytes_wire"),
            full_equivalent_bytes=c.full_equivalent_bytes,
            deltas=since("fetch_delta"),
            fulls=c.fulls + since("fetch_full") + since("fetch_dcz") + since("fetch_expanded"),
            cache_hits=c.cache_hits,
            stale_pages=c.stale_pages,
            corrupt_refused=c.corrupt_refused,
            page_fetches=c.page_fetches,
            page_revalidated=c.page_revalidated,
            evictions=self.cache.evictions,
            cache_bytes=self.cache.total,
            expanded=since("fetch_expanded"),
        )

    # -- pages ---------------------------------------------------------------------------------

    def _page_path(self, project: str) -> Path:
        return self.cache.pages_dir / f"{project}.json"

    def _load_page(self, project: str) -> _Page | None:
        path = self._page_path(project)
        try:
            doc = json.loads(path.read_bytes())
            body = base64.b64decode(doc["body"])
            parsed = _parse(body, doc["media"], doc["url"], project)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, UpstreamError) as exc:
            log.warning("proxy: dropping unreadable cached page %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return _page(parsed, doc.get("etag"), None, self._schemes)

    def _store_page(self, project: str, body: bytes, media: str, url: str, etag: str | None):
        doc = {
            "etag": etag,
            "media": media,
            "url": url,
            "body": base64.b64encode(body).decode("ascii"),
        }
        atomic_write(self._page_path(project), json.dumps(doc).encode())

    async def page(self, project: str, *, refresh: bool = True) -> _Page | None:
        """The upstream page of normalized ``project`` (None: the upstream has no such project).

        refresh=False takes any cached copy, however old; otherwise a copy older than
        ``page_ttl`` is revalidated first. Raises UpstreamError when there is no copy and the
        upstream cannot give one.
        """
        entry = self._pages.get(project)
        if entry is None:
            loaded = await asyncio.to_thread(self._load_page, project)
            if loaded is not None:
                entry = self._pages.get(project) or loaded  # a refresh may have won meanwhile
                self._pages.put(project, entry)
        if entry is not None and not refresh:
            return entry
        if (
            entry is not None
            and entry.fetched is not None
            and self.clock() - entry.fetched < self.page_ttl
        ):
            return entry
        return await self._page_flight.do(("page", project), lambda: self._refresh(project))

    async def _refresh(self, project: str) -> _Page | None:
        entry = self._pages.get(project)
        url = f"{self.upstream}/simple/{quote(project)}/"
        headers = {"accept": UPSTREAM_ACCEPT}
        if entry is not None and entry.etag:
            headers["if-none-match"] = entry.etag
        try:
            with span("registry_core.proxy.page", project=project) as traced:
                r = await self.transport.get(url, headers=headers, max_size=_MAX_PAGE)
                traced.set_attribute("status", r.status)
            self._c.upstream_bytes += len(r.raw_content)
            if r.status == 304 and entry is not None:
                entry.fetched = self.clock()
                entry.stale = False
                self._c.page_revalidated += 1
                return entry
            if r.status == 404:
                self._pages.discard(project)
                with contextlib.suppress(OSError):
                    self._page_path(project).unlink()
                return None
            if r.status != 200:
                raise UpstreamError(f"{url} answered {r.status}")
            media = r.headers.get("content-type", "text/html")
            parsed = await asyncio.to_thread(_parse, r.content, media, r.url, project)
            etag = r.headers.get("etag")
            await asyncio.to_thread(self._store_page, project, r.content, media, r.url, etag)
        except (TransportError, OSError) as exc:
            if entry is None:
                raise UpstreamError(f"upstream page {url} unavailable: {exc}") from exc
            self._c.stale_pages += 1
            entry.stale = True
            log.warning("proxy: upstream failed (%s); serving the cached page of %s", exc, project)
            return entry
        self._c.page_fetches += 1
        fresh = _page(parsed, etag, self.clock(), self._schemes)
        self._pages.put(project, fresh)
        return fresh

    def client_page(self, page: _Page) -> SimpleProject:
        """The page as the proxy serves it: links to ``/files/...``, hashes kept."""
        from ..index._simple import SimpleProject

        files = []
        for f in page.files.values():
            meta: dict[str, str] | bool = False
            if _has_metadata(f):
                assert isinstance(f.core_metadata, dict)
                meta = {"sha256": f.core_metadata["sha256"]}
            files.append(
                replace(
                    f,
                    url=f"/files/{page.project.name}/{quote(f.filename)}",
                    core_metadata=meta,
                )
            )
        return SimpleProject(page.project.name, tuple(files), page.project.versions)

    # -- files ---------------------------------------------------------------------------------

    async def ensure(self, project: str, f: SimpleFile) -> tuple[Path | None, bytes | None]:
        """Make ``f`` (a file of ``project``'s page) available: (cache path, None) once it is
        in the cache, (None, bytes) when it is too large to cache. Checked against the page."""
        key = f"{project}/{f.filename}"
        return await self._file_flight.do(key, lambda: self._ensure(project, key, f))

    async def _ensure(
        self, project: str, key: str, f: SimpleFile
    ) -> tuple[Path | None, bytes | None]:
        want = f.hashes["sha256"].lower()
        if self.trust is not None:  # the page must agree with TUF, cached or not
            await self._check_tuf(f, want)
        if key in self.cache:
            if self.cache.verified.get(key) == want:
                self.cache.touch(key)
                self._c.cache_hits += 1
                return self.cache.path(key), None
            ok = await self._check_cached(key, want)
            if ok:
                self.cache.verified[key] = want
                self.cache.touch(key)
                self._c.cache_hits += 1
                return self.cache.path(key), None
        async with self._download_slots:  # memory: at most this many files held at once
            with span("registry_core.proxy.fetch", project=project, file=f.filename) as traced:
                data = await self._download(project, f, want)
                traced.set_attribute("bytes", len(data))
            stored = await asyncio.to_thread(self.cache.put, key, data)
        if not stored:
            return None, data
        self.cache.verified[key] = want
        return self.cache.path(key), None

    async def _check_tuf(self, f: SimpleFile, want: str) -> None:
        """SignatureError unless the TUF targets metadata lists ``f`` with the page's sha256."""
        assert self.trust is not None
        path = self.trust.target_path(f.url)
        info = self.trust.ready(path) or await asyncio.to_thread(self.trust.targetinfo, path)
        if not hmac.compare_digest(info.hashes["sha256"].lower(), want):
            self._c.corrupt_refused += 1
            raise SignatureError(
                f"{f.url}: the page says sha256 {want}, the TUF targets metadata "
                f"{info.hashes['sha256']}; nothing was stored"
            )

    async def _check_cached(self, key: str, want: str) -> bool:
        """Hash a cached file found at start (or changed upstream); drop it if it differs."""
        got = await asyncio.to_thread(self._hash_cached, key)
        if got is None:
            return False
        if hmac.compare_digest(got, want):
            return True
        self._c.corrupt_refused += 1
        log.warning("proxy: cached %s does not match its page's sha256; refetching", key)
        await asyncio.to_thread(self.cache.remove, key)
        return False

    def _hash_cached(self, key: str) -> str | None:
        h = hashlib.sha256()
        try:
            with open(self.cache.path(key), "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        except FileNotFoundError:
            self.cache.remove(key)
            return None
        return h.hexdigest()

    def _pick_base(self, project: str, filename: str) -> str | None:
        """The newest cached file of ``project`` older than ``filename``, same kind and (for
        wheels) the same tags: the base a delta is asked against."""
        from packaging.version import InvalidVersion

        from ._select import dist_info

        target = dist_info(filename)
        if target is None:
            return None
        best: tuple[Any, str] | None = None
        for name in self.cache.keys(project):
            info = dist_info(name)
            if info is None or info.kind != target.kind or info.tags != target.tags:
                continue
            try:
                if not info.version < target.version:
                    continue
            except (InvalidVersion, TypeError):
                continue
            if best is None or info.version > best[0]:
                best = (info.version, name)
        return None if best is None else best[1]

    async def _download(self, project: str, f: SimpleFile, want: str) -> bytes:
        base_name = self._pick_base(project, f.filename)
        data: bytes | None = None
        if (
            base_name is None
            and self.first_downloads != "never"
            and await self._delta_capable(f.url)
        ):
            # A first download: an EXPANDED patch when the upstream has one (Transport.fetch
            # asks, decodes while it arrives, verifies, and falls back to one plain GET).
            try:
                data = await self.transport.fetch(
                    f.url, max_size=self.max_file_bytes, trust=self.trust
                )
            except DigestMismatchError as exc:
                log.warning("proxy: first download of %s refused (%s); plain GET", f.url, exc)
                data = None
        if base_name is not None and await self._delta_capable(f.url):
            base_key = f"{project}/{base_name}"
            base = await asyncio.to_thread(self.cache.read, base_key, self.max_file_bytes)
            if base is not None:
                self.cache.touch(base_key)
                try:
                    data = await self.transport.fetch(
                        f.url, have=base, max_size=self.max_file_bytes, trust=self.trust
                    )
                except DigestMismatchError as exc:
                    log.warning("proxy: delta fetch of %s refused (%s); full download", f.url, exc)
                    data = None
        if data is None:
            r = await self.transport.get(f.url, max_size=self.max_file_bytes)
            self._c.upstream_bytes += len(r.raw_content)
            if r.status != 200:
                raise UpstreamError(f"{f.url} answered {r.status}")
            self._c.fulls += 1
            data = r.content
            self._learn(r.headers)
        if self.trust is not None:  # TUF first: the page is not what is trusted
            await asyncio.to_thread(self.trust.verify_target, self.trust.target_path(f.url), data)
        got = await asyncio.to_thread(_sha256_hex, data)
        if not hmac.compare_digest(got, want):
            self._c.corrupt_refused += 1
            raise UpstreamError(
                f"{f.url}: the downloaded bytes' sha256 {got} does not match the {want} its "
                "project page advertises; nothing was stored"
            )
        self._c.full_equivalent_bytes += len(data)
        return data

    def _learn(self, headers: Any) -> None:
        if self._upstream_digests:
            return
        from ..wire import etag_to_sha256

        etag = headers.get("etag")
        self._upstream_digests = bool(
            headers.get("repr-digest")
            or headers.get("content-digest")
            or (etag and etag_to_sha256(etag) is not None)
        )

    async def _delta_capable(self, url: str) -> bool:
        """Whether the upstream sends digests with its files (what a delta answer needs);
        asked once with a HEAD, learned from downloads otherwise."""
        if self._upstream_digests is None:
            try:
                r = await self.transport.request("HEAD", url)
            except TransportError as exc:
                log.info("proxy: HEAD %s failed (%s); downloading in full", url, exc)
                return False
            if r.status == 200:
                self._learn(r.headers)
        return bool(self._upstream_digests)

    async def metadata(self, project: str, f: SimpleFile) -> bytes:
        """The core metadata of ``f`` (PEP 658), fetched once and checked against the page."""
        key = f"{project}/{f.filename}.metadata"
        assert isinstance(f.core_metadata, dict)
        want = f.core_metadata["sha256"].lower()
        meta_file = replace(f, filename=f.filename + ".metadata", url=f.url + ".metadata")

        async def fetch() -> tuple[Path | None, bytes | None]:
            if key in self.cache and await self._check_cached(key, want):
                self._c.cache_hits += 1
                return self.cache.path(key), None
            r = await self.transport.get(meta_file.url, max_size=_MAX_METADATA)
            self._c.upstream_bytes += len(r.raw_content)
            if r.status != 200:
                raise UpstreamError(f"{meta_file.url} answered {r.status}")
            if not hmac.compare_digest(_sha256_hex(r.content), want):
                self._c.corrupt_refused += 1
                raise UpstreamError(f"{meta_file.url}: metadata does not match its page's hash")
            await asyncio.to_thread(self.cache.put, key, r.content)
            return None, r.content

        path, data = await self._file_flight.do(key, fetch)
        if data is None:
            assert path is not None
            data = await asyncio.to_thread(path.read_bytes)
        return data

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        head = method == "HEAD"
        try:
            if method not in ("GET", "HEAD"):
                raise _HTTPError(405, "method not allowed", [("allow", "GET, HEAD")])
            await self._route(scope, send, head)
        except _HTTPError as exc:
            await _reply(send, exc.status, str(exc).encode() + b"\n", exc.headers, head)
        except TransportError as exc:  # UpstreamError included: the upstream failed us
            log.warning("proxy: %s", exc)
            await _reply(send, 502, f"upstream failed: {exc}\n".encode(), (), head)
        except SignatureError as exc:  # trust=: the upstream's bytes or metadata do not verify
            log.warning("proxy: refused: %s", exc)
            await _reply(send, 502, f"upstream refused: {exc}\n".encode(), (), head)
        except (ProxyError, OSError) as exc:
            log.error("proxy: %s", exc)
            await _reply(send, 500, b"proxy error (see its log)\n", (), head)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, send: Send, head: bool) -> None:
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path in ("/simple", "/simple/"):
            if path == "/simple":
                raise _HTTPError(301, "moved", [("location", "/simple/")])
            await self._serve_index(send, headers, head)
            return
        if path.startswith("/simple/"):
            rest = path[len("/simple/") :]
            name = rest[:-1] if rest.endswith("/") else rest
            if not name or "/" in name:
                raise _HTTPError(404, "not found")
            norm = normalize(name)
            if norm != name or not rest.endswith("/"):
                raise _HTTPError(301, "moved", [("location", f"/simple/{norm}/")])
            await self._serve_page(send, norm, headers, head)
            return
        if path.startswith("/files/"):
            parts = path[len("/files/") :].split("/")
            if len(parts) != 2:
                raise _HTTPError(404, "not found")
            project, filename = parts[0], parts[1]  # ASGI paths are already decoded
            if not safe_project(project) or not safe_filename(filename):
                raise _HTTPError(404, "not found")
            await self._serve_file(send, project, filename, headers, head)
            return
        raise _HTTPError(404, "not found")

    async def _serve_index(self, send: Send, headers: dict[str, str], head: bool) -> None:
        from ..index._simple import negotiate, render_index

        media = negotiate(headers.get("accept"))
        if media is None:
            raise _HTTPError(406, "no acceptable Simple API media type")
        names = sorted(p.stem for p in self.cache.pages_dir.glob("*.json"))
        body = render_index(names, media)
        await _reply(send, 200, body, [("content-type", media), ("vary", "Accept")], head)

    async def _serve_page(
        self, send: Send, project: str, headers: dict[str, str], head: bool
    ) -> None:
        from ..index._simple import negotiate, render_project

        media = negotiate(headers.get("accept"))
        if media is None:
            raise _HTTPError(406, "no acceptable Simple API media type")
        page = await self.page(project)
        if page is None:
            raise _HTTPError(404, f"no project {project!r} upstream")
        hit = page.rendered.get(media)
        if hit is None:  # once per page version and media type

            def render() -> tuple[bytes, str]:
                body = render_project(self.client_page(page), media)
                return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

            hit = await asyncio.to_thread(render) if len(page.files) > 256 else render()
            page.rendered[media] = hit
        body, etag = hit
        common = [("content-type", media), ("vary", "Accept"), ("etag", etag)]
        if page.stale:
            common.append(("warning", '110 registry-core "Response is Stale"'))
        if headers.get("if-none-match") == etag:
            await _reply(send, 304, b"", common, True)
            return
        await _reply(send, 200, body, common, head)

    async def _file_entry(self, project: str, filename: str) -> SimpleFile:
        page = await self.page(project, refresh=False)
        f = page.files.get(filename) if page is not None else None
        if (
            f is None
            and page is not None
            and page.fetched is not None
            and self.clock() - page.fetched < self.page_ttl
        ):
            raise _HTTPError(404, "not on the project's page")
        if f is None:  # maybe a new release: look at a fresh page once
            page = await self.page(project)
            f = page.files.get(filename) if page is not None else None
        if f is None:
            raise _HTTPError(404, "not on the project's page")
        return f

    async def _serve_file(
        self, send: Send, project: str, filename: str, headers: dict[str, str], head: bool
    ) -> None:
        from ..wire import etag_for_sha256

        if filename.endswith(".metadata"):
            f = await self._file_entry(project, filename[: -len(".metadata")])
            if not _has_metadata(f):
                raise _HTTPError(404, "no core metadata for this file")
            assert isinstance(f.core_metadata, dict)
            meta = await self.metadata(project, f)
            etag = etag_for_sha256(bytes.fromhex(f.core_metadata["sha256"]))
            await _reply(send, 200, meta, [("content-type", "text/plain"), ("etag", etag)], head)
            return
        f = await self._file_entry(project, filename)
        etag = etag_for_sha256(bytes.fromhex(f.hashes["sha256"]))
        common = [("etag", etag), ("content-type", "application/octet-stream")]
        if headers.get("if-none-match") == etag:
            await _reply(send, 304, b"", common, True)
            return
        for _ in range(2):  # a file evicted between its check and its opening is fetched again
            path, data = await self.ensure(project, f)
            if data is not None:
                await _send_bytes(send, data, common, head, headers, etag)
                return
            assert path is not None
            try:
                fh = await asyncio.to_thread(open, path, "rb")
            except FileNotFoundError:
                self.cache.remove(f"{project}/{filename}")
                continue
            try:
                await _stream(send, fh, common, head, headers, etag)
            finally:
                fh.close()
            return
        raise _HTTPError(503, "the file was evicted while being served; retry")

    # -- warm ----------------------------------------------------------------------------------

    async def warm(self, requirements: Iterable[str] | str | os.PathLike[str], **kw: Any) -> Any:
        """Fetch the files ``requirements`` name into the cache; see :func:`warm`."""
        from ._warm import warm_app

        return await warm_app(self, requirements, **kw)


# -- helpers -----------------------------------------------------------------------------------


def _sha_ok(value: str | None) -> bool:
    return bool(value) and len(value or "") == 64 and all(c in _HEX for c in value or "")


def _has_metadata(f: SimpleFile) -> bool:
    """Whether the page advertises ``f``'s core metadata with a usable SHA-256."""
    return isinstance(f.core_metadata, dict) and _sha_ok(f.core_metadata.get("sha256"))


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse(body: bytes, media: str, url: str, project: str) -> SimpleProject:
    from ..index._simple import parse_project

    return parse_project(body, media, url, name=project)


def _page(
    parsed: SimpleProject, etag: str | None, fetched: float | None, schemes: tuple[str, ...]
) -> _Page:
    """Index a parsed page by filename; files without a SHA-256, with an unusable name or a
    URL of another scheme than ``schemes`` are left out (their bytes could not be checked,
    stored safely, or fetched as securely as the page)."""
    files: dict[str, SimpleFile] = {}
    dropped = 0
    for f in parsed.files:
        sha = f.hashes.get("sha256")
        if (
            not _sha_ok(sha)
            or not safe_filename(f.filename)
            or f.filename in files
            or not f.url.startswith(schemes)
        ):
            dropped += 1
            continue
        if f.filename.endswith(".metadata"):
            dropped += 1
            continue
        files[f.filename] = f
    if dropped:
        log.info(
            "proxy: %d file(s) of %s left out (no sha256 or unusable name)", dropped, parsed.name
        )
    return _Page(parsed, etag, fetched, files)


async def _reply(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[str, str]], head: bool
) -> None:
    hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": b"" if head else body})


def _pick_range(headers: dict[str, str], etag: str, size: int) -> Any:
    """The one byte range asked (server/_ranges' rules), UNSATISFIABLE, or None for all."""
    from ..server._ranges import if_range_matches, parse_range

    if not if_range_matches(headers.get("if-range"), etag):
        return None
    return parse_range(headers.get("range"), size)


async def _send_range(
    send: Send, rng: Any, size: int, headers: list[tuple[str, str]]
) -> tuple[int, int] | None:
    """Start the response for ``rng`` over ``size`` bytes: returns (offset, length) to send,
    or None when the answer (416) is complete."""
    from ..server._ranges import UNSATISFIABLE

    hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    hdrs.append((b"accept-ranges", b"bytes"))
    if rng is UNSATISFIABLE:
        hdrs += [(b"content-range", f"bytes */{size}".encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 416, "headers": hdrs})
        await send({"type": "http.response.body", "body": b""})
        return None
    if rng is None:
        status, offset, length = 200, 0, size
    else:
        status, offset, length = 206, rng.start, rng.length
        hdrs.append((b"content-range", rng.content_range().encode()))
    hdrs.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    return offset, length


async def _stream(
    send: Send,
    fh: Any,
    headers: list[tuple[str, str]],
    head: bool,
    request: dict[str, str],
    etag: str,
) -> None:
    size = os.fstat(fh.fileno()).st_size
    span = await _send_range(send, _pick_range(request, etag, size), size, headers)
    if span is None:
        return
    offset, left = span
    if head or left == 0:
        await send({"type": "http.response.body", "body": b""})
        return
    if offset:
        await asyncio.to_thread(fh.seek, offset)
    while left > 0:
        chunk = await asyncio.to_thread(fh.read, min(_CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
    if left > 0:  # the file shrank under us: end the body; the client sees a short response
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_bytes(
    send: Send,
    data: bytes,
    headers: list[tuple[str, str]],
    head: bool,
    request: dict[str, str],
    etag: str,
) -> None:
    span = await _send_range(send, _pick_range(request, etag, len(data)), len(data), headers)
    if span is None:
        return
    offset, length = span
    body = b"" if head else data[offset : offset + length]
    await send({"type": "http.response.body", "body": body})
