"""IndexApp: the package index over HTTP (Simple API pages, uploads, core metadata).

Routes (everything else goes to the file server, a :class:`RegistryApp` over the index's
storage, which serves the distribution files at their storage paths with ETags, digests,
Range and deltas):

- ``GET /simple/``, ``GET /simple/<project>/``: PEP 503/691 pages, ``Accept``-negotiated,
  cached per (project, media type, index serial); ETag, 304, ``Vary: Accept``; a
  non-normalized name or a missing trailing slash is redirected (301) to the canonical URL.
- ``GET /<file path>.metadata``: the file's core metadata (PEP 658/714).
- ``POST /legacy/`` and ``POST /``: the upload API twine and ``uv publish`` speak
  (``multipart/form-data``, ``:action=file_upload``, HTTP Basic ``__token__:<token>``).
- ``GET /``: a small page linking to ``/simple/``.

``base_path`` is where the app is mounted (``/t/acme/main`` under a tenant): every link and
redirect it writes starts with it. When an authentication middleware put a principal in the
scope (``PRINCIPAL_KEY``: :class:`registry_core.server.MultiTenantApp`), every read is
authorized (``read`` on the index, or on the project a path names) and what the principal may
not read is the uniform 404; uploads use that principal. Without one (an IndexApp served on its
own) reads are public and an upload's Basic ``__token__`` credential is checked by the index.

The index's calls block (SQLite, file I/O), so they run on worker threads; a cached page costs
one (the serial read). The index package is imported on first use, so ``registry_core.server``
stays cheap to import.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import gzip
import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._util import LRU, SingleFlight
from ..errors import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    PackageIndexError,
    PermissionDeniedError,
    UploadRejectedError,
)
from ..telemetry._context import span
from ._app import fold_headers
from ._auth_middleware import PRINCIPAL_KEY, TENANT_KEY, send_not_found

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..auth import Principal
    from ..index import Index
    from ..index._model import FileRecord
    from ._app import RegistryApp

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = ["IndexApp"]

log = logging.getLogger("registry_core.server.index")

_FORM_MARGIN = 16 << 20  # room for the text fields around the file part
_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".metadata")
_GZIP_MIN = 512  # smaller pages are sent as they are

_Page = tuple[bytes, str, "bytes | None"]  # body, ETag, gzip-coded body

_HOME = """<!DOCTYPE html>
<html>
  <head><title>registry-core package index</title></head>
  <body>
    <h1>registry-core package index</h1>
    <p><a href="{base}/simple/">Simple index</a></p>
  </body>
</html>
"""


def _text(status: int, message: str, extra: list[tuple[str, str]] | None = None) -> _Reply:
    body = (message.replace("\r", " ").replace("\n", " ") + "\n").encode()
    headers = [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))]
    return _Reply(status, headers + (extra or []), body)


class _Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body


class IndexApp:
    """ASGI app serving ``index`` (a :class:`registry_core.index.Index`).

    ``files``: the app serving the distribution files (and anything that is not an index
    route); default ``RegistryApp(index.storage)``. ``max_upload_bytes``: the largest file an
    upload may carry (default the index's ``max_file_bytes``); the whole body may exceed it by
    a margin for the text fields. ``precompute_previous``: after an upload, patches from this
    many earlier releases to the new file are computed in the background
    (``files.precompute``), so the first client upgrading gets a delta at once; and the new
    file's first-download patch (``files.precompute_first``) for clients that hold nothing.
    ``precompute_bases``: a callable ``(record, candidates) -> bases`` choosing which of the
    ``precompute_candidates`` older files (same flavour, newest first) to compute patches from,
    e.g. :meth:`registry_core.ml._predict.PredictivePrecompute.bases` (by predicted demand);
    None keeps the newest ``precompute_previous``.
    ``cache_control``: sent on index pages. ``page_cache_bytes``: bound of the rendered-page
    cache. ``upload_workers``: uploads processed at once (the rest wait for a thread).
    ``serial_ttl``: how long (seconds) the index's serial, which keys the page cache, is
    trusted before it is read again; a change made elsewhere (a yank from the CLI, another
    instance's upload) shows within that time, an upload through this app at once. 0 reads it
    on every request. ``tuf``: a :class:`registry_core.signing.TufRepository` (or a
    :class:`TufApp` over one) whose metadata is served at ``/tuf/`` (its caller attaches it
    to the index so uploads update it). ``base_path``: the mount point, prefixed to every link
    and redirect ("" at the root; no trailing slash).

    ``stats``: counters (page builds and cache hits, uploads, metadata hits); tests read them
    to prove which requests a client made.
    """

    def __init__(
        self,
        index: Index,
        *,
        files: RegistryApp | Any | None = None,
        max_upload_bytes: int | None = None,
        precompute_previous: int = 3,
        precompute_bases: Callable[[FileRecord, list[FileRecord]], list[FileRecord]] | None = None,
        precompute_candidates: int = 20,
        cache_control: str = "max-age=60, public",
        page_cache_bytes: int = 64 << 20,
        upload_workers: int = 2,
        serial_ttl: float = 0.05,
        tuf: Any | None = None,
        base_path: str = "",
    ) -> None:
        if base_path and (not base_path.startswith("/") or base_path.endswith("/")):
            raise InvalidArgumentError(
                f"base_path must be empty or start with / and not end with one, got {base_path!r}"
            )
        if max_upload_bytes is None:
            max_upload_bytes = int(getattr(index, "max_file_bytes", 100 << 20))
        if max_upload_bytes <= 0:
            raise InvalidArgumentError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
        if not serial_ttl >= 0:
            raise InvalidArgumentError(f"serial_ttl must be >= 0 seconds, got {serial_ttl!r}")
        if upload_workers < 1:
            raise InvalidArgumentError("upload_workers must be >= 1")
        if precompute_previous < 0:
            raise InvalidArgumentError("precompute_previous must be >= 0")
        if files is None:
            from ._app import RegistryApp

            files = RegistryApp(index.storage)
        # the index package is loaded by now (``index`` is an Index): its one copy of the
        # PEP 503 name rules, imported here so that importing the server does not load it
        from ..index._names import is_valid_name, normalize

        self._valid_name, self._normalize = is_valid_name, normalize
        from ..index._names import parse_filename

        self._parse_filename = parse_filename
        self.index = index
        self.files = files
        self.base_path = base_path
        self._home = _HOME.format(base=quote(base_path)).encode()
        # tuf: a signing.TufRepository, its metadata served at /tuf/ (server/_tuf_routes.py)
        self.tuf_app: Any | None = None
        if tuf is not None:
            from ._tuf_routes import TufApp

            self.tuf_app = tuf if isinstance(tuf, TufApp) else TufApp(tuf)
        self.max_upload_bytes = max_upload_bytes
        self.precompute_previous = precompute_previous
        self.precompute_bases = precompute_bases
        self.precompute_candidates = max(precompute_previous, precompute_candidates)
        self.cache_control = cache_control
        self.serial_ttl = float(serial_ttl)
        self._serial_seen: tuple[int | None, float] = (None, 0.0)
        self._pages: LRU[tuple[str | None, str, int], _Page] = LRU(
            max_entries=1 << 14,
            max_bytes=page_cache_bytes,
            weigh=lambda v: len(v[0]) + len(v[2] or b"") + 128,
        )
        self._flight: SingleFlight[_Page | None] = SingleFlight()
        self.stats: dict[str, int] = {
            "page_builds": 0,
            "page_hits": 0,
            "uploads": 0,
            "upload_errors": 0,
            "metadata": 0,
        }
        self.metadata_hits: dict[str, int] = {}
        self._count_lock = threading.Lock()
        # uploads (hashing, unpacking, fsync) get threads of their own, so page requests
        # never queue behind them in the default executor
        self._upload_pool = ThreadPoolExecutor(upload_workers, thread_name_prefix="rc-upload")
        self._tmp_dir: str | None = None  # big upload bodies spool here, beside the storage
        try:
            state_dir = getattr(index.storage, "state_dir", None)
            if state_dir is not None:
                (state_dir / "tmp").mkdir(exist_ok=True)
                self._tmp_dir = str(state_dir / "tmp")
        except OSError:
            log.warning("no spool directory in the storage's state dir; using the system's")

    def close(self) -> None:
        """Stop the upload threads and the file server's workers (the index stays open:
        its owner closes it)."""
        self._upload_pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.files, "close", None)
        if close is not None:
            close()

    def _count(self, name: str) -> None:
        with self._count_lock:
            self.stats[name] += 1

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # the file server answers lifespan; at shutdown the upload threads stop too
            async def send_lifespan(message: dict[str, Any]) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    self._upload_pool.shutdown(wait=False, cancel_futures=True)
                await send(message)

            await self.files(scope, receive, send_lifespan)
            return
        if scope["type"] != "http":
            await self.files(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        reply: _Reply | None = None
        upload = method == "POST" and path in ("/", "/legacy", "/legacy/")
        principal: Principal | None = scope.get(PRINCIPAL_KEY)
        if principal is not None and not upload and not self._may_read(principal, path):
            await _drain_body(receive)
            await send_not_found(send, method)
            return
        if self.base_path:
            send = self._rebase_links(send)
        if self.tuf_app is not None and self.tuf_app.handles(path):
            await self.tuf_app(scope, receive, send)
            return
        if path == "/simple" or path.startswith("/simple/"):
            if method in ("GET", "HEAD"):
                reply = await self._simple(scope, path)
            else:
                reply = _text(405, "method not allowed", [("allow", "GET, HEAD")])
        elif upload:
            with span("registry_core.upload", tenant=scope.get(TENANT_KEY)) as traced:
                reply = await self._upload(scope, receive, principal)
                traced.set_attribute("status", 404 if reply is None else reply.status)
            if reply is None:  # an upload by someone who may not see the index or project
                await send_not_found(send, method)
                return
        elif path == "/" and method in ("GET", "HEAD"):
            reply = _Reply(
                200,
                [
                    ("content-type", "text/html; charset=utf-8"),
                    ("content-length", str(len(self._home))),
                ],
                self._home,
            )
        elif path.endswith(".metadata") and method in ("GET", "HEAD"):
            reply = await self._metadata(scope, path)
        if reply is None:
            await self.files(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})

    # -- authorization -----------------------------------------------------------------------

    def _may_read(self, principal: Principal, path: str) -> bool:
        """``read`` on the project ``path`` names (a project page, a file in the project's
        directory, its metadata: an index-wide role covers it), else on the whole index
        (the listing, TUF metadata, the home page). One decision, so one audit event."""
        project = self._project_of(path)
        if project is not None:
            return bool(self.index.authorize(principal, "read", project))
        return bool(self.index.authorize(principal, "read"))

    def _project_of(self, path: str) -> str | None:
        if self.tuf_app is not None and self.tuf_app.handles(path):
            return None
        parts = path.lstrip("/").split("/")
        if parts[0] == "simple":
            parts = parts[1:]
        name = parts[0] if parts else ""
        if not name or not self._valid_name(name):
            return None
        return str(self._normalize(name))

    def _rebase_links(self, send: Send) -> Send:
        """``send`` with the file server's root-relative ``Link`` targets under base_path."""
        base = self.base_path.encode("latin-1")

        async def rebased(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, v.replace(b"</", b"<" + base + b"/") if k.lower() == b"link" else v)
                        for k, v in message.get("headers", [])
                    ],
                }
            await send(message)

        return rebased

    # -- Simple API --------------------------------------------------------------------------

    async def _simple(self, scope: Scope, path: str) -> _Reply | None:
        from ..index._simple import HTML_LEGACY, JSON_V1, negotiate

        rest = path[len("/simple") :]
        query = scope.get("query_string", b"").decode("latin-1")
        suffix = f"?{query}" if query else ""
        if rest == "":
            location = f"{quote(self.base_path)}/simple/{suffix}"
            return _Reply(301, [("location", location), ("content-length", "0")])
        parts = rest[1:].split("/")
        if parts == [""]:
            name: str | None = None
        elif len(parts) == 1:
            # /simple/<name>: a project page without its slash, unless it is a file that
            # happens to live under simple/ (a project named "simple" keeps its files there)
            if parts[0].endswith(_DIST_SUFFIXES):
                return None
            if not self._valid_name(parts[0]):
                return _text(404, "no such project")
            return self._redirect(self._normalize(parts[0]), suffix)
        elif len(parts) == 2 and parts[1] == "":
            if not self._valid_name(parts[0]):
                return _text(404, "no such project")
            name = self._normalize(parts[0])
            if name != parts[0]:
                return self._redirect(name, suffix)
        else:
            return None  # a file below simple/: the file server's
        headers = fold_headers(scope["headers"])
        media = negotiate(headers.get("accept"))
        if media is None:
            return _text(
                406,
                "none of the Simple API's media types is acceptable: "
                f"{JSON_V1}, application/vnd.pypi.simple.v1+html, text/html",
                [("vary", "Accept")],
            )
        page = await self._page(name, media)
        if page is None:
            return _text(404, f"no project named {name!r}", [("vary", "Accept")])
        body, etag, gz = page
        coding = []
        if gz is not None and _wants_gzip(headers.get("accept-encoding")):
            # the gzip representation has its own strong ETag (RFC 9110 8.8.3)
            body, etag = gz, etag[:-1] + '-gz"'
            coding = [("content-encoding", "gzip")]
        common = [
            ("etag", etag),
            ("vary", "Accept, Accept-Encoding"),
            ("cache-control", self.cache_control),
        ]
        inm = headers.get("if-none-match")
        if inm and _etag_matches(inm, etag):
            return _Reply(304, common)
        content_type = media if media != HTML_LEGACY else "text/html; charset=utf-8"
        return _Reply(
            200,
            [
                ("content-type", content_type),
                ("content-length", str(len(body))),
                *coding,
                *common,
            ],
            body,
        )

    def _redirect(self, name: str, suffix: str) -> _Reply:
        return _Reply(
            301,
            [
                ("location", f"{quote(self.base_path)}/simple/{quote(name)}/{suffix}"),
                ("content-length", "0"),
            ],
        )

    async def _page(self, name: str | None, media: str) -> _Page | None:
        """The rendered page, its ETag and its gzip form; None for an unknown project."""
        serial = await self._current_serial()
        key = (name, media, serial)
        hit = self._pages.get(key)
        if hit is not None:
            self._count("page_hits")
            return hit

        async def build() -> _Page | None:
            page = await asyncio.to_thread(self._build, name, media, serial)
            if page is not None:
                self._pages.put(key, page)
            return page

        return await self._flight.do(key, build)

    async def _current_serial(self) -> int:
        """The index's serial, read (on a worker thread: it is a database query) at most once
        per ``serial_ttl`` seconds; an upload through this app forgets it at once."""
        value, at = self._serial_seen
        now = time.monotonic()
        if value is not None and now - at < self.serial_ttl:
            return value
        value = await asyncio.to_thread(self._serial)
        self._serial_seen = (value, now)
        return value

    def _serial(self) -> int:
        return int(self.index.serial)

    def _build(self, name: str | None, media: str, serial: int) -> _Page | None:
        """Render one page (worker thread: the index's calls block)."""
        from ..index._simple import SimpleProject, render_index, render_project, simple_file

        self._count("page_builds")
        if name is None:
            body = render_index([p.name for p in self.index.projects()], media)
        else:
            project = self.index.project(name)
            if project is None:
                return None
            records = self.index.files(project.name)
            files = tuple(simple_file(r, self._url(r)) for r in records)
            versions = tuple(dict.fromkeys(r.version for r in records))
            body = render_project(SimpleProject(project.name, files, versions), media)
        digest = hashlib.sha256(body).hexdigest()[:16]
        gz = None
        if len(body) >= _GZIP_MIN:  # pages compress ~10x; pip and uv accept gzip
            gz = gzip.compress(body, compresslevel=6, mtime=0)
        return body, f'"{serial}-{digest}"', gz

    def _url(self, record: FileRecord) -> str:
        return quote(self.base_path) + "/" + quote(record.path)

    # -- core metadata -----------------------------------------------------------------------

    async def _metadata(self, scope: Scope, path: str) -> _Reply | None:
        file_path = path[1 : -len(".metadata")]
        filename = file_path.rsplit("/", 1)[-1]
        if not filename:
            return None
        found = await asyncio.to_thread(self._load_metadata, filename, file_path)
        if found is None:
            return None  # not an indexed file's metadata: maybe a stored file of that name
        data, sha = found
        with self._count_lock:
            self.stats["metadata"] += 1
            if len(self.metadata_hits) < 1 << 16 or filename in self.metadata_hits:
                self.metadata_hits[filename] = self.metadata_hits.get(filename, 0) + 1
        etag = f'"{sha}"'
        digest = "sha-256=:" + base64.b64encode(bytes.fromhex(sha)).decode() + ":"
        common = [("etag", etag), ("cache-control", "max-age=31536000, immutable")]
        headers = fold_headers(scope["headers"])
        inm = headers.get("if-none-match")
        if inm and _etag_matches(inm, etag):
            return _Reply(304, common)
        return _Reply(
            200,
            [
                ("content-type", "text/plain; charset=utf-8"),
                ("content-length", str(len(data))),
                ("repr-digest", digest),
                ("content-digest", digest),
                *common,
            ],
            data,
        )

    def _load_metadata(self, filename: str, file_path: str) -> tuple[bytes, str] | None:
        record = self.index.file(filename)
        if record is None or record.path != file_path or not record.metadata_sha256:
            return None
        data = self.index.metadata(filename)
        if data is None:
            return None
        sha = hashlib.sha256(data).hexdigest()
        if sha != record.metadata_sha256:
            log.error("core metadata of %s does not match its recorded digest", filename)
            return None
        return data, sha

    # -- uploads -----------------------------------------------------------------------------

    async def _upload(
        self, scope: Scope, receive: Receive, principal: Principal | None
    ) -> _Reply | None:
        """The upload's answer; None for the uniform 404 (the uploader may not see where it
        tried to upload, so it is not told 403)."""
        body = _Body(receive)
        try:
            record = await self._receive_upload(scope, body, principal)
        except PermissionDeniedError as exc:
            self._count("upload_errors")
            await body.drain(1 << 20)
            if principal is not None and not self._may_see_upload(principal, body.filename):
                return None
            return _text(exc.status, str(exc))
        except NotFoundError:
            self._count("upload_errors")
            await body.drain(1 << 20)
            return None
        except Exception as exc:
            self._count("upload_errors")
            if not isinstance(exc, PackageIndexError):  # a bug or an I/O failure: say little
                log.exception("upload failed")
                exc = PackageIndexError("the upload failed on the server; nothing was stored")
            # read what is left of a refused body (bounded), so the client sees the answer
            # instead of a reset connection
            await body.drain(1 << 20)
            extra = []
            if isinstance(exc, AuthenticationError):
                extra.append(("www-authenticate", 'Basic realm="registry-core"'))
            return _text(exc.status, str(exc), extra)
        self._count("uploads")
        self._serial_seen = (None, 0.0)
        await self._precompute(record)
        return _text(200, "OK")

    def _may_see_upload(self, principal: Principal, filename: str | None) -> bool:
        """May the refused uploader read the index, or the project it uploaded to?"""
        if self.index.authorize(principal, "read"):
            return True
        try:
            project = self._parse_filename(filename).project if filename else None
        except InvalidArgumentError:
            return False
        return project is not None and bool(self.index.authorize(principal, "read", project))

    async def _receive_upload(
        self, scope: Scope, body: _Body, principal: Principal | None
    ) -> FileRecord:
        from ._multipart import UploadForm

        headers = fold_headers(scope["headers"])
        limit = self.max_upload_bytes + _FORM_MARGIN
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise UploadRejectedError("malformed Content-Length")
            body.declared = int(length)
            if int(length) > limit:
                raise UploadRejectedError(
                    f"upload of {length} bytes is over the index's limit", status=413
                )
        token = None
        if principal is None:  # served on its own: the index checks the Basic credential
            token = _basic_token(headers.get("authorization"))
            if token is None:
                raise AuthenticationError("uploads need a token: username __token__, password it")
        elif not principal.authenticated:
            raise AuthenticationError("uploads need a token: username __token__, password it")
        form = UploadForm(
            headers.get("content-type", ""),
            max_file_bytes=self.max_upload_bytes,
            tmp_dir=self._tmp_dir,
        )
        try:
            while (chunk := await body.next()) is not None:
                if body.seen > limit:
                    raise UploadRejectedError("upload body is over the index's limit", status=413)
                if chunk:
                    form.feed(chunk)
            form.finish()
            action = form.first(":action")
            if action != "file_upload":
                raise UploadRejectedError(
                    f"unsupported :action {action!r}; only file_upload is supported"
                )
            if form.first("protocol_version") not in (None, "1"):
                raise UploadRejectedError("unsupported protocol_version (only 1)")
            assert form.file is not None and form.filename is not None
            filename = form.filename
            if "/" in filename or "\\" in filename or not filename.strip():
                raise UploadRejectedError(f"the upload's filename {filename!r} is not a plain name")
            loop = asyncio.get_running_loop()
            who: dict[str, Any] = {"principal": principal}
            if principal is None:
                who = {"token": token}
            upload = functools.partial(
                self.index.upload,
                filename,
                form.file,
                **who,
                sha256=form.first("sha256_digest") or None,
                md5=form.first("md5_digest") or None,
                blake2_256=form.first("blake2_256_digest") or None,
                name=form.first("name") or None,
                version=form.first("version") or None,
            )
            body.filename = filename
            return await loop.run_in_executor(self._upload_pool, upload)
        finally:
            await asyncio.to_thread(form.close)

    async def _precompute(self, record: FileRecord) -> None:
        """Ask the file server to compute the new file's first-download patch and patches
        from earlier releases (best effort: the upload has succeeded whatever happens here).
        Both only queue work for the file server's background worker."""
        first = getattr(self.files, "precompute_first", None)
        if first is not None:
            try:
                first(record.path)
            except Exception:
                log.exception("could not schedule the first-download patch of %s", record.filename)
        precompute = getattr(self.files, "precompute", None)
        if precompute is None or self.precompute_previous == 0:
            return
        try:
            if self.precompute_bases is None:
                bases = await asyncio.to_thread(
                    self.index.previous, record, self.precompute_previous
                )
            else:
                candidates = await asyncio.to_thread(
                    self.index.previous, record, self.precompute_candidates
                )
                bases = (
                    await asyncio.to_thread(self.precompute_bases, record, candidates)
                    if candidates
                    else []
                )
            if bases:
                await asyncio.to_thread(precompute, record.path, [b.path for b in bases])
        except Exception:
            log.exception("could not schedule patches for %s", record.filename)


class _Body:
    """A request body read message by message; remembers whether it has ended."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.seen = 0
        self.done = False
        self.declared: int | None = None  # Content-Length, when sent and well-formed
        self.filename: str | None = None  # the uploaded file's name, once the form is read

    async def next(self) -> bytes | None:
        """The next piece; None once the body has ended."""
        if self.done:
            return None
        message = await self._receive()
        if message["type"] != "http.request":
            self.done = True
            raise UploadRejectedError("the client went away during the upload")
        chunk: bytes = message.get("body", b"")
        self.seen += len(chunk)
        if not message.get("more_body"):
            self.done = True
        return chunk

    async def drain(self, limit: int) -> None:
        """Read and drop up to ``limit`` more bytes; nothing when the declared length says
        more is coming (the server then closes the connection after the answer)."""
        if self.declared is not None and self.declared - self.seen > limit:
            return
        start = self.seen
        try:
            while self.seen - start <= limit and await self.next() is not None:
                pass
        except UploadRejectedError:
            pass


async def _drain_body(receive: Receive, limit: int = 1 << 20) -> None:
    """Read and drop a request body we answer without (bounded)."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def _basic_token(value: str | None) -> str | None:
    """The token from ``Authorization: Basic __token__:<token>``; None without the header."""
    if value is None or not value.strip():
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationError("use HTTP Basic authentication with username __token__")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep or user != "__token__":
        raise AuthenticationError("the username must be __token__ and the password a token")
    return password


def _wants_gzip(accept_encoding: str | None) -> bool:
    if not accept_encoding:
        return False
    from ..compress import negotiate as negotiate_coding

    try:
        return negotiate_coding(accept_encoding, ["gzip", "identity"]) == "gzip"
    except Exception:  # a malformed header gets the page as it is
        return False


def _etag_matches(inm: str, etag: str) -> bool:
    from ..wire import parse_entity_tags

    try:
        tags = parse_entity_tags(inm)
    except InvalidArgumentError:
        return False
    if tags is None:
        return True
    return any(t.removeprefix("W/") == etag for t in tags)
