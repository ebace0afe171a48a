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
import concurrent.futures
import contextlib
import functools
import hmac
import os
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h2.exceptions
import httpcore
import httpx

from .._util import LRU, SingleFlight, atomic_write
from ..errors import (
    CompressionError,
    DecompressionLimitError,
    DigestMismatchError,
    InvalidArgumentError,
    OutputTooLargeError,
    RegistryCoreError,
    ResponseTooLargeError,
    TransportError,
)
from ..wire._delta import etag_to_sha256
from ..wire._tls import tls_version
from . import _firstdl
from ._altsvc import AltSvcCache
from ._decode import Codings, accept_encoding, decode_body
from ._firstdl import StreamingDecode
from ._h3 import H3ConnectError, H3Connection, H3StreamError
from ._policy import (
    Decision,
    FetchPlan,
    FetchPolicy,
    reproduced_engines,
    sha256,
    verify_body,
)
from ._pool import CoalescingPool, ConnectionRecord
from ._retry import IDEMPOTENT_METHODS, RetryPolicy
from ._throughput import (
    DEFAULT_FIRST_DOWNLOAD_BELOW,
    ThroughputEstimate,
    first_download_mode,
    origin_of,
)
from ._tls import connect_tls

if TYPE_CHECKING:
    from ..flags import FeatureFlags
    from ..signing import TrustedIndex

__all__ = ["Response", "Transport"]

Origin = tuple[str, str, int]
#: Called with (status, headers) once a response's head is in; returns the sink its body chunks
#: are fed to as they arrive (a first download's streamed decode), or None.
SinkFactory = Callable[[int, httpx.Headers], StreamingDecode | None]


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
    #: digests of ``content`` computed while verifying it (``{"sha-256": ...}``), for reuse
    digests: dict[str, bytes] = field(default_factory=dict, repr=False)
    #: the sink the body was fed to while it arrived (a first download's streamed decode)
    stream: StreamingDecode | None = field(default=None, repr=False)
    #: seconds from the response head to the body's last byte (what throughput is measured on)
    body_seconds: float = 0.0

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
_HASH_ON_LOOP = 1 << 20  # buffers this large are hashed / decoded on a worker thread
_MAX_STREAMED = 4  # first downloads decoded while they arrive at once (one thread each)


@dataclass(frozen=True)
class ClientOptions:
    """The feature flags a Transport reads, resolved once at construction."""

    delta: bool  # DELTA_AGGREGATOR: ask for registry-core patches
    zstd: bool  # ZSTD_COMPRESSION: zstd and dcz codings, shared dictionaries
    brotli: bool  # BROTLI_COMPRESSION
    quic: bool  # QUIC_TRANSPORT
    coalesce: bool  # CONNECTION_COALESCE
    pq_kex: bool = False  # PQ_KEY_EXCHANGE: HTTP/3 offers X25519MLKEM768 (patches aioquic)

    def codec_flags(self) -> FeatureFlags:
        """Hermetic flags for the Compressors decoding responses, built from these options
        (the caller's FeatureFlags is never consulted again after construction)."""
        from ..flags import FeatureFlags

        return FeatureFlags(
            overrides={"ZSTD_COMPRESSION": self.zstd, "BROTLI_COMPRESSION": self.brotli}
        )

    @classmethod
    def from_flags(cls, flags: FeatureFlags | None) -> tuple[ClientOptions, FeatureFlags]:
        from ..flags import resolve_flags

        resolved = resolve_flags(flags)
        on = resolved.is_enabled
        return cls(
            on("DELTA_AGGREGATOR"),
            on("ZSTD_COMPRESSION"),
            on("BROTLI_COMPRESSION"),
            on("QUIC_TRANSPORT"),
            on("CONNECTION_COALESCE"),
            on("PQ_KEY_EXCHANGE"),
        ), resolved


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
                _STREAM_WINDOW
            )
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
    wire and after decoding. flags: a FeatureFlags resolved once here (None: the catalogue
    defaults) into plain options (:class:`ClientOptions`: DELTA_AGGREGATOR, ZSTD_COMPRESSION,
    BROTLI_COMPRESSION, QUIC_TRANSPORT, CONNECTION_COALESCE, PQ_KEY_EXCHANGE: HTTP/3 then offers
    X25519MLKEM768, patching aioquic for the whole process); changing the flags later does
    not change a built Transport. session_tickets: a dict shared between Transports so a new
    one resumes TLS sessions (TCP) and QUIC sessions (sending idempotent requests as 0-RTT).
    h3_max_datagram_size: QUIC packet size (1200 is safe on every path).

    transport: an ``httpx.AsyncBaseTransport`` to send every request through instead of this
    client's own HTTP/2 / HTTP/3 connections (``httpx.ASGITransport(app=...)`` runs the whole
    fetch policy against an in-process ASGI app; ``httpx.AsyncHTTPTransport()`` uses httpx's
    pool). Retries, size limits, digest checks, decoding and the delta policy are the same.

    apply_timeout: seconds a patch may take to apply (on a worker thread, never on the event
    loop) before :meth:`fetch` gives up on it and downloads the full artifact; the worker's
    result is then discarded.

    allow_http: also accept ``http://`` URLs (a local plain-HTTP upstream such as pypiserver).
    Off by default; allowed only with ``transport`` (this client's own connections are TLS).
    Digest checks are the same; nothing else protects plain-HTTP bytes, so callers that opt
    in should check them against a digest they got elsewhere.

    tls_minimum: the lowest TLS version accepted over TCP ("1.3", the default, or "1.2";
    QUIC is always TLS 1.3).

    first_downloads: when :meth:`fetch` is given no ``have`` (and DELTA_AGGREGATOR is on),
    whether to ask for the artifact's EXPANDED patch (``Delta-Engines`` names ``expanded``,
    docs/wire.md section 3 "First downloads"), decoded while the body arrives and verified
    like every patch, with the same single fallback to a plain GET. "always" (True): every
    first download; "never" (False): plain GETs; "auto" (the default): only when plain
    artifact bodies from that origin (scheme, host, port) have been arriving slower than
    ``first_download_below`` bytes/s (default about 32 Mbit/s: below it the halved transfer
    outweighs the rebuild, docs/transport.md "First downloads"), plain while nothing is
    measured yet. The estimate is :attr:`throughput` (a :class:`ThroughputEstimate` fed by
    every plain ``200`` of :meth:`fetch` of at least 256 KiB; :meth:`observe_throughput`
    seeds it).

    trust: a :class:`~registry_core.signing.TrustedIndex` (python-tuf's ngclient over the
    registry's TUF metadata): :meth:`fetch` then checks every artifact against its signed
    length and sha256, and every ``226`` patch's DSSE envelope against the TUF ``patches``
    role, before returning or writing a byte (``SignatureError`` otherwise; docs/wire.md
    section 7).
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
        flags: FeatureFlags | None = None,
        session_tickets: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        coalesce_requests: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        apply_timeout: float = 60.0,
        allow_http: bool = False,
        trust: TrustedIndex | None = None,
        tls_minimum: str = "1.3",
        first_downloads: bool | str = "auto",
        first_download_below: float = DEFAULT_FIRST_DOWNLOAD_BELOW,
    ) -> None:
        tls_version(tls_minimum)  # InvalidArgumentError for anything but "1.2" / "1.3"
        if allow_http and transport is None:
            raise InvalidArgumentError(
                "allow_http needs a transport= seam (e.g. httpx.AsyncHTTPTransport()): "
                "this client's own connections are TLS only"
            )
        if http3 not in ("auto", True, False):
            raise InvalidArgumentError(f"http3 must be 'auto', True or False, not {http3!r}")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise InvalidArgumentError(f"CA bundle {verify!r} does not exist")
        if not apply_timeout > 0:
            raise InvalidArgumentError(f"apply_timeout must be positive, not {apply_timeout!r}")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise InvalidArgumentError(
                "transport must be an httpx.AsyncBaseTransport, not " f"{type(transport).__name__}"
            )
        self.options, self.flags = ClientOptions.from_flags(flags)
        self.verify = verify
        self.http3 = http3
        self.resolve = {k.lower(): v for k, v in (resolve or {}).items()}
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.h3_connect_timeout = h3_connect_timeout
        self.h3_max_datagram_size = h3_max_datagram_size
        self.max_response_size = max_response_size
        self.retry = retry or RetryPolicy()
        self.coalesce_requests = coalesce_requests
        self.transport = transport
        self.apply_timeout = apply_timeout
        self.allow_http = allow_http
        self.trust = trust
        self.tls_minimum = tls_minimum
        self.first_downloads = first_download_mode(first_downloads)
        if not first_download_below >= 0:
            raise InvalidArgumentError(
                f"first_download_below must be >= 0 bytes/s, not {first_download_below!r}"
            )
        self.first_download_below = first_download_below
        #: plain-download bytes/s per origin, what first_downloads="auto" decides from
        self.throughput = ThroughputEstimate()
        self.default_headers = {"user-agent": "registry-core", **(headers or {})}
        self.codings = Codings(
            zstd=self.options.zstd, brotli=self.options.brotli, flags=self.options.codec_flags()
        )
        self.pool = CoalescingPool(coalesce=self.options.coalesce)
        self.altsvc = AltSvcCache()
        self.stats: collections.Counter[str] = collections.Counter()
        self.session_tickets: dict[str, Any] = {} if session_tickets is None else session_tickets
        self.tls_sessions = self.session_tickets  # TCP TLS sessions, keyed (host, port)
        self._live: dict[int, _Live] = {}
        self._connecting: SingleFlight[_Live] = SingleFlight()
        self._dns: LRU[str, tuple[float, list[str]]] = LRU(max_entries=1024)
        self._singleflight: SingleFlight[Response] = SingleFlight()
        self._ssl: ssl.SSLContext | None = None
        self._policy: FetchPolicy | None = None
        self._appliers: concurrent.futures.ThreadPoolExecutor | None = None
        self._decoders: concurrent.futures.ThreadPoolExecutor | None = None
        self._streamed = threading.BoundedSemaphore(_MAX_STREAMED)
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (and the given ``transport``)."""
        self._closed = True
        for live in list(self._live.values()):
            await self._close(live)
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.aclose()
        if self._appliers is not None:  # a patch past its deadline finishes on its own
            self._appliers.shutdown(wait=False, cancel_futures=True)
            self._appliers = None
        if self._decoders is not None:  # abandoned streamed decodes stop at their next chunk
            self._decoders.shutdown(wait=False, cancel_futures=True)
            self._decoders = None

    async def _close(self, live: _Live) -> None:
        self.pool.remove(live.record.conn_id)
        self._live.pop(live.record.conn_id, None)
        with contextlib.suppress(Exception):  # a broken connection must not mask the real error
            await live.conn.aclose()

    def connections(self) -> list[ConnectionRecord]:
        """Records of the open connections (protocol, origin, address, certificate names)."""
        return self.pool.records()

    # -- public API --------------------------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_size: int | None = None,
    ) -> Response:
        """GET ``url``; concurrent identical GETs share one request on the wire."""
        return await self.request("GET", url, headers=headers, timeout=timeout, max_size=max_size)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        timeout: float | None = None,
        max_size: int | None = None,
        dictionary: Any = None,
        stream: SinkFactory | None = None,
    ) -> Response:
        """Send a request with retries; returns the whole (decoded, verified) response.

        ``dictionary``: the dictionary named by an ``Available-Dictionary`` header (bytes or a
        ``compress.Dictionary``), needed to decode a ``dcz`` answer. ``stream``: called with
        each attempt's status and headers; the sink it returns (if any) is fed the body's
        chunks as they arrive, closed when the body is complete, aborted when the attempt
        fails, and left on :attr:`Response.stream` (requests with it are not coalesced).
        """
        if self._closed:
            raise TransportError("this Transport is closed")
        method = method.upper()
        u = httpx.URL(url)
        if u.scheme != "https" and not (u.scheme == "http" and self.allow_http):
            raise InvalidArgumentError(
                f"only https:// URLs are supported (http:// with allow_http=True), not {url!r}"
            )
        if isinstance(dictionary, (bytes, bytearray, memoryview)):
            from ..compress import Dictionary

            dictionary = Dictionary(dictionary)
        hdrs = {k.lower(): v for k, v in {**self.default_headers, **(headers or {})}.items()}
        hdrs.setdefault("accept-encoding", accept_encoding(self.codings))
        limit = self.max_response_size if max_size is None else max_size
        attempt_timeout = timeout or self.timeout

        def run() -> Awaitable[Response]:
            return self._with_retries(
                method, u, hdrs, content, attempt_timeout, limit, dictionary, stream
            )

        if (
            self.coalesce_requests
            and method in ("GET", "HEAD")
            and content is None
            and stream is None
        ):
            key = (method, str(u), tuple(sorted(hdrs.items())), timeout, limit)
            try:
                return await self._singleflight.do(key, run)
            finally:
                self.stats["requests_coalesced"] = self._singleflight.shared
        return await run()

    async def fetch(
        self,
        url: str,
        *,
        have: bytes | None = None,
        dest: str | os.PathLike[str] | None = None,
        max_size: int | None = None,
        trust: TrustedIndex | None = None,
    ) -> bytes:
        """Download an artifact, as a registry-core patch against ``have`` when possible.

        The result is checked against the server's digest (the patch result against
        ``Repr-Digest``; every body against ``Content-Digest``; the artifact against its strong
        ETag) before it is returned. On any mismatch :class:`DigestMismatchError` is raised and
        ``dest`` (if given) is not touched; otherwise ``dest`` is replaced atomically, with the
        permissions a plain ``open()`` would give under the process umask.

        A patch this client cannot use (its platform cannot rebuild it, it is over the limits,
        corrupt, made for another base, or takes longer than ``apply_timeout``) is dropped and
        the full artifact is downloaded instead, once, and verified the same way.

        Without ``have`` (a first download) the request asks for an EXPANDED patch against
        the empty base (``first_downloads``); a ``226`` to it is decoded while it arrives
        (``stats["fetch_expanded_streamed"]``) and counted as ``fetch_expanded``.

        ``trust`` (default: the Transport's): a TrustedIndex; the artifact must then match its
        TUF targets metadata (length, sha256) and a patch must carry a DSSE envelope signed by
        the TUF ``patches`` role binding base, target and patch; else :class:`SignatureError`
        (no fallback: a refused envelope is an attack, not an unusable patch).
        """
        limit = self.max_response_size if max_size is None else max_size
        trust = trust if trust is not None else self.trust
        if trust is not None:
            data = await self._fetch_trusted(url, have, limit, trust)
        else:
            data = await self._fetch(url, have, limit)
        if dest is not None:
            atomic_write(dest, data)
        return data

    async def _fetch_policy(self) -> FetchPolicy:
        if self._policy is None:
            engines = (
                await asyncio.to_thread(reproduced_engines) if self.options.delta else frozenset()
            )
            self._policy = FetchPolicy(
                delta=self.options.delta,
                dcz=self.options.zstd,
                engines=engines,
                first_downloads=self.first_downloads,
                first_download_below=self.first_download_below,
            )
        return self._policy

    def observe_throughput(self, url: str, nbytes: int, seconds: float) -> bool:
        """Fold one plain download of ``nbytes`` in ``seconds`` from ``url``'s origin into
        :attr:`throughput` (what :meth:`fetch` does after every plain ``200``; callers and
        tests may seed it). Returns whether it counted (bodies under 256 KiB do not)."""
        return self.throughput.observe(origin_of(url), nbytes, seconds)

    async def _plan(self, policy: FetchPolicy, have: bytes | None, url: str) -> FetchPlan:
        """The first request's plan; ``have`` is hashed here, once (off the loop if large)."""
        if have is None:
            return policy.plan(None, throughput=self.throughput.get(origin_of(url)))

        def hashed() -> tuple[bytes, Any]:
            if self.options.zstd:  # the dcz dictionary hashes ``have``: use its digest
                from ..compress import Dictionary

                d = Dictionary(have)
                return d.sha256, d
            return sha256(have), None

        if len(have) >= _HASH_ON_LOOP:
            digest, dictionary = await asyncio.to_thread(hashed)
        else:
            digest, dictionary = hashed()
        return policy.plan(have, have_sha256=digest, dictionary=dictionary)

    async def _send_plan(
        self,
        policy: FetchPolicy,
        plan: FetchPlan,
        url: str,
        limit: int,
        stream: SinkFactory | None = None,
    ) -> tuple[Decision, Response]:
        headers = plan.headers
        if plan.dictionary is not None:
            headers = {**headers, "accept-encoding": accept_encoding(self.codings, dcz=True)}
        r = await self.request(
            "GET", url, headers=headers, max_size=limit, dictionary=plan.dictionary, stream=stream
        )
        try:
            decision = policy.decide(
                plan,
                r.status,
                r.headers,
                r.content,
                url=url,
                coding=r.headers.get("content-encoding", "identity"),
                digests=r.digests,
            )
        except BaseException:
            if r.stream is not None:
                r.stream.abort()
            raise
        if decision.action != "apply" and r.stream is not None:
            r.stream.abort()
        if decision.action == "accept" and r.status == 200:
            self.observe_throughput(url, len(r.raw_content), r.body_seconds)
        return decision, r

    def _first_download_sink(
        self, policy: FetchPolicy, plan: FetchPlan, url: str, limit: int
    ) -> SinkFactory | None:
        """The sink factory of a first download: a ``226`` whose headers pass the
        first-download checks gets an ExpandedDecoder fed while the body arrives (at most
        ``_MAX_STREAMED`` at once; beyond that, or when a check fails, no sink: the body is
        read whole and :meth:`_apply` handles it, the checks raising there)."""
        if not plan.first:
            return None

        def make(status: int, headers: httpx.Headers) -> StreamingDecode | None:
            if status != 226:
                return None
            try:
                expected, _post = policy.first_download_target(plan, headers, url)
                decoder = _firstdl.new_decoder(limit)
            except (RegistryCoreError, ImportError):
                return None
            if not self._streamed.acquire(blocking=False):
                return None
            if self._decoders is None:
                self._decoders = concurrent.futures.ThreadPoolExecutor(
                    max_workers=_MAX_STREAMED, thread_name_prefix="registry-core-decode"
                )
            try:
                sink = StreamingDecode(
                    decoder,
                    self._decoders,
                    expected_sha256=expected,
                    idle_timeout=self.timeout + self.apply_timeout,
                )
            except BaseException:
                self._streamed.release()
                raise
            sink.add_done_callback(self._streamed.release)
            return sink

        return make

    async def _fetch_trusted(
        self, url: str, have: bytes | None, limit: int, trust: TrustedIndex
    ) -> bytes:
        """:meth:`_fetch` with TUF checks: the target's signed info first, each patch's
        envelope before it is applied, the result's length and sha256 last."""
        from ..errors import SignatureError

        path = trust.target_path(url)
        known = trust.ready(path)  # no I/O needed: stay on the loop (verifying is ~1 ms)
        info = known if known is not None else await asyncio.to_thread(trust.targetinfo, path)
        want = bytes.fromhex(info.hashes["sha256"])
        if info.length > limit:
            raise ResponseTooLargeError(
                f"{url}: TUF says {info.length} bytes, over the {limit}-byte limit"
            )

        async def check_patch(plan: FetchPlan, decision: Decision, r: Response) -> None:
            etag_sha = etag_to_sha256(r.headers.get("etag", ""))
            if etag_sha is None or not hmac.compare_digest(etag_sha, want):
                raise SignatureError(
                    f"{url}: the patch is for {r.headers.get('etag')}, not the TUF target "
                    f"sha256 {want.hex()}"
                )
            envelope = await self._delta_envelope(url, r)
            assert decision.patch is not None and plan.have_sha256 is not None
            patch_sha = r.digests.get("sha-256") or sha256(decision.patch)
            verify = functools.partial(
                trust.verify_patch,
                envelope,
                target_path=path,
                base_sha256=plan.have_sha256,
                target_sha256=want,
                patch_sha256=patch_sha,
            )
            if known is None:
                await asyncio.to_thread(verify)
                return
            try:
                verify(refresh=False)  # no I/O: on the loop
            except SignatureError:  # perhaps rotated keys: the refresh needs the network
                await asyncio.to_thread(verify)

        data = await self._fetch(url, have, limit, check_patch)
        got = await asyncio.to_thread(sha256, data) if len(data) >= _HASH_ON_LOOP else sha256(data)
        if len(data) != info.length or not hmac.compare_digest(got, want):
            raise SignatureError(
                f"{url}: {len(data)} bytes with sha256 {got.hex()}, but the TUF targets metadata "
                f"says {info.length} bytes, sha256 {want.hex()}; nothing was written"
            )
        self.stats["fetch_tuf_verified"] += 1
        return data

    async def _delta_envelope(self, url: str, r: Response) -> bytes:
        """A 226's DSSE envelope: inline (``Delta-Envelope``) or from its ``Link``."""
        from ..errors import SignatureError
        from ..wire._dictionary import parse_sf_item

        inline = r.headers.get("delta-envelope")
        if inline:
            item = parse_sf_item(inline)
            if item is None or not isinstance(item[0], bytes):
                raise SignatureError(f"{url}: malformed Delta-Envelope field")
            return item[0]
        link = _envelope_link(r.headers.get_list("link"))
        if link is None:
            raise SignatureError(
                f"{url}: the 226 patch carries no envelope (Delta-Envelope or Link "
                'rel="delta-envelope"): it cannot be verified'
            )
        target = httpx.URL(url).join(link)
        if (target.scheme, target.host, target.port) != (
            httpx.URL(url).scheme,
            httpx.URL(url).host,
            httpx.URL(url).port,
        ):
            raise SignatureError(f"{url}: the envelope link points at another origin")
        er = await self.get(str(target), max_size=1 << 20)
        if er.status != 200:
            raise SignatureError(f"{url}: envelope {target} answered {er.status}")
        self.stats["fetch_envelopes_linked"] += 1
        return er.content

    async def _fetch(
        self,
        url: str,
        have: bytes | None,
        limit: int,
        check_patch: Callable[[FetchPlan, Decision, Response], Awaitable[None]] | None = None,
    ) -> bytes:
        policy = await self._fetch_policy()
        plan = await self._plan(policy, have, url)
        # A first download is decoded while it arrives, unless a signed envelope must be
        # checked first (TUF: the patch is then applied whole, after check_patch).
        stream = (
            self._first_download_sink(policy, plan, url, limit)
            if plan.first and check_patch is None
            else None
        )
        decision, r = await self._send_plan(policy, plan, url, limit, stream)
        if decision.action == "apply" and check_patch is not None:
            await check_patch(plan, decision, r)
        if decision.action == "apply":
            try:
                decision = await self._apply(policy, plan, decision, r, url, limit)
            except asyncio.TimeoutError:
                self.stats["fetch_delta_timeout"] += 1
            except Exception as exc:
                stat = policy.unusable(exc)
                if stat is None:
                    raise
                self.stats[stat] += 1
            else:
                self.stats["fetch_bytes_wire"] += len(r.raw_content)
            if decision.action == "apply":  # dropped: one request for the full artifact
                full = policy.full_plan()
                decision, r2 = await self._send_plan(policy, full, url, limit)
                if decision.action != "accept":
                    raise TransportError(
                        f"{url}: the full download after an unusable patch "
                        f"was answered {r2.status}"
                    )
                self.stats["fetch_delta_fallbacks"] += 1
                self.stats["fetch_bytes_wire"] += len(r.raw_content) + len(r2.raw_content)
        elif decision.action != "have":
            self.stats["fetch_bytes_wire"] += len(r.raw_content)
        self.stats[decision.stat] += 1
        assert decision.data is not None
        if decision.action != "have":
            self.stats["fetch_bytes_full"] += len(decision.data)
        return decision.data

    async def _apply(
        self,
        policy: FetchPolicy,
        plan: FetchPlan,
        decision: Decision,
        r: Response,
        url: str,
        limit: int,
    ) -> Decision:
        """Apply the patch on a worker thread, within ``apply_timeout``; a first download's
        streamed decode is awaited within the same deadline (counted from the body's end)."""
        if r.stream is not None:
            return await self._finish_streamed(policy, plan, r, url, limit)
        patch, have = decision.patch, plan.have if plan.have is not None else b""
        assert patch is not None and (plan.have is not None or plan.first)
        headers = r.headers

        def work() -> tuple[bytes, tuple[str, bytes] | None]:
            from ..delta import DeltaAggregator

            try:
                info = DeltaAggregator.inspect(patch)
                post = policy.before_apply(plan, info, headers, url)
                if info.target_size > limit:
                    raise OutputTooLargeError(
                        f"{url}: the patch declares a {info.target_size}-byte artifact, over "
                        f"the {limit}-byte limit"
                    )
                agg = DeltaAggregator(archive_aware=True, max_output_size=limit)
                return agg.apply(have, patch), post
            except MemoryError:
                raise OutputTooLargeError(
                    f"{url}: applying the patch ran out of memory (a patch declaring more "
                    "than this process can hold); the full artifact is fetched instead"
                ) from None

        if self._appliers is None:
            self._appliers = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix="registry-core-apply"
            )
        job = asyncio.get_running_loop().run_in_executor(self._appliers, work)
        data, post = await asyncio.wait_for(job, self.apply_timeout)
        return policy.after_apply(plan, data, limit, url, post)

    async def _finish_streamed(
        self, policy: FetchPolicy, plan: FetchPlan, r: Response, url: str, limit: int
    ) -> Decision:
        """The outcome of a first download decoded while it arrived (``r.stream``): the
        header checks again (they raise here, where a failure means the fallback), the
        decoder's verified artifact within ``apply_timeout``, its target tied to the digest
        the checks returned."""
        sink = r.stream
        assert sink is not None
        try:
            expected, post = policy.first_download_target(plan, r.headers, url)
            data = await sink.result(self.apply_timeout)
        except MemoryError:
            raise OutputTooLargeError(
                f"{url}: rebuilding the first download ran out of memory; the full artifact "
                "is fetched instead"
            ) from None
        finally:
            sink.abort()
        if expected is not None:
            said = getattr(sink.decoder, "target_sha256", None)
            declared: bytes = (
                said
                if isinstance(said, bytes) and len(said) == 32
                else await asyncio.to_thread(sha256, data)  # a decoder that says nothing
            )
            if not hmac.compare_digest(declared, expected):
                raise DigestMismatchError(
                    f"{url}: the rebuilt artifact is not the one Repr-Digest/ETag announced; "
                    "nothing was written"
                )
        self.stats["fetch_expanded_streamed"] += 1
        return policy.after_apply(plan, data, limit, url, post)

    # -- retries -----------------------------------------------------------------------------

    async def _with_retries(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
        limit: int,
        dictionary: bytes | None,
        stream: SinkFactory | None = None,
    ) -> Response:
        attempt = 0
        replays = 0
        dedicated = False
        while True:
            attempt += 1
            unprocessed = False
            try:
                r = await asyncio.wait_for(
                    self._attempt(
                        method, url, headers, content, timeout, limit, dedicated, dictionary, stream
                    ),
                    timeout,
                )
                if self.retry.should_retry_status(attempt, method, r.status):
                    if r.stream is not None:
                        r.stream.abort()
                    self.stats["retries"] += 1
                    await asyncio.sleep(self.retry.delay(attempt, retry_after=_retry_after(r)))
                    continue
                return r
            except _Misdirected:
                if dedicated:
                    raise TransportError(
                        f"{url}: 421 Misdirected Request even on a dedicated " "connection"
                    ) from None
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
                    exc.__context__, ssl.SSLCertVerificationError
                ):
                    raise TransportError(
                        f"{url}: TLS certificate verification failed: {exc}"
                    ) from exc
                # Never sent, so safe for any method, but a refused connection is a real
                # failure: it spends the attempt budget, not the replay budget.
                if attempt >= self.retry.max_attempts:
                    raise TransportError(
                        f"{method} {url} failed after {attempt + replays} "
                        f"attempt(s): cannot connect: {exc}"
                    ) from exc
                self.stats["retries"] += 1
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            except (
                httpcore.NetworkError,
                httpcore.ProtocolError,
                httpcore.TimeoutException,
                httpx.TransportError,
                h2.exceptions.ProtocolError,
                asyncio.TimeoutError,
                OSError,
            ) as exc:
                error = exc
            except _Drained as exc:
                # A graceful GOAWAY (NO_ERROR) cut our stream: the server is draining the
                # connection, not failing. Idempotent requests replay on the replay budget.
                error = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                unprocessed = method in IDEMPOTENT_METHODS
            except ssl.SSLError as exc:
                raise TransportError(f"{url}: TLS failed: {exc}") from exc
            if unprocessed:
                replays += 1
                attempt -= 1  # the server never saw it: not an attempt
            if not self.retry.should_retry(
                attempt, method, unprocessed=unprocessed, replays=replays
            ):
                kind = "timed out" if isinstance(error, asyncio.TimeoutError) else "failed"
                raise TransportError(
                    f"{method} {url} {kind} after {attempt + replays} "
                    f"attempt(s): {type(error).__name__}: {error}"
                ) from error
            self.stats["replays" if unprocessed else "retries"] += 1
            await asyncio.sleep(
                self.retry.delay(
                    max(attempt, 1) if not unprocessed else replays, unprocessed=unprocessed
                )
            )

    # -- one attempt -------------------------------------------------------------------------

    def _h3_allowed(self) -> bool:
        return self.http3 is not False and self.options.quic

    async def _attempt(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
        limit: int,
        dedicated: bool,
        dictionary: Any = None,
        stream: SinkFactory | None = None,
    ) -> Response:
        if self.transport is not None:
            return await self._attempt_seam(
                method, url, headers, content, timeout, limit, dictionary, stream
            )
        started = time.perf_counter()
        origin: Origin = ("https", url.host.lower(), url.port or 443)
        now = time.monotonic()
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
                        raise TransportError(
                            f"{url}: HTTP/3 required but unavailable: {exc}"
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
            exchange: Awaitable[
                tuple[int, httpx.Headers, bytes, str, StreamingDecode | None, float]
            ] = self._exchange(live, method, url, headers, content, timeout, limit, stream)
            if rec.protocol == "h3" and live.conn.early:
                # 0-RTT: the request is already on its way; if the handshake then fails
                # (UDP blocked since the ticket was issued), fall back like a failed connect.
                task = asyncio.ensure_future(exchange)
                try:
                    deadline = (
                        self.h3_connect_timeout if self.http3 == "auto" else self.connect_timeout
                    )
                    await live.conn.wait_handshake(deadline)
                except H3ConnectError as exc:
                    task.cancel()
                    await self._close(live)
                    if self.http3 is True:
                        raise TransportError(
                            f"{url}: HTTP/3 required but unavailable: {exc}"
                        ) from exc
                    self.altsvc.mark_broken(origin, now)
                    self.stats["h3_fallbacks"] += 1
                    raise _Unprocessed() from exc
                exchange = task
            status, resp_headers, raw, version, sink, body_seconds = await exchange
        finally:
            self.pool.release(rec.conn_id)
            if live.conn.is_closed():
                self.pool.remove(rec.conn_id)
                self._live.pop(rec.conn_id, None)
        if status == 421 and rec.origin != origin:
            if sink is not None:
                sink.abort()
            self.pool.misdirected(rec.conn_id, origin)
            raise _Misdirected()
        alt_svc = resp_headers.get("alt-svc")
        if alt_svc and rec.protocol != "h3" and self._h3_allowed():
            self.altsvc.update(origin, alt_svc, time.monotonic())
        r = await self._finish(
            method,
            url,
            status,
            resp_headers,
            raw,
            version,
            rec.conn_id,
            started,
            limit,
            dictionary,
            sink,
        )
        r.body_seconds = body_seconds
        return r

    async def _attempt_seam(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
        limit: int,
        dictionary: Any,
        stream: SinkFactory | None = None,
    ) -> Response:
        """One attempt through the given ``httpx.AsyncBaseTransport``."""
        assert self.transport is not None
        started = time.perf_counter()
        req = httpx.Request(
            method,
            url,
            headers=headers,
            content=content,
            extensions={
                "timeout": {
                    "connect": self.connect_timeout,
                    "read": timeout,
                    "write": timeout,
                    "pool": timeout,
                }
            },
        )
        resp = await self.transport.handle_async_request(req)
        sink = stream(resp.status_code, resp.headers) if stream is not None else None
        head = time.perf_counter()
        try:
            raw = await _read_limited(
                resp.stream, limit, resp.headers, str(url), method, resp.status_code, sink
            )
            body_seconds = time.perf_counter() - head
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        finally:
            await resp.aclose()
        version = resp.extensions.get("http_version", b"HTTP/1.1")
        version = version.decode("ascii", "replace") if isinstance(version, bytes) else "HTTP/1.1"
        r = await self._finish(
            method,
            url,
            resp.status_code,
            resp.headers,
            raw,
            version,
            0,
            started,
            limit,
            dictionary,
            sink,
        )
        r.body_seconds = body_seconds
        return r

    async def _finish(
        self,
        method: str,
        url: httpx.URL,
        status: int,
        resp_headers: httpx.Headers,
        raw: bytes,
        version: str,
        conn_id: int,
        started: float,
        limit: int,
        dictionary: Any,
        sink: StreamingDecode | None = None,
    ) -> Response:
        """Verify the digests of ``raw`` (each algorithm hashed once) and undo its coding; on a
        worker thread when the body is large (hashing or inflating it must not stall the loop).
        ``sink``: the body's streamed decode, left on the Response (aborted if a check fails)."""
        check = functools.partial(
            self._check_and_decode,
            method,
            url,
            status,
            resp_headers,
            raw,
            version,
            conn_id,
            started,
            limit,
            dictionary,
        )
        try:
            r = await asyncio.to_thread(check) if len(raw) >= _HASH_ON_LOOP else check()
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        r.stream = sink
        return r

    def _check_and_decode(
        self,
        method: str,
        url: httpx.URL,
        status: int,
        resp_headers: httpx.Headers,
        raw: bytes,
        version: str,
        conn_id: int,
        started: float,
        limit: int,
        dictionary: Any,
    ) -> Response:
        digests: dict[str, bytes] = {}
        if method != "HEAD" and status != 304:
            checked = (
                resp_headers
                if status == 200
                else {"content-digest": resp_headers.get("content-digest", "")}
            )
            verify_body(raw, checked, f"{method} {url}", digests)
        coding = resp_headers.get("content-encoding", "identity")
        try:
            decoded = (
                decode_body(coding, raw, limit, self.codings, dictionary=dictionary)
                if status != 226
                else raw
            )
        except DecompressionLimitError as exc:
            raise ResponseTooLargeError(
                f"{method} {url}: decoded body exceeds the {limit}-byte " f"limit: {exc}"
            ) from exc
        except CompressionError as exc:
            raise TransportError(f"{method} {url}: undecodable {coding} body: {exc}") from exc
        if decoded is not raw:
            digests = {}  # they were of the encoded bytes
        return Response(
            status,
            resp_headers,
            decoded,
            version,
            str(url),
            raw,
            conn_id,
            time.perf_counter() - started,
            digests,
        )

    async def _exchange(
        self,
        live: _Live,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
        limit: int,
        stream: SinkFactory | None = None,
    ) -> tuple[int, httpx.Headers, bytes, str, StreamingDecode | None, float]:
        """Send on ``live`` and read the whole body (bounded by ``limit``), feeding it to the
        sink ``stream`` returns for this response (if any) as it arrives; the last item is
        the seconds from the head to the body's end."""
        sink: StreamingDecode | None = None
        rec = live.record
        try:
            if rec.protocol == "h3":
                status, resp_headers, body_iter, closer = await self._send_h3(
                    live, method, url, headers, content, timeout
                )
                version = "HTTP/3"
            else:
                status, resp_headers, body_iter, closer = await self._send_h2(
                    live, method, url, headers, content, timeout
                )
                version = "HTTP/2" if rec.protocol == "h2" else "HTTP/1.1"
            sink = stream(status, resp_headers) if stream is not None else None
            head = time.perf_counter()
            try:
                raw = await _read_limited(
                    body_iter, limit, resp_headers, str(url), method, status, sink
                )
                body_seconds = time.perf_counter() - head
            finally:
                await closer()
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            h2.exceptions.ProtocolError,
            OSError,
        ) as exc:
            if sink is not None:
                sink.abort()
            terminated = getattr(live.conn, "_connection_terminated", None)
            if terminated is not None and getattr(terminated, "error_code", None) == 0:
                raise _Drained() from exc
            raise
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        return status, resp_headers, raw, version, sink, body_seconds

    async def _send_h2(
        self,
        live: _Live,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
    ):
        origin = live.record.origin
        authority = url.netloc.decode("ascii")
        req = httpcore.Request(
            method.encode(),
            httpcore.URL(
                scheme=b"https", host=origin[1].encode("ascii"), port=origin[2], target=url.raw_path
            ),
            headers=[(b"host", authority.encode("ascii"))]
            + [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in headers.items()
                if k != "host"
            ]
            + ([(b"content-length", str(len(content)).encode())] if content else []),
            content=content or b"",
            extensions={
                "timeout": {
                    "connect": self.connect_timeout,
                    "read": timeout,
                    "write": timeout,
                    "pool": timeout,
                }
            },
        )
        resp = await live.conn.handle_async_request(req)
        hdrs = httpx.Headers([(k, v) for k, v in resp.headers])
        return resp.status, hdrs, resp.stream, resp.aclose

    async def _send_h3(
        self,
        live: _Live,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        timeout: float,
    ):
        req = httpx.Request(
            method, url, headers=headers, content=content, extensions={"timeout": {"read": timeout}}
        )
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
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        addrs = list(dict.fromkeys(info[4][0] for info in infos))
        self._dns.put(host, (now + 60.0, addrs))
        return addrs

    async def _connection(
        self, origin: Origin, proto: str, dedicated: bool, h3_port: int | None = None
    ) -> _Live:
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

            # One connection attempt per (origin, protocol, dedicated) at a time, shared by
            # every request that needs it; a requester that is cancelled does not take the
            # attempt away from the others (_util.SingleFlight).
            def open_one() -> Awaitable[_Live]:
                if proto == "h3":
                    return self._open_h3(origin, addresses[0], h3_port or origin[2])
                return self._open_h2(origin, addresses[0])

            live = await self._connecting.do((origin, proto, dedicated), open_one)
            # The first request to resume takes the fresh connection (a new HTTP/1.1
            # connection is not "available" to httpcore until its first request); later ones
            # share it when it is multiplexed, else look again.
            if not live.conn.is_closed() and (
                live.record.active == 0 or (live.record.multiplexed and live.conn.is_available())
            ):
                return live

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _shared_context(self.verify, self.tls_minimum)
        return self._ssl

    async def _open_h2(self, origin: Origin, address: str) -> _Live:
        try:
            stream = await connect_tls(
                address,
                origin[2],
                server_hostname=origin[1],
                context=self._ssl_context(),
                timeout=self.connect_timeout,
                sessions=self.tls_sessions,
            )
        except httpcore.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise TransportError(
                    f"https://{origin[1]}:{origin[2]}: TLS certificate "
                    f"verification failed: {exc}"
                ) from exc
            raise
        if stream.session_reused:
            self.stats["tls_resumed"] += 1
        sslobj = stream.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        names: tuple[str, ...] = ()
        if sslobj is not None and self.verify is not False:
            cert = sslobj.getpeercert() or {}
            names = tuple(
                v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")
            )
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
        conn = await H3Connection.connect(
            address,
            port,
            server_name=origin[1],
            verify=verify,
            session_tickets=self.session_tickets,
            timeout=(self.h3_connect_timeout if self.http3 == "auto" else self.connect_timeout),
            max_datagram_size=self.h3_max_datagram_size,
            pq_kex=self.options.pq_kex,
        )
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


def _shared_context(verify: bool | str, minimum: str = "1.3") -> ssl.SSLContext:
    """One client SSLContext per (``verify``, TLS floor) for the process.

    Loading a CA bundle costs milliseconds, and TLS sessions can only be resumed through the
    context that created them, so Transports sharing ``session_tickets`` share contexts too.
    """
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get((verify, minimum))
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
        ctx.minimum_version = tls_version(minimum)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        _CONTEXTS[(verify, minimum)] = ctx
        return ctx


def _envelope_link(values: list[str]) -> str | None:
    """The target of the first ``Link: <...>; rel="delta-envelope"`` (RFC 8288)."""
    for value in values:
        for part in value.split(","):
            url, _, params = part.strip().partition(";")
            url = url.strip()
            if not (url.startswith("<") and url.endswith(">")):
                continue
            for param in params.split(";"):
                k, _, v = param.strip().partition("=")
                if k.strip().lower() == "rel" and "delta-envelope" in v.strip('" ').split():
                    return url[1:-1]
    return None


def _retry_after(r: Response) -> float | None:
    value = r.headers.get("retry-after")
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


async def _read_limited(
    body: Any,
    limit: int,
    headers: httpx.Headers,
    url: str,
    method: str,
    status: int,
    sink: StreamingDecode | None = None,
) -> bytes:
    """The whole body, at most ``limit`` bytes and exactly its Content-Length; each chunk is
    also handed to ``sink`` as it arrives, and the sink closed once the body is complete (the
    caller aborts it on any error)."""
    declared = headers.get("content-length")
    length: int | None = None
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise TransportError(f"{url}: invalid Content-Length {declared!r}") from None
        if length > limit:
            raise ResponseTooLargeError(
                f"{url}: response declares {length} bytes, over the "
                f"{limit}-byte limit; nothing was read"
            )
    buf = bytearray()
    async for chunk in body:
        buf += chunk
        if len(buf) > limit:
            raise ResponseTooLargeError(f"{url}: response exceeds the {limit}-byte limit")
        if sink is not None:
            sink.feed(chunk)
    if length is not None and method != "HEAD" and status not in (204, 304) and len(buf) != length:
        raise httpcore.RemoteProtocolError(
            f"{url}: truncated body: {len(buf)} of {length} declared bytes"
        )
    if sink is not None:
        sink.close()
    return bytes(buf)
