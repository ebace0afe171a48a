"""Transport: the async HTTP client (HTTP/2 over httpx's httpcore, HTTP/3 over aioquic).

One request goes through: request coalescing (identical concurrent GETs share one exchange),
retries (replay what the server never processed; back off on idempotent failures), protocol
choice (HTTP/3 when advertised by Alt-Svc, allowed and working, else HTTP/2), connection
choice (the coalescing pool may hand it a connection opened for another name), then the
exchange with a timeout, a size limit, a length check and an RFC 9530 digest check.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import h2.exceptions
import httpcore
import httpx

from ..errors import (
    CompressionError,
    DecompressionLimitError,
    DeltaError,
    DigestMismatchError,
    InvalidArgumentError,
    ReproductionUnavailableError,
    ResponseTooLargeError,
    TransportError,
)
from ..flags import flag_enabled
from ..wire._delta import IM_RCDELTA, delta_request_headers, etag_to_sha256, parse_im
from ..wire._digest import verify_digest
from ._altsvc import AltSvcCache
from ._decode import accept_encoding, decode_body
from ._h3 import H3ConnectError, H3Connection, H3StreamError
from ._pool import CoalescingPool, ConnectionRecord
from ._retry import IDEMPOTENT_METHODS, RetryPolicy
from .._util import SingleFlight
from ._tls import connect_tls

__all__ = ["Response", "Transport"]

Origin = tuple[str, str, int]


@dataclass
class Response:
    """A complete response: ``content`` is decoded, ``raw_content`` is what crossed the wire."""

    status: int
    headers: httpx.Headers
    content: bytes
    http_version: str
    url: str
    raw_content: bytes = b""
    connection_id: int = 0
    elapsed: float = 0.0

    def raise_for_status(self) -> Response:
        if self.status >= 400:
            raise TransportError(f"GET {self.url} answered {self.status}")
        return self


class _Misdirected(Exception):
    pass


class _Drained(Exception):
    """The connection carrying the request was closed by a graceful GOAWAY (NO_ERROR)."""


class _Unprocessed(Exception):
    """The request provably never reached the application (safe to replay)."""


_STREAM_WINDOW = 1 << 24
_INLINE_APPLY = 256 << 10  # patches on bases larger than this are applied on a worker thread


class _H2Connection(httpcore.AsyncHTTP2Connection):
    """httpcore's HTTP/2 connection with a 16 MiB per-stream receive window.

    httpcore enlarges only the connection window and leaves each stream at the RFC default of
    64 KiB, which on a 1 MiB body costs ~16 window round trips. The setting is added to the
    SETTINGS frame httpcore sends first (a documented-behaviour tweak, checked by the tests).
    """

    async def _send_connection_init(self, request: httpcore.Request) -> None:
        import h2.settings

        original = self._h2_state.initiate_connection

        def initiate() -> None:
            self._h2_state.local_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = (
                _STREAM_WINDOW)
            self._h2_state.local_settings.acknowledge()
            original()

        self._h2_state.initiate_connection = initiate  # type: ignore[method-assign]
        try:
            await super()._send_connection_init(request)
        finally:
            del self._h2_state.initiate_connection


@dataclass
class _Live:
    record: ConnectionRecord
    conn: Any  # httpcore.AsyncHTTP2Connection | AsyncHTTP11Connection | H3Connection
    opened: float = field(default_factory=time.perf_counter)


class Transport:
    """Async HTTP/2 + HTTP/3 client for registries. Use as ``async with Transport() as t``.

    verify: True (system CAs), False, or a CA bundle path. http3: "auto" (use HTTP/3 once the
    origin advertises it with Alt-Svc, fall back to HTTP/2 within ``h3_connect_timeout``), True
    (HTTP/3 only, on the origin's port), False (never). resolve: ``{host: ip}`` overrides, like
    curl's ``--resolve``. timeout: seconds per attempt. max_response_size: bytes, checked on the
    wire and after decoding. flags: a FeatureFlags (default: ``default_flags()``) consulted for
    QUIC_TRANSPORT and CONNECTION_COALESCE on every request. session_tickets: a dict shared
    between Transports so a new one resumes TLS sessions (TCP) and QUIC sessions (sending
    idempotent requests as 0-RTT). h3_max_datagram_size: QUIC packet size (1200 is safe on
    every path).
    """

    def __init__(
        self,
        *,
        verify: bool | str = True,
        http3: bool | str = "auto",
        resolve: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        h3_connect_timeout: float = 0.3,
        h3_max_datagram_size: int = 1200,
        max_response_size: int = 1 << 30,
        retry: RetryPolicy | None = None,
        flags: Any = None,
        session_tickets: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        coalesce_requests: bool = True,
    ) -> None:
        if http3 not in ("auto", True, False):
            raise InvalidArgumentError(f"http3 must be 'auto', True or False, not {http3!r}")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise InvalidArgumentError(f"CA bundle {verify!r} does not exist")
        self.verify = verify
        self.http3 = http3
        self.resolve = {k.lower(): v for k, v in (resolve or {}).items()}
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.h3_connect_timeout = h3_connect_timeout
        self.h3_max_datagram_size = h3_max_datagram_size
        self.max_response_size = max_response_size
        self.retry = retry or RetryPolicy()
        self.flags = flags
        self.coalesce_requests = coalesce_requests
        self.default_headers = {"user-agent": "registry-core", **(headers or {})}
        self.pool = CoalescingPool()
        self.altsvc = AltSvcCache()
        self.stats: collections.Counter[str] = collections.Counter()
        self.session_tickets: dict[str, Any] = {} if session_tickets is None else session_tickets
        self.tls_sessions = self.session_tickets  # TCP TLS sessions, keyed (host, port)
        self._live: dict[int, _Live] = {}
        self._connecting: dict[tuple[Origin, str, bool], asyncio.Future[_Live]] = {}
        self._dns: dict[str, tuple[float, list[str]]] = {}
        self._singleflight: SingleFlight[Response] = SingleFlight()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection."""
        self._closed = True
        for live in list(self._live.values()):
            await self._close(live)

    async def _close(self, live: _Live) -> None:
        self.pool.remove(live.record.conn_id)
        self._live.pop(live.record.conn_id, None)
        with contextlib.suppress(Exception):  # a broken connection must not mask the real error
            await live.conn.aclose()

    def connections(self) -> list[ConnectionRecord]:
        """Records of the open connections (protocol, origin, address, certificate names)."""
        return self.pool.records()

    # -- public API --------------------------------------------------------------------------

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None,
                  timeout: float | None = None, max_size: int | None = None) -> Response:
        """GET ``url``; concurrent identical GETs share one request on the wire."""
        return await self.request("GET", url, headers=headers, timeout=timeout, max_size=max_size)

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      content: bytes | None = None, timeout: float | None = None,
                      max_size: int | None = None, dictionary: bytes | None = None) -> Response:
        """Send a request with retries; returns the whole (decoded, verified) response.

        ``dictionary``: the bytes named by an ``Available-Dictionary`` header, needed to decode
        a ``dcz`` answer.
        """
        if self._closed:
            raise TransportError("this Transport is closed")
        method = method.upper()
        u = httpx.URL(url)
        if u.scheme != "https":
            raise InvalidArgumentError(f"only https:// URLs are supported, not {url!r}")
        hdrs = {k.lower(): v for k, v in {**self.default_headers, **(headers or {})}.items()}
        hdrs.setdefault("accept-encoding", accept_encoding(self.flags))
        limit = self.max_response_size if max_size is None else max_size
        run = lambda: self._with_retries(method, u, hdrs, content, timeout or self.timeout,  # noqa: E731
                                         limit, dictionary)
        if self.coalesce_requests and method in ("GET", "HEAD") and content is None:
            key = (method, str(u), tuple(sorted(hdrs.items())), timeout, limit)
            try:
                return await self._singleflight.do(key, run)
            finally:
                self.stats["requests_coalesced"] = self._singleflight.shared
        return await run()

    async def fetch(self, url: str, *, have: bytes | None = None,
                    dest: str | os.PathLike[str] | None = None,
                    max_size: int | None = None) -> bytes:
        """Download an artifact, as a registry-core patch against ``have`` when possible.

        The result is checked against the server's digest (the patch result against
        ``Repr-Digest``; every body against ``Content-Digest``; the artifact against its strong
        ETag) before it is returned. On any mismatch :class:`DigestMismatchError` is raised and
        ``dest`` (if given) is not touched; otherwise ``dest`` is replaced atomically.
        """
        limit = self.max_response_size if max_size is None else max_size
        data = await self._fetch(url, have, limit)
        if dest is not None:
            directory = os.path.dirname(os.path.abspath(dest))
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".registry-core-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, dest)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        return data

    async def _fetch(self, url: str, have: bytes | None, limit: int) -> bytes:
        delta_ok = have is not None and flag_enabled(self.flags, "DELTA_AGGREGATOR")
        headers = delta_request_headers(have if delta_ok else None)
        dictionary = None
        if have is not None and flag_enabled(self.flags, "ZSTD_COMPRESSION"):
            import hashlib

            from ..wire._dictionary import available_dictionary

            headers["available-dictionary"] = available_dictionary(hashlib.sha256(have).digest())
            headers["accept-encoding"] = accept_encoding(self.flags, dcz=True)
            dictionary = have
        r = await self.request("GET", url, headers=headers, max_size=limit,
                               dictionary=dictionary)
        if r.status == 304 and have is not None:
            self.stats["fetch_not_modified"] += 1
            return have
        if r.status == 226 and have is not None:
            if IM_RCDELTA not in parse_im(r.headers.get("im", "")):
                raise TransportError(f"{url}: 226 response with unsupported IM "
                                     f"{r.headers.get('im')!r}")
            repr_digest = r.headers.get("repr-digest")
            if not repr_digest:
                raise DigestMismatchError(f"{url}: delta response carries no Repr-Digest; "
                                          "refusing an unverifiable result")
            try:
                from ..delta import DeltaAggregator

                agg = DeltaAggregator(max_output_size=limit, flags=self.flags)
                if len(have) > _INLINE_APPLY:  # keep the event loop serving other requests
                    data = await asyncio.get_running_loop().run_in_executor(
                        None, agg.apply, have, r.content)
                else:
                    data = agg.apply(have, r.content)
            except ReproductionUnavailableError:
                # This platform cannot rebuild archive patches (non-reference zlib): the
                # patch is fine, it just cannot be used here. Take the full artifact.
                self.stats["fetch_delta_unusable"] += 1
                return await self._fetch(url, None, limit)
            except DeltaError as exc:
                self.stats["fetch_delta_failed"] += 1
                raise TransportError(f"{url}: the patch the server sent does not apply: {exc}"
                                     ) from exc
            if len(data) > limit:
                raise ResponseTooLargeError(f"{url}: patched artifact is {len(data)} bytes, "
                                            f"over the {limit}-byte limit")
            verify_digest(data, repr_digest, what=f"{url} (patched)")
            self._check_etag(url, data, r.headers.get("etag"))
            self.stats["fetch_delta"] += 1
            self.stats["fetch_bytes_wire"] += len(r.raw_content)
            self.stats["fetch_bytes_full"] += len(data)
            return data
        if r.status != 200:
            raise TransportError(f"GET {url} answered {r.status}; expected the artifact")
        checked = self._check_etag(url, r.content, r.headers.get("etag"))
        if not checked and not r.headers.get("content-digest") and not r.headers.get(
                "repr-digest"):
            raise DigestMismatchError(f"{url}: the server sent no digest and no strong ETag; "
                                      "the artifact cannot be verified")
        self.stats["fetch_dcz" if r.headers.get("content-encoding") == "dcz"
                   else "fetch_full"] += 1
        self.stats["fetch_bytes_wire"] += len(r.raw_content)
        self.stats["fetch_bytes_full"] += len(r.content)
        return r.content

    @staticmethod
    def _check_etag(url: str, data: bytes, etag: str | None) -> bool:
        sha = etag_to_sha256(etag) if etag else None
        if sha is None:
            return False
        import hashlib

        if hashlib.sha256(data).digest() != sha:
            raise DigestMismatchError(f"{url}: SHA-256 of the artifact does not match its ETag "
                                      f"{etag}; nothing was written")
        return True

    # -- retries -----------------------------------------------------------------------------

    async def _with_retries(self, method: str, url: httpx.URL, headers: dict[str, str],
                            content: bytes | None, timeout: float, limit: int,
                            dictionary: bytes | None) -> Response:
        attempt = 0
        replays = 0
        dedicated = False
        while True:
            attempt += 1
            unprocessed = False
            try:
                r = await asyncio.wait_for(
                    self._attempt(method, url, headers, content, timeout, limit, dedicated,
                                  dictionary),
                    timeout)
                if self.retry.should_retry_status(attempt, method, r.status):
                    self.stats["retries"] += 1
                    await asyncio.sleep(self.retry.delay(attempt, retry_after=_retry_after(r)))
                    continue
                return r
            except _Misdirected:
                if dedicated:
                    raise TransportError(f"{url}: 421 Misdirected Request even on a dedicated "
                                         "connection") from None
                dedicated = True
                self.stats["misdirected"] += 1
                attempt -= 1
                continue
            except (_Unprocessed, httpcore.ConnectionNotAvailable) as exc:
                error: Exception = exc
                unprocessed = True
            except H3StreamError as exc:
                error, unprocessed = exc, exc.unprocessed
            except (httpcore.ConnectError, httpcore.ConnectTimeout, H3ConnectError) as exc:
                if isinstance(exc.__cause__, ssl.SSLCertVerificationError) or isinstance(
                        exc.__context__, ssl.SSLCertVerificationError):
                    raise TransportError(f"{url}: TLS certificate verification failed: {exc}"
                                         ) from exc
                # Never sent, so safe for any method, but a refused connection is a real
                # failure: it spends the attempt budget, not the replay budget.
                if attempt >= self.retry.max_attempts:
                    raise TransportError(f"{method} {url} failed after {attempt + replays} "
                                         f"attempt(s): cannot connect: {exc}") from exc
                self.stats["retries"] += 1
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException,
                    httpx.TransportError, h2.exceptions.ProtocolError, asyncio.TimeoutError,
                    OSError) as exc:
                error = exc
            except _Drained as exc:
                # A graceful GOAWAY (NO_ERROR) cut our stream: the server is draining the
                # connection, not failing. Idempotent requests replay on the replay budget.
                error = exc.__cause__ or exc
                unprocessed = method in IDEMPOTENT_METHODS
            except ssl.SSLError as exc:
                raise TransportError(f"{url}: TLS failed: {exc}") from exc
            if unprocessed:
                replays += 1
                attempt -= 1  # the server never saw it: not an attempt
            if not self.retry.should_retry(attempt, method, unprocessed=unprocessed,
                                           replays=replays):
                kind = "timed out" if isinstance(error, asyncio.TimeoutError) else "failed"
                raise TransportError(f"{method} {url} {kind} after {attempt + replays} "
                                     f"attempt(s): {type(error).__name__}: {error}") from error
            self.stats["replays" if unprocessed else "retries"] += 1
            await asyncio.sleep(self.retry.delay(max(attempt, 1) if not unprocessed else replays,
                                                 unprocessed=unprocessed))

    # -- one attempt -------------------------------------------------------------------------

    def _h3_allowed(self) -> bool:
        return self.http3 is not False and flag_enabled(self.flags, "QUIC_TRANSPORT")

    async def _attempt(self, method: str, url: httpx.URL, headers: dict[str, str],
                       content: bytes | None, timeout: float, limit: int,
                       dedicated: bool, dictionary: bytes | None = None) -> Response:
        started = time.perf_counter()
        origin: Origin = ("https", url.host.lower(), url.port or 443)
        now = time.monotonic()
        self.pool.coalesce = flag_enabled(self.flags, "CONNECTION_COALESCE")
        live: _Live | None = None
        if self._h3_allowed():
            alt = self.altsvc.lookup(origin, now)
            if self.http3 is True or alt is not None:
                port = alt.port if alt is not None else origin[2]
                try:
                    live = await self._connection(origin, "h3", dedicated, h3_port=port)
                    self.altsvc.mark_working(origin)
                except (H3ConnectError, OSError) as exc:
                    if self.http3 is True:
                        raise TransportError(f"{url}: HTTP/3 required but unavailable: {exc}"
                                             ) from exc
                    self.altsvc.mark_broken(origin, now)
                    self.stats["h3_fallbacks"] += 1
        if live is None:
            live = await self._connection(origin, "h2", dedicated)
        rec = live.record
        if rec.origin != origin:
            self.stats["coalesced_requests"] += 1
        self.pool.acquire(rec.conn_id)
        try:
            exchange = self._exchange(live, method, url, headers, content, timeout, limit)
            if rec.protocol == "h3" and live.conn.early:
                # 0-RTT: the request is already on its way; if the handshake then fails
                # (UDP blocked since the ticket was issued), fall back like a failed connect.
                task = asyncio.ensure_future(exchange)
                try:
                    deadline = (self.h3_connect_timeout if self.http3 == "auto"
                                else self.connect_timeout)
                    await live.conn.wait_handshake(deadline)
                except H3ConnectError as exc:
                    task.cancel()
                    await self._close(live)
                    if self.http3 is True:
                        raise TransportError(f"{url}: HTTP/3 required but unavailable: {exc}"
                                             ) from exc
                    self.altsvc.mark_broken(origin, now)
                    self.stats["h3_fallbacks"] += 1
                    raise _Unprocessed() from exc
                exchange = task
            status, resp_headers, raw, version = await exchange
        finally:
            self.pool.release(rec.conn_id)
            if live.conn.is_closed():
                self.pool.remove(rec.conn_id)
                self._live.pop(rec.conn_id, None)
        if status == 421 and rec.origin != origin:
            self.pool.misdirected(rec.conn_id, origin)
            raise _Misdirected()
        alt_svc = resp_headers.get("alt-svc")
        if alt_svc and rec.protocol != "h3" and self._h3_allowed():
            self.altsvc.update(origin, alt_svc, time.monotonic())
        content_digest = resp_headers.get("content-digest")
        if content_digest and method != "HEAD" and status != 304:
            verify_digest(raw, content_digest, what=f"{method} {url}")
        coding = resp_headers.get("content-encoding", "identity")
        try:
            decoded = (decode_body(coding, raw, limit, dictionary=dictionary, flags=self.flags)
                       if status != 226 else raw)
        except DecompressionLimitError as exc:
            raise ResponseTooLargeError(f"{method} {url}: decoded body exceeds the {limit}-byte "
                                        f"limit: {exc}") from exc
        except CompressionError as exc:
            raise TransportError(f"{method} {url}: undecodable {coding} body: {exc}") from exc
        return Response(status, resp_headers, decoded, version, str(url), raw, rec.conn_id,
                        time.perf_counter() - started)

    async def _exchange(self, live: _Live, method: str, url: httpx.URL, headers: dict[str, str],
                        content: bytes | None, timeout: float, limit: int
                        ) -> tuple[int, httpx.Headers, bytes, str]:
        """Send on ``live`` and read the whole body (bounded by ``limit``)."""
        rec = live.record
        try:
            if rec.protocol == "h3":
                status, resp_headers, body_iter, closer = await self._send_h3(
                    live, method, url, headers, content, timeout)
                version = "HTTP/3"
            else:
                status, resp_headers, body_iter, closer = await self._send_h2(
                    live, method, url, headers, content, timeout)
                version = "HTTP/2" if rec.protocol == "h2" else "HTTP/1.1"
            try:
                raw = await _read_limited(body_iter, limit, resp_headers, str(url), method,
                                          status)
            finally:
                await closer()
        except (httpcore.NetworkError, httpcore.ProtocolError, h2.exceptions.ProtocolError,
                OSError) as exc:
            terminated = getattr(live.conn, "_connection_terminated", None)
            if terminated is not None and getattr(terminated, "error_code", None) == 0:
                raise _Drained() from exc
            raise
        return status, resp_headers, raw, version

    async def _send_h2(self, live: _Live, method: str, url: httpx.URL, headers: dict[str, str],
                       content: bytes | None, timeout: float):
        origin = live.record.origin
        authority = url.netloc.decode("ascii")
        req = httpcore.Request(
            method.encode(),
            httpcore.URL(scheme=b"https", host=origin[1].encode("ascii"), port=origin[2],
                         target=url.raw_path),
            headers=[(b"host", authority.encode("ascii"))]
            + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
               if k != "host"]
            + ([(b"content-length", str(len(content)).encode())] if content else []),
            content=content or b"",
            extensions={"timeout": {"connect": self.connect_timeout, "read": timeout,
                                    "write": timeout, "pool": timeout}},
        )
        resp = await live.conn.handle_async_request(req)
        hdrs = httpx.Headers([(k, v) for k, v in resp.headers])
        return resp.status, hdrs, resp.stream, resp.aclose

    async def _send_h3(self, live: _Live, method: str, url: httpx.URL, headers: dict[str, str],
                       content: bytes | None, timeout: float):
        req = httpx.Request(method, url, headers=headers, content=content,
                            extensions={"timeout": {"read": timeout}})
        resp = await live.conn.handle_async_request(req)
        return resp.status_code, resp.headers, resp.stream, resp.aclose

    # -- connections -------------------------------------------------------------------------

    async def _addresses(self, host: str, port: int) -> list[str]:
        if host in self.resolve:
            return [self.resolve[host]]
        try:
            import ipaddress

            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        cached = self._dns.get(host)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                                 type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        addrs = list(dict.fromkeys(info[4][0] for info in infos))
        self._dns[host] = (now + 60.0, addrs)
        return addrs

    async def _connection(self, origin: Origin, proto: str, dedicated: bool,
                          h3_port: int | None = None) -> _Live:
        addresses = await self._addresses(origin[1], origin[2])
        protocols = ("h3",) if proto == "h3" else ("h2", "http/1.1")
        while True:
            rec = self.pool.choose(origin, addresses, protocols, dedicated=dedicated)
            if rec is not None:
                live = self._live.get(rec.conn_id)
                if live is not None and not live.conn.is_closed() and live.conn.is_available():
                    return live
                self.pool.remove(rec.conn_id)
                if live is not None:
                    await self._close(live)
                continue
            key = (origin, proto, dedicated)
            pending = self._connecting.get(key)
            if pending is not None:
                live = await asyncio.shield(pending)
                if live.conn.is_available() and (live.record.multiplexed or
                                                 live.record.active == 0):
                    return live
                continue
            fut: asyncio.Future[_Live] = asyncio.get_running_loop().create_future()
            self._connecting[key] = fut
            try:
                if proto == "h3":
                    live = await self._open_h3(origin, addresses[0], h3_port or origin[2])
                else:
                    live = await self._open_h2(origin, addresses[0])
                fut.set_result(live)
                return live
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()
                raise
            finally:
                del self._connecting[key]

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _shared_context(self.verify)
        return self._ssl

    async def _open_h2(self, origin: Origin, address: str) -> _Live:
        try:
            stream = await connect_tls(address, origin[2], server_hostname=origin[1],
                                       context=self._ssl_context(),
                                       timeout=self.connect_timeout,
                                       sessions=self.tls_sessions)
        except httpcore.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise TransportError(f"https://{origin[1]}:{origin[2]}: TLS certificate "
                                     f"verification failed: {exc}") from exc
            raise
        if stream.session_reused:
            self.stats["tls_resumed"] += 1
        sslobj = stream.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        names: tuple[str, ...] = ()
        if sslobj is not None and self.verify is not False:
            cert = sslobj.getpeercert() or {}
            names = tuple(v for k, v in cert.get("subjectAltName", ()) if k in ("DNS",
                                                                                "IP Address"))
        hc_origin = httpcore.Origin(b"https", origin[1].encode("ascii"), origin[2])
        if alpn == "h2":
            conn: Any = _H2Connection(hc_origin, stream)
            proto = "h2"
        else:
            conn = httpcore.AsyncHTTP11Connection(hc_origin, stream)
            proto = "http/1.1"
        rec = self.pool.add(origin, proto, (address, origin[2]), names, max_streams=100)
        self.stats[f"connections_{proto}"] += 1
        live = _Live(rec, conn)
        self._live[rec.conn_id] = live
        return live

    async def _open_h3(self, origin: Origin, address: str, port: int) -> _Live:
        verify: bool | str = self.verify
        conn = await H3Connection.connect(address, port, server_name=origin[1], verify=verify,
                                          session_tickets=self.session_tickets,
                                          timeout=(self.h3_connect_timeout if self.http3 == "auto"
                                                   else self.connect_timeout),
                                          max_datagram_size=self.h3_max_datagram_size)
        names = conn.cert_names if self.verify is not False else ()
        rec = self.pool.add(origin, "h3", (address, port), names, max_streams=100)
        self.stats["connections_h3"] += 1
        if conn.early:
            self.stats["h3_0rtt"] += 1
        live = _Live(rec, conn)
        self._live[rec.conn_id] = live
        return live


_CONTEXTS: dict[Any, ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _shared_context(verify: bool | str) -> ssl.SSLContext:
    """One client SSLContext per ``verify`` value for the process.

    Loading a CA bundle costs milliseconds, and TLS sessions can only be resumed through the
    context that created them, so Transports sharing ``session_tickets`` share contexts too.
    """
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(verify)
        if ctx is not None:
            return ctx
        if verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif isinstance(verify, str):
            ctx = ssl.create_default_context(cafile=verify)
        else:
            try:
                import certifi

                ctx = ssl.create_default_context(cafile=certifi.where())
            except ImportError:
                ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        _CONTEXTS[verify] = ctx
        return ctx


def _retry_after(r: Response) -> float | None:
    value = r.headers.get("retry-after")
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


async def _read_limited(body: Any, limit: int, headers: httpx.Headers, url: str, method: str,
                        status: int) -> bytes:
    declared = headers.get("content-length")
    length: int | None = None
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise TransportError(f"{url}: invalid Content-Length {declared!r}") from None
        if length > limit:
            raise ResponseTooLargeError(f"{url}: response declares {length} bytes, over the "
                                        f"{limit}-byte limit; nothing was read")
    buf = bytearray()
    async for chunk in body:
        buf += chunk
        if len(buf) > limit:
            raise ResponseTooLargeError(f"{url}: response exceeds the {limit}-byte limit")
    if (length is not None and method != "HEAD" and status not in (204, 304)
            and len(buf) != length):
        raise httpcore.RemoteProtocolError(
            f"{url}: truncated body: {len(buf)} of {length} declared bytes")
    return bytes(buf)
