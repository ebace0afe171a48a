"""BazelHTTPTier: the action cache and CAS on a Bazel HTTP remote cache (nginx, bazel-remote).

The protocol is Bazel's "HTTP caching protocol" as bazel-remote documents it::

    GET|HEAD|PUT  <url>/[<instance>/]ac/<64 hex action key>   a REAPI ActionResult (protobuf)
    GET|HEAD|PUT  <url>/[<instance>/]cas/<sha256 hex>          the blob whose SHA-256 that is

``200`` is a hit, ``404`` a miss, ``2xx`` a stored ``PUT`` (nginx answers 201 or 204,
bazel-remote 200); anything else, a redirect, a connection refused, a timeout or a body that
stops short is a :class:`~registry_core.errors.CacheError` (``BuildCache.run`` warns and goes on
locally). Every blob read is checked against its digest while it streams in: a wrong size or
SHA-256 is a miss, logged as a warning on ``registry_core.cache``, never bytes handed back.

zstd (bazel-remote only): with ``zstd_uploads`` a CAS ``PUT`` carries ``Content-Encoding: zstd``
and ``X-Digest-SizeBytes: <uncompressed size>`` under the uncompressed digest; with
``zstd_downloads`` a CAS ``GET`` sends ``Accept-Encoding: zstd`` and decodes a ``Content-Encoding:
zstd`` answer, bounded by the digest's size. nginx stores request bodies as given, so against
nginx both must stay off (a compressed body would sit under the uncompressed digest and fail
every read's check). Action results always travel uncompressed.

httpx (a core dependency) is imported when the first tier is made, not with ``registry_core``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from .._util._atomic import default_file_mode
from ..errors import CacheError, InvalidArgumentError, InvalidTypeError
from ._reapi import MAX_RESULT_BYTES, Digest
from ._tiers import check_action_key

if TYPE_CHECKING:
    import httpx

__all__ = ["PASSWORD_ENV", "TOKEN_ENV", "USER_ENV", "BazelHTTPTier", "BazelTierStats"]

log = logging.getLogger("registry_core.cache")

TOKEN_ENV = "REGISTRY_CORE_REMOTE_CACHE_TOKEN"  # a bearer token
USER_ENV = "REGISTRY_CORE_REMOTE_CACHE_USER"  # basic auth, with PASSWORD_ENV
PASSWORD_ENV = "REGISTRY_CORE_REMOTE_CACHE_PASSWORD"

_CHUNK = 1 << 20
_MIN_RATE = 1 << 20  # bytes/s a body must keep up, on average, beyond the timeout
_SMALL_BODY = 64 << 10  # error bodies up to this are drained, so the connection is kept
_ZSTD_WINDOW = 1 << 27  # zstd's default decoder limit (128 MiB): bounds decoder memory
_MAX_BAD = 10_000  # corrupt digests remembered (so has_blob makes callers overwrite them)
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass
class BazelTierStats:
    """Counters of one BazelHTTPTier (a snapshot from ``tier.stats``)."""

    hits: int = 0  # GETs answered with content that passed its checks
    misses: int = 0  # 404s
    corrupt: int = 0  # blobs whose size or SHA-256 was wrong (each also a miss)
    errors: int = 0  # requests that raised CacheError
    bytes_read: int = 0  # payload bytes received (decoded)
    bytes_written: int = 0  # payload bytes sent (as sent: compressed when zstd)
    requests: int = 0


class _TooLarge(Exception):
    """A body went past its bound (internal: callers turn it into a miss or an error)."""


def _redact(url: str) -> str:
    """``url`` without user info (messages, reprs and ``name`` never carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_instance(instance: object) -> str:
    if not isinstance(instance, str):
        raise InvalidTypeError(f"instance must be a str or None, got {type(instance).__name__}")
    segments = instance.split("/")
    if (
        len(instance) > 1024
        or not all(_SEGMENT.fullmatch(s) for s in segments)
        or any(s in (".", "..") for s in segments)
    ):
        raise InvalidArgumentError(
            "an instance name is '/'-separated segments of letters, digits, '_', '.' and '-' "
            f"(no empty, '.' or '..' segment, at most 1024 characters), got {instance!r:.80}"
        )
    return instance


def _check_digest(digest: object) -> Digest:
    if not isinstance(digest, Digest):
        raise InvalidTypeError(f"expected a Digest, got {type(digest).__name__}")
    return digest


class _IterReader:
    """A ``read(n)`` view of an iterator of byte chunks (what zstandard's decoder reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        if size < 0 or size >= len(self._pending):
            out, self._pending = self._pending, b""
            return out
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


class BazelHTTPTier:
    """An :class:`~registry_core.cache._tiers.ActionTier` on a Bazel HTTP remote cache.

    ``url`` is the cache's base (``http://cache.internal:8080``, ``https://host/cache``); action
    results and blobs go under ``<url>/[<instance>/]ac/`` and ``.../cas/``. Credentials, at most
    one kind: ``bearer_token``, ``basic_auth=(user, password)``, user info in ``url``, or, when
    ``env`` is given (``os.environ``), ``REGISTRY_CORE_REMOTE_CACHE_TOKEN`` or
    ``REGISTRY_CORE_REMOTE_CACHE_USER`` + ``..._PASSWORD``; they are sent only over https or to
    a loopback host, never logged, never in ``repr``. ``headers`` are sent with every request.
    TLS is verified (``verify`` may name a CA bundle or be an ``ssl.SSLContext``; ``False`` is
    allowed but warned about).
    Redirects are not followed. ``timeout`` bounds each connect, read, write and pool wait; a
    body must also arrive within ``timeout`` plus one second per MiB. Thread-safe (one httpx
    client with a pool of HTTP/1.1 keep-alive connections).
    """

    # get_blob and fetch_blob check size and SHA-256 as the body streams in and hand back
    # nothing else: BuildCache.run does not hash their blobs again.
    verifies_blobs = True

    def __init__(
        self,
        url: str,
        *,
        instance: str | None = None,
        zstd_uploads: bool = False,
        zstd_downloads: bool | None = None,
        zstd_level: int = 3,
        timeout: float = 10.0,
        verify: bool | str | ssl.SSLContext = True,
        headers: Mapping[str, str] | None = None,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        max_action_bytes: int = MAX_RESULT_BYTES,
        max_connections: int = 8,
        name: str = "bazel-http",
    ) -> None:
        if not isinstance(url, str):
            raise InvalidTypeError(f"url must be a str, got {type(url).__name__}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise InvalidArgumentError(f"bad remote cache URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(
                f"the remote cache URL must be http:// or https:// with a host, got "
                f"{_redact(url)!r}"
            )
        if parts.query or parts.fragment:
            raise InvalidArgumentError("the remote cache URL takes no query or fragment")
        for label, value in (("timeout", timeout), ("zstd_level", zstd_level)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgumentError(f"{label} must be a number, got {value!r}")
        if not 0 < timeout < float("inf"):
            raise InvalidArgumentError(f"timeout must be a positive number of seconds: {timeout}")
        if not isinstance(zstd_level, int) or not 1 <= zstd_level <= 22:
            raise InvalidArgumentError(f"zstd_level must be an int from 1 to 22: {zstd_level!r}")
        for label, n in (
            ("max_action_bytes", max_action_bytes),
            ("max_connections", max_connections),
        ):
            if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
                raise InvalidArgumentError(f"{label} must be a positive int, got {n!r}")
        if not isinstance(verify, (bool, str, ssl.SSLContext)):
            raise InvalidTypeError(
                "verify must be True, False, the path of a CA bundle or an ssl.SSLContext"
            )

        authorization = self._authorization(parts, bearer_token, basic_auth, env, headers)
        base = _redact(url)
        if instance is not None:
            base += "/" + _check_instance(instance)
        self.url = base  # no credentials
        self.instance = instance
        self.name = name
        self.timeout = float(timeout)
        self.max_action_bytes = max_action_bytes
        self.zstd_uploads = bool(zstd_uploads)
        self.zstd_downloads = self.zstd_uploads if zstd_downloads is None else bool(zstd_downloads)
        self.zstd_level = zstd_level
        if authorization is not None and parts.scheme == "http" and not _loopback(parts.hostname):
            raise InvalidArgumentError(
                f"refusing to send credentials in clear text to {base}: use https:// (or a "
                "loopback host)"
            )
        if verify is False:
            log.warning("remote cache %s: TLS certificate verification is OFF", base)

        import httpx

        self._httpx = httpx
        sent: dict[str, str] = {"User-Agent": "registry-core-cache"}
        for hname, hvalue in (headers or {}).items():
            if not isinstance(hname, str) or not isinstance(hvalue, str):
                raise InvalidTypeError("headers must map str to str")
            sent[hname] = hvalue
        if authorization is not None:
            sent["Authorization"] = authorization
        tls: bool | ssl.SSLContext = verify  # type: ignore[assignment]
        if isinstance(verify, str):  # a CA bundle: verification against it only
            try:
                tls = ssl.create_default_context(cafile=verify)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgumentError(f"cannot load the CA bundle {verify!r}: {exc}") from exc
        self._client = httpx.Client(
            headers=sent,
            timeout=httpx.Timeout(self.timeout),
            verify=tls,
            follow_redirects=False,
            trust_env=False,  # no proxies, netrc or CA paths picked up from the environment
            http1=True,
            http2=False,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._lock = threading.Lock()
        self._stats = BazelTierStats()
        # Digests this tier saw come back wrong: HEAD cannot see content, so has_blob answers
        # False for them until a put replaces them (the caller then re-uploads the good bytes).
        self._bad: dict[str, None] = {}

    @staticmethod
    def _authorization(
        parts: Any,
        bearer_token: str | None,
        basic_auth: tuple[str, str] | None,
        env: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> str | None:
        """The Authorization header value, from exactly one source (or None)."""
        found: list[str] = []
        if bearer_token is not None:
            if not isinstance(bearer_token, str) or not bearer_token:
                raise InvalidArgumentError("bearer_token must be a non-empty str")
            found.append("Bearer " + bearer_token)
        if basic_auth is not None:
            if (
                not isinstance(basic_auth, tuple)
                or len(basic_auth) != 2
                or not all(isinstance(x, str) for x in basic_auth)
            ):
                raise InvalidArgumentError("basic_auth must be a (user, password) pair of str")
            found.append(_basic(*basic_auth))
        if parts.username is not None or parts.password is not None:
            found.append(_basic(unquote(parts.username or ""), unquote(parts.password or "")))
        if env is not None:
            token, user = env.get(TOKEN_ENV), env.get(USER_ENV)
            if token and user:
                raise InvalidArgumentError(
                    f"set {TOKEN_ENV} or {USER_ENV}/{PASSWORD_ENV}, not both"
                )
            if token:
                found.append("Bearer " + token)
            elif user:
                found.append(_basic(user, env.get(PASSWORD_ENV, "")))
        if headers and any(k.lower() == "authorization" for k in headers):
            found.append("header")
        if len(found) > 1:
            raise InvalidArgumentError(
                "more than one credential for the remote cache (bearer_token, basic_auth, URL "
                "user info, the environment, an Authorization header): give one"
            )
        if not found or found[0] == "header":
            return None
        for ch in found[0]:
            if ch in "\r\n\0":
                raise InvalidArgumentError("credentials must not contain CR, LF or NUL")
        return found[0]

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The cache's base URL, without credentials."""
        return self.url

    def _path(self, kind: str, name: str) -> str:
        return f"{self.url}/{kind}/{name}"

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for field, n in deltas.items():
                setattr(self._stats, field, getattr(self._stats, field) + n)

    @property
    def stats(self) -> BazelTierStats:
        """A copy of the counters."""
        with self._lock:
            return BazelTierStats(**vars(self._stats))

    def _fail(self, doing: str, why: str, hint: str = "") -> CacheError:
        self._count(errors=1)
        msg = f"{self.name} tier ({self.url}): {doing} failed: {why}"
        if hint:
            msg += f"; {hint}"
        return CacheError(msg)

    def _status_error(self, resp: httpx.Response, doing: str) -> CacheError:
        code = resp.status_code
        if code in (401, 403):
            hint = (
                f"the server refused the credentials (set {TOKEN_ENV}, or {USER_ENV} and "
                f"{PASSWORD_ENV}, or give bearer_token / basic_auth)"
            )
        elif 300 <= code < 400:
            hint = "redirects are not followed: point the URL at the cache itself"
        elif code == 405:
            hint = "the server does not take this method (nginx needs `dav_methods PUT;`)"
        elif code == 413:
            hint = "the server refused the size (nginx: raise client_max_body_size)"
        elif code == 507:
            hint = "the server is out of space"
        elif code >= 500:
            hint = "a server error"
        else:
            hint = ""
        return self._fail(doing, f"HTTP {code}", hint)

    @contextmanager
    def _request(
        self,
        method: str,
        url: str,
        doing: str,
        *,
        headers: dict[str, str] | None = None,
        content: Any = None,
    ) -> Iterator[httpx.Response]:
        """Send a request and yield the streamed response; transport errors -> CacheError."""
        httpx = self._httpx
        self._count(requests=1)
        try:
            request = self._client.build_request(method, url, headers=headers, content=content)
            resp = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._fail(doing, f"{type(exc).__name__}: {exc}") from exc
        try:
            yield resp
        except httpx.HTTPError as exc:
            raise self._fail(doing, f"{type(exc).__name__}: {exc}") from exc
        finally:
            resp.close()

    def _drain(self, resp: httpx.Response) -> None:
        """Read a short error or miss body, so its keep-alive connection goes back to the pool."""
        length = resp.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= _SMALL_BODY:
            with suppress(self._httpx.HTTPError):
                resp.read()

    def _body(self, resp: httpx.Response, limit: int, doing: str) -> Iterator[bytes]:
        """The decoded body in chunks; raises ``_TooLarge`` past ``limit`` bytes."""
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        raw = resp.iter_raw()  # as received (httpcore's 64 KiB reads): no re-chunking copy
        if encoding in ("", "identity"):
            chunks: Iterator[bytes] = raw
        elif encoding == "zstd" and self.zstd_downloads:
            chunks = self._unzstd(raw, doing)
        else:
            raise self._fail(doing, f"the server answered with Content-Encoding {encoding!r}")
        deadline = time.monotonic() + self.timeout + limit / _MIN_RATE
        total = 0
        for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise _TooLarge(total)
            if time.monotonic() > deadline:
                raise self._fail(doing, f"the body took longer than {self.timeout:g} s + 1 s/MiB")
            yield chunk

    def _unzstd(self, raw: Iterator[bytes], doing: str) -> Iterator[bytes]:
        import zstandard

        dctx = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW)
        try:
            reader: Any = _IterReader(raw)  # has read(): all zstandard asks of a source
            yield from dctx.read_to_iter(reader, read_size=_CHUNK, write_size=_CHUNK)
        except zstandard.ZstdError as exc:
            raise self._fail(doing, f"the zstd body does not decode: {exc}") from exc

    def _corrupt(self, digest: Digest, why: str) -> None:
        self._count(corrupt=1, misses=1)
        with self._lock:
            self._bad[digest.hash] = None
            while len(self._bad) > _MAX_BAD:
                del self._bad[next(iter(self._bad))]
        log.warning(
            "%s tier (%s): blob %s (%d bytes) %s; treated as a miss",
            self.name,
            self.url,
            digest.hash,
            digest.size_bytes,
            why,
        )

    def _cas_get_headers(self) -> dict[str, str]:
        return {"Accept-Encoding": "zstd, identity" if self.zstd_downloads else "identity"}

    # -- the action cache -------------------------------------------------------------------

    def get_action(self, key: str) -> bytes | None:
        """The action result stored under ``key``, or None on a 404."""
        key = check_action_key(key)
        doing = f"GET ac/{key}"
        with self._request(
            "GET", self._path("ac", key), doing, headers={"Accept-Encoding": "identity"}
        ) as resp:
            if resp.status_code == 404:
                self._drain(resp)
                self._count(misses=1)
                return None
            if resp.status_code != 200:
                self._drain(resp)
                raise self._status_error(resp, doing)
            length = resp.headers.get("content-length", "").strip()
            try:
                if length.isdigit() and int(length) > self.max_action_bytes:
                    raise _TooLarge(int(length))  # announced too large: not read at all
                data = b"".join(self._body(resp, self.max_action_bytes, doing))
            except _TooLarge:
                raise self._fail(
                    doing, f"the action result is over max_action_bytes={self.max_action_bytes}"
                ) from None
        self._count(hits=1, bytes_read=len(data))
        return data

    def put_action(self, key: str, data: bytes) -> None:
        """Store an action result (uncompressed: results are small metadata)."""
        key = check_action_key(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidTypeError(f"an action result is bytes, got {type(data).__name__}")
        if len(data) > self.max_action_bytes:
            raise InvalidArgumentError(
                f"an action result of {len(data)} bytes is over max_action_bytes="
                f"{self.max_action_bytes}"
            )
        self._put(self._path("ac", key), f"PUT ac/{key}", bytes(data), {})

    def _put(self, url: str, doing: str, content: Any, headers: dict[str, str]) -> None:
        with self._request("PUT", url, doing, headers=headers, content=content) as resp:
            self._drain(resp)
            if not 200 <= resp.status_code < 300:
                raise self._status_error(resp, doing)
        length = headers.get("Content-Length")
        sent = int(length) if length is not None else len(content)
        self._count(bytes_written=sent)

    # -- the CAS ----------------------------------------------------------------------------

    def has_blob(self, digest: Digest) -> bool:
        """Whether the server holds ``digest`` (HEAD; a wrong Content-Length is False, and so is
        a blob this tier already saw come back corrupt, until it is put again)."""
        digest = _check_digest(digest)
        with self._lock:
            if digest.hash in self._bad:
                return False
        doing = f"HEAD cas/{digest.hash}"
        with self._request(
            "HEAD", self._path("cas", digest.hash), doing, headers={"Accept-Encoding": "identity"}
        ) as resp:
            if resp.status_code == 404:
                return False
            if resp.status_code != 200:
                raise self._status_error(resp, doing)
            length = resp.headers.get("content-length")
        return length is None or length.strip() == str(digest.size_bytes)

    def get_blob(self, digest: Digest) -> bytes | None:
        """The blob, checked against ``digest`` as it streams in; None on a miss or mismatch."""
        digest = _check_digest(digest)
        chunks: list[bytes] = []
        if not self._fetch(digest, chunks.append):
            return None
        # One copy into the result (a preallocated bytearray would need a second one to give
        # bytes back, which LocalStore's back-fill and every caller expect).
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def fetch_blob(self, digest: Digest, dest: str | os.PathLike[str]) -> bool:
        """Stream the blob into the file ``dest``, one chunk in memory at a time.

        The file is written beside ``dest`` and renamed over it only once its size and SHA-256
        match ``digest`` (mode: what a plain ``open()`` gives under the umask). False on a miss
        or a mismatch (nothing is left behind); a local write error is a ``CacheError``.
        """
        digest = _check_digest(digest)
        target = Path(dest)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        except OSError as exc:
            raise CacheError(f"cannot write {target}: {exc}") from exc
        ok = False
        try:
            os.fchmod(fd, default_file_mode())
            with os.fdopen(fd, "wb") as f:
                ok = self._fetch(digest, f.write)
            if ok:
                os.replace(tmp, target)
        except OSError as exc:
            raise CacheError(f"cannot write {target}: {exc}") from exc
        finally:
            if not ok:
                with suppress(OSError):
                    os.unlink(tmp)
        return ok

    def _fetch(self, digest: Digest, sink: Any) -> bool:
        doing = f"GET cas/{digest.hash}"
        with self._request(
            "GET", self._path("cas", digest.hash), doing, headers=self._cas_get_headers()
        ) as resp:
            if resp.status_code == 404:
                self._drain(resp)
                self._count(misses=1)
                return False
            if resp.status_code != 200:
                self._drain(resp)
                raise self._status_error(resp, doing)
            length = resp.headers.get("content-length")
            encoded = resp.headers.get("content-encoding", "identity").strip().lower()
            if (
                length is not None
                and encoded in ("", "identity")
                and length.strip() != str(digest.size_bytes)
            ):
                self._corrupt(digest, f"was announced with Content-Length {length.strip()}")
                return False
            h = hashlib.sha256()
            total = 0
            try:
                for chunk in self._body(resp, digest.size_bytes, doing):
                    h.update(chunk)
                    sink(chunk)
                    total += len(chunk)
            except _TooLarge:
                self._corrupt(digest, "came back longer than its size")
                return False
        if total != digest.size_bytes:
            self._corrupt(digest, f"came back with {total} bytes")
            return False
        if h.hexdigest() != digest.hash:
            self._corrupt(digest, f"came back with SHA-256 {h.hexdigest()}")
            return False
        self._count(hits=1, bytes_read=total)
        return True

    def put_blob(self, digest: Digest, data: bytes) -> None:
        """Store ``data`` (which must be what ``digest`` names) under ``cas/<sha256>``."""
        digest = _check_digest(digest)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidTypeError(f"a blob is bytes, got {type(data).__name__}")
        if not digest.matches(data):
            raise InvalidArgumentError(f"the blob's content is not what {digest} names")
        headers: dict[str, str] = {}
        body: bytes = bytes(data)
        if self.zstd_uploads:
            import zstandard

            body = zstandard.ZstdCompressor(level=self.zstd_level).compress(body)
            headers = {"Content-Encoding": "zstd", "X-Digest-SizeBytes": str(digest.size_bytes)}
        headers["Content-Length"] = str(len(body))
        self._put(self._path("cas", digest.hash), f"PUT cas/{digest.hash}", body, headers)
        self._replaced(digest)

    def _replaced(self, digest: Digest) -> None:
        with self._lock:
            self._bad.pop(digest.hash, None)

    def put_blob_file(self, digest: Digest, path: str | os.PathLike[str]) -> None:
        """Upload the file ``path`` as the blob ``digest``, streamed (zstd: via a spool file).

        The file is hashed as it is sent; if it is not what ``digest`` names (it changed since
        it was hashed), the request is cut before its last byte, so the server stores nothing,
        and ``InvalidArgumentError`` is raised.
        """
        digest = _check_digest(digest)
        source = Path(path)
        doing = f"PUT cas/{digest.hash}"
        try:
            f = source.open("rb")
        except OSError as exc:
            raise CacheError(f"cannot read {source}: {exc}") from exc
        with f:
            if self.zstd_uploads:
                with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
                    self._compress_into(_checked_chunks(f, digest, source), spool)
                    size = spool.tell()
                    spool.seek(0)
                    headers = {
                        "Content-Encoding": "zstd",
                        "X-Digest-SizeBytes": str(digest.size_bytes),
                        "Content-Length": str(size),
                    }
                    self._put(self._path("cas", digest.hash), doing, _chunks_of(spool), headers)
            else:
                headers = {"Content-Length": str(digest.size_bytes)}
                self._put(
                    self._path("cas", digest.hash),
                    doing,
                    _checked_chunks(f, digest, source),
                    headers,
                )
        self._replaced(digest)

    def _compress_into(self, chunks: Iterator[bytes], out: IO[bytes]) -> None:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=self.zstd_level)
        with cctx.stream_writer(out, closefd=False) as writer:
            for chunk in chunks:
                writer.write(chunk)

    def ping(self) -> None:
        """Check that the server answers (HEAD of the empty blob: 200 or 404); else raise."""
        empty = Digest(hashlib.sha256(b"").hexdigest(), 0)
        self.has_blob(empty)

    def close(self) -> None:
        """Close the connections."""
        self._client.close()

    def __enter__(self) -> BazelHTTPTier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BazelHTTPTier({self.url!r}, zstd_uploads={self.zstd_uploads})"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _chunks_of(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _checked_chunks(f: IO[bytes], digest: Digest, source: Path) -> Iterator[bytes]:
    """The file's chunks; raises before yielding the last one unless size and SHA-256 match."""
    h = hashlib.sha256()
    total = 0
    pending = f.read(_CHUNK)
    while True:
        nxt = f.read(_CHUNK) if pending else b""
        h.update(pending)
        total += len(pending)
        last = not nxt
        if total > digest.size_bytes or (
            last and (total != digest.size_bytes or h.hexdigest() != digest.hash)
        ):
            raise InvalidArgumentError(f"{source} is not what {digest} names (did it change?)")
        if pending:
            yield pending
        if last:
            return
        pending = nxt
