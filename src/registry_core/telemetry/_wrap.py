"""Telemetry: request spans, metrics, access logs and health endpoints around one ASGI app.

``Telemetry(...).wrap(app, ready=...)`` answers three paths itself and passes everything else
(and the lifespan) to ``app``:

- ``/healthz``: 200 while the process serves at all;
- ``/readyz``: 200 when ``ready()`` is true, 503 otherwise (storage/database down, draining);
- ``/metrics``: the Prometheus text, for loopback peers that did not come through a proxy
  (no ``Forwarded`` / ``X-Forwarded-For``), or for any peer sending the configured
  ``Authorization: Bearer <metrics_token>``; everyone else gets the uniform 404.

Per other request: one server span (when tracing is on) whose tracer the components below
reach through :func:`registry_core.telemetry.span`, one observation of the request metrics and
one JSON access log line (the app's scope then carries ``registry_core.access_logged``, so an
app logging requests of its own can leave its line out). The tenant, subject and route come
from what the app told :func:`~registry_core.telemetry.annotate` (or the scope's
``registry_core.tenant`` key), the route template otherwise from :func:`route_template`.
Telemetry never raises into a request: a failure of its own is logged and the request goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import ipaddress
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ._context import begin_request, end_request, reset_tracer, set_tracer
from ._logs import AccessLog, access_line

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from ._metrics import Metrics
    from ._tracing import Tracing

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["Telemetry", "route_template"]

log = logging.getLogger("registry_core.telemetry")

TENANT_KEY = "registry_core.tenant"  # server/_auth_middleware.TENANT_KEY (not imported: cheap)
PRINCIPAL_KEY = "registry_core.principal"
# in the scope the app sees when this wrapper writes the access line, so an app with a line of
# its own (MultiTenantApp's registry_core.server.access) leaves it out: one line per request
ACCESS_LOGGED_KEY = "registry_core.access_logged"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HEALTH = frozenset({"/healthz", "/readyz", "/metrics"})
_DIST = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg")
_TENANT_ROUTES = frozenset({"oidc", "saml", "whoami", "logout", "login", "audit", "tuf", "tokens"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_READY_TIMEOUT_S = 5.0
_NOT_FOUND = b"404 Not Found\n"  # the bytes of server/_auth_middleware.NOT_FOUND_BODY
_WANTED = frozenset({b"x-request-id", b"traceparent", b"tracestate"})
_ID_PREFIX = secrets.token_hex(4)  # per process: ids from several instances never collide
_ID_COUNTER = itertools.count(1)


def _next_request_id() -> str:
    """A unique id without a syscall (os.urandom releases the GIL: costly under load)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def route_template(method: str, path: str) -> str:
    """A bounded label for ``path``: its shape with names replaced (``/simple/{project}/``),
    never a value from the request. The tenant/index prefix is left out (the tenant is a
    label of its own)."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return "/legacy/" if method == "POST" else "/"
    if "simple" in segments:
        rest = segments[segments.index("simple") + 1 :]
        if not rest:
            return "/simple/"
        return "/simple/{project}/" if len(rest) == 1 else "/simple/*"
    if len(segments) >= 2 and segments[-2] == "acme-challenge":
        return "/.well-known/acme-challenge/{token}"
    if "_" in segments:
        rest = segments[segments.index("_") + 1 :]
        if rest and rest[0] in _TENANT_ROUTES:
            return f"/_/{rest[0]}" + ("/*" if len(rest) > 1 else "")
        return "/_/*"
    last = segments[-1]
    if method == "POST" and last == "legacy":
        return "/legacy/"
    if last.endswith(".metadata"):
        return "/{file}.metadata"
    if last.endswith(_DIST):
        if len(segments) >= 3 and segments[-3] == "files":
            return "/files/{project}/{file}"
        return "/{file}"
    if method == "POST":
        return "/legacy/"
    return "other"


def _outcome(status: int, failed: bool) -> str:
    if failed or status == 0:
        return "error"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def _peer(scope: Scope) -> str | None:
    """The connection's peer address (the ASGI scope's ``client`` host), never a forwarded
    header: behind a reverse proxy this is the proxy's address."""
    client = scope.get("client")
    if not client:
        return None
    host = str(client[0])
    return host[:64] if host else None


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(str(client[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Telemetry:
    """Tracing, metrics and access logs for one server.

    ``otlp_endpoint``: the OTLP/HTTP collector spans go to (None: tracing off, ``span()`` costs
    a contextvar read); ``sample_ratio``: share of traces kept; ``metrics``: keep the
    Prometheus metrics (a registry of this object's own); ``access_log``: True for the
    ``registry_core.telemetry.access`` logger, a callable taking each JSON line, or False.
    ``metrics_token``: a bearer token that opens ``/metrics`` to non-loopback peers (kept only
    as its SHA-256). ``span_exporter``: instead of ``otlp_endpoint``, any SpanExporter.
    ``max_queue_size`` / ``export_timeout_s``: the span queue's bound and one export's bound.
    """

    def __init__(
        self,
        *,
        service_name: str = "registry-core",
        otlp_endpoint: str | None = None,
        sample_ratio: float = 1.0,
        metrics: bool = True,
        access_log: bool | Callable[[str], None] = True,
        metrics_token: str | None = None,
        span_exporter: SpanExporter | None = None,
        max_queue_size: int = 2048,
        export_timeout_s: float = 5.0,
    ) -> None:
        if metrics_token is not None and len(metrics_token) < 16:
            raise InvalidArgumentError("metrics_token must be at least 16 characters")
        self.service_name = service_name
        self.tracing: Tracing | None = None
        if otlp_endpoint is not None or span_exporter is not None:
            from ._tracing import Tracing

            self.tracing = Tracing(
                service_name=service_name,
                endpoint=otlp_endpoint if span_exporter is None else None,
                exporter=span_exporter,
                sample_ratio=sample_ratio,
                max_queue_size=max_queue_size,
                export_timeout_s=export_timeout_s,
            )
        self.metrics: Metrics | None = None
        if metrics:
            from ._metrics import Metrics

            self.metrics = Metrics(span_counts=self._span_counts if self.tracing else None)
        self._access: AccessLog | None = None
        if access_log is True:
            self._access = AccessLog()
        elif callable(access_log):
            self._access = AccessLog(access_log)
        self._token_digest = (
            hashlib.sha256(metrics_token.encode()).digest() if metrics_token is not None else None
        )
        self._propagator: Any = None
        if self.tracing is not None:
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )

            self._propagator = TraceContextTextMapPropagator()

    def __repr__(self) -> str:
        return (
            f"Telemetry(service_name={self.service_name!r}, tracing={self.tracing is not None}, "
            f"metrics={self.metrics is not None}, access_log={self._access is not None})"
        )

    def _span_counts(self) -> dict[str, int]:
        t = self.tracing
        if t is None:
            return {}
        return {"dropped": t.dropped, "exported": t.exported, "failed_exports": t.failed_exports}

    @property
    def stats(self) -> dict[str, int]:
        """Span counters: ``dropped``, ``exported``, ``failed_exports`` (empty: tracing off)."""
        return self._span_counts()

    def watch(self, component: str, stats: Callable[[], Any], **labels: str) -> None:
        """Export a component's counters (see :meth:`Metrics.watch`); no-op when metrics off."""
        if self.metrics is not None:
            self.metrics.watch(component, stats, **labels)

    def metrics_text(self) -> bytes:
        """The Prometheus text of this Telemetry's registry (empty when metrics are off)."""
        return self.metrics.text() if self.metrics is not None else b""

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export the queued spans now; True when done (or tracing off)."""
        return self.tracing.force_flush(timeout_s) if self.tracing is not None else True

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Flush and stop the span export thread, waiting at most ``timeout_s`` (default: the
        export timeout) for the queued spans; idempotent."""
        if self.tracing is not None:
            self.tracing.shutdown(timeout_s)

    def wrap(self, app: ASGIApp, *, ready: Callable[[], Any] | None = None) -> ASGIApp:
        """``app`` with telemetry and the health endpoints; ``ready`` (sync or async, no
        arguments) decides ``/readyz`` (None: always ready)."""
        return _Wrapped(self, app, ready)

    # -- the endpoints -----------------------------------------------------------------------

    def _may_scrape(self, scope: Scope) -> bool:
        auth = _header(scope, b"authorization")
        if self._token_digest is not None and auth is not None:
            scheme, _, value = auth.partition(b" ")
            if scheme.lower() == b"bearer" and value:
                return hmac.compare_digest(
                    hashlib.sha256(value.strip()).digest(), self._token_digest
                )
        if _header(scope, b"forwarded") or _header(scope, b"x-forwarded-for"):
            return False  # loopback only because a proxy on this machine relayed it
        return _loopback(scope)


class _Wrapped:
    def __init__(self, telemetry: Telemetry, app: ASGIApp, ready: Callable[[], Any] | None):
        self.telemetry = telemetry
        self.app = app
        self.ready = ready
        self._otel: Any = None
        if telemetry.tracing is not None:  # resolved once, not per request
            from opentelemetry import context, trace

            self._otel = (context, trace, trace.Status(trace.StatusCode.ERROR))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan, websocket: untouched
            return
        path = scope.get("path", "")
        if path in _HEALTH:
            await self._endpoint(path, scope, send)
            return
        await self._request(scope, receive, send)

    async def _endpoint(self, path: str, scope: Scope, send: Send) -> None:
        head = scope.get("method") == "HEAD"
        if scope.get("method") not in ("GET", "HEAD"):
            await _reply(send, 405, b"405 Method Not Allowed\n", head, [(b"allow", b"GET, HEAD")])
        elif path == "/healthz":
            await _reply(send, 200, b"ok\n", head)
        elif path == "/readyz":
            ok = await self._ready()
            await _reply(send, 200 if ok else 503, b"ready\n" if ok else b"not ready\n", head)
        elif self.telemetry.metrics is None or not self.telemetry._may_scrape(scope):
            await _reply(send, 404, _NOT_FOUND, head)
        else:
            from ._metrics import CONTENT_TYPE

            body = await asyncio.to_thread(self.telemetry.metrics_text)
            await _reply(send, 200, body, head, content_type=CONTENT_TYPE.encode())

    async def _ready(self) -> bool:
        if self.ready is None:
            return True
        try:
            if inspect.iscoroutinefunction(self.ready):
                result = await asyncio.wait_for(self.ready(), _READY_TIMEOUT_S)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(self.ready), _READY_TIMEOUT_S)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, _READY_TIMEOUT_S)
            return bool(result)
        except Exception:
            log.warning("readiness check failed", exc_info=True)
            return False

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        t = self.telemetry
        start_wall = time.time()
        start = time.perf_counter()
        method = str(scope.get("method", "GET"))
        wanted = {}
        for key, value in scope.get("headers") or ():
            name = bytes(key).lower()
            if name in _WANTED:
                wanted[name] = bytes(value)
        given = wanted.get(b"x-request-id")
        request_id = (
            given.decode("ascii")
            if given is not None and _REQUEST_ID.fullmatch(given.decode("latin-1"))
            else _next_request_id()
        )
        state: dict[str, Any] = {"status": 0, "sent": 0, "finished": False, "complete": False}
        record, record_token = begin_request()
        if t.metrics is not None:
            t.metrics.in_flight.inc()

        server_span = None
        context_token = None
        tracer_token = None
        if t.tracing is not None:
            try:
                server_span, context_token = self._start_span(scope, method, wanted)
                if context_token is not None:
                    tracer_token = set_tracer(t.tracing.tracer)
            except Exception:
                log.warning("telemetry: could not start the request span", exc_info=True)

        def finish(failed: bool) -> None:
            if state["finished"]:
                return
            state["finished"] = True
            if t.metrics is not None:
                t.metrics.in_flight.dec()
            try:
                self._finish(
                    scope, method, record, state, failed, start_wall, start, request_id, server_span
                )
            except Exception:
                log.warning("telemetry: could not record the request", exc_info=True)

        async def tracked(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                state["status"] = int(message.get("status", 0))
                headers = list(message.get("headers") or ())
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            elif kind == "http.response.body":
                state["sent"] += len(message.get("body", b""))
                if not message.get("more_body"):
                    state["complete"] = True
                    finish(False)  # recorded before the client has the whole answer
            await send(message)

        if t._access is not None:
            scope = {**scope, ACCESS_LOGGED_KEY: True}
        failed = False
        try:
            await self.app(scope, receive, tracked)
        except BaseException:
            failed = True
            raise
        finally:
            finish(failed)
            if tracer_token is not None:
                reset_tracer(tracer_token)
            if context_token is not None:
                with contextlib.suppress(Exception):
                    self._otel[0].detach(context_token)
            end_request(record_token)

    def _start_span(self, scope: Scope, method: str, wanted: dict[bytes, bytes]) -> tuple[Any, Any]:
        context, trace, _ = self._otel
        t = self.telemetry
        assert t.tracing is not None
        carrier = {
            name.decode(): wanted[name].decode("latin-1")
            for name in (b"traceparent", b"tracestate")
            if name in wanted
        }
        parent = t._propagator.extract(carrier) if carrier else None
        attributes: dict[str, Any] = {
            "http.request.method": method if method in _METHODS else "_OTHER",
            "url.path": scope.get("path", ""),
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        server = scope.get("server")
        if server:
            attributes["server.address"] = str(server[0])
            if server[1] is not None:
                attributes["server.port"] = int(server[1])
        span = t.tracing.tracer.start_span(
            method, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
        if not span.is_recording():  # sampled out: no context, children cost nothing
            return span, None
        return span, context.attach(trace.set_span_in_context(span))

    def _finish(
        self,
        scope: Scope,
        method: str,
        record: dict[str, Any],
        state: dict[str, Any],
        failed: bool,
        start_wall: float,
        start: float,
        request_id: str,
        server_span: Any,
    ) -> None:
        t = self.telemetry
        duration = time.perf_counter() - start
        status = int(state["status"]) or (500 if failed else 0)
        tenant = str(record.get("tenant") or scope.get(TENANT_KEY) or "-")
        subject = record.get("subject")
        if subject is None:
            principal = scope.get(PRINCIPAL_KEY)
            subject = getattr(principal, "subject", None)
        path = str(scope.get("path", ""))
        route = str(record.get("route") or route_template(method, path))
        outcome = _outcome(status, failed)
        if outcome != "error" and not state["complete"]:
            outcome = "aborted"  # the answer was cut short (client gone, app stopped early)
        label_method = method if method in _METHODS else "OTHER"
        trace_id = None
        span_context = None
        if server_span is not None:
            span_context = server_span.get_span_context()
            if span_context.trace_flags.sampled:
                trace_id = f"{span_context.trace_id:032x}"
            if not server_span.is_recording():
                server_span.end()
                span_context = None  # sampled out: nothing more to set
        if server_span is not None and span_context is not None:
            server_span.update_name(f"{method if method in _METHODS else 'HTTP'} {route}")
            server_span.set_attributes(
                {
                    "http.route": route,
                    "http.response.status_code": status,
                    "http.response.body.size": int(state["sent"]),
                    "registry_core.tenant": tenant,
                    "registry_core.outcome": outcome,
                    "registry_core.request_id": request_id,
                }
            )
            if status >= 500 or failed:
                server_span.set_status(self._otel[2])
            server_span.end()
        if t.metrics is not None:
            t.metrics.observe(tenant, route, label_method, status, duration, int(state["sent"]))
        if t._access is not None:
            t._access.write(
                access_line(
                    start_s=start_wall,
                    request_id=request_id,
                    tenant=tenant,
                    method=label_method,
                    route=route,
                    path=path,
                    status=status,
                    sent=int(state["sent"]),
                    duration_s=duration,
                    subject=subject if isinstance(subject, str) else None,
                    trace_id=trace_id,
                    client=_peer(scope),
                )
            )


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    head: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
