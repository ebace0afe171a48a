"""OpenTelemetry tracing: a TracerProvider whose spans leave through a bounded queue.

Ended spans go into the BatchSpanProcessor's bounded in-memory queue (an append; nothing else
happens on the request's path) and a background thread exports them in batches over OTLP/HTTP,
each export bounded by ``export_timeout_s``. A collector that is down or slow therefore never
blocks or slows a request: the queue fills and further spans are dropped and counted
(:attr:`Tracing.dropped`), as are the spans of batches the exporter failed to deliver.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

__all__ = ["Tracing", "otlp_traces_url"]

_EXTRA = "pip install 'registry-core[otel]'"


def _require_otel() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(f"tracing needs OpenTelemetry: {_EXTRA}") from exc


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for ``endpoint``: a base URL gets ``/v1/traces`` appended."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(f"otlp_endpoint must be an http(s):// URL, not {endpoint!r}")
    if "@" in parts.netloc:
        raise InvalidArgumentError("credentials in otlp_endpoint are not supported (use headers)")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


class Tracing:
    """A TracerProvider with a bounded export queue and counters of what was lost.

    ``endpoint``: an OTLP/HTTP collector (``http://127.0.0.1:4318`` or the full
    ``.../v1/traces`` URL); or ``exporter``: any SpanExporter (tests, benchmarks).
    ``sample_ratio``: the share of new traces recorded (a sampled caller's ``traceparent`` is
    followed). ``max_queue_size`` spans wait for export at most; ``export_timeout_s`` bounds one
    export (retries included).
    """

    def __init__(
        self,
        *,
        service_name: str = "registry-core",
        endpoint: str | None = None,
        exporter: SpanExporter | None = None,
        sample_ratio: float = 1.0,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_ms: float = 500.0,
        export_timeout_s: float = 5.0,
    ) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise InvalidArgumentError(f"sample_ratio must be in [0, 1], got {sample_ratio}")
        if max_queue_size < 1 or export_timeout_s <= 0:
            raise InvalidArgumentError("max_queue_size and export_timeout_s must be positive")
        if (endpoint is None) == (exporter is None):
            raise InvalidArgumentError("give exactly one of endpoint= and exporter=")
        _require_otel()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            assert endpoint is not None
            exporter = OTLPSpanExporter(
                endpoint=otlp_traces_url(endpoint), timeout=export_timeout_s
            )
        self._lock = threading.Lock()
        self._dropped = 0
        self._exported = 0
        self._failed_exports = 0
        counting = _counting_exporter(exporter, self)
        max_export_batch_size = min(max_export_batch_size, max_queue_size)
        processor = _counting_processor(BatchSpanProcessor)(
            counting,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_ms,
            max_export_batch_size=max_export_batch_size,
            export_timeout_millis=export_timeout_s * 1000,
        )
        processor._rc_tracing = self
        processor._rc_capacity = max_queue_size
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        self.provider.add_span_processor(processor)
        self._exporter = counting
        self._export_timeout_s = export_timeout_s
        self.tracer: Tracer = self.provider.get_tracer("registry_core")

    def _add(self, *, dropped: int = 0, exported: int = 0, failed: int = 0) -> None:
        with self._lock:
            self._dropped += dropped
            self._exported += exported
            self._failed_exports += failed

    @property
    def dropped(self) -> int:
        """Spans lost: the queue was full, or their batch's export failed."""
        return self._dropped

    @property
    def exported(self) -> int:
        """Spans the exporter delivered."""
        return self._exported

    @property
    def failed_exports(self) -> int:
        """Export calls that failed (collector down, refused, timed out)."""
        return self._failed_exports

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export what is queued now; False when that did not finish in ``timeout_s`` (the
        export goes on in the background: the SDK's own flush ignores its timeout)."""
        done = threading.Event()

        def flush() -> None:
            self.provider.force_flush()
            done.set()

        threading.Thread(target=flush, name="rc-span-flush", daemon=True).start()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Export what is queued and stop the export thread. Waits ``timeout_s`` (default: the
        export timeout) for the queue to drain, then aborts the exporter's retries; an export
        request in flight still ends within its own timeout."""
        wait = self._export_timeout_s if timeout_s is None else timeout_s
        if not self.force_flush(wait):
            self._exporter.shutdown()  # aborts the retries; the final export fails at once
        self.provider.shutdown()


def _counting_exporter(inner: SpanExporter, tracing: Tracing) -> SpanExporter:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class _Counting(SpanExporter):
        """Counts what the wrapped exporter delivered and what it lost."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            try:
                result = inner.export(spans)
            except Exception:  # an exporter must not kill the export thread
                result = SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                tracing._add(exported=len(spans))
            else:
                tracing._add(dropped=len(spans), failed=1)
            return result

        _closed = False

        def shutdown(self) -> None:
            if not self._closed:
                self._closed = True
                inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return _Counting()


def _counting_processor(base: type[Any]) -> type[Any]:
    class _CountingBatchSpanProcessor(base):
        """BatchSpanProcessor that counts the spans a full queue turns away."""

        _rc_tracing: Tracing
        _rc_capacity: int

        def on_end(self, span: ReadableSpan) -> None:
            if span.context is not None and span.context.trace_flags.sampled:
                queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
                if queue is not None and len(queue) >= self._rc_capacity:
                    self._rc_tracing._add(dropped=1)  # the SDK drops one span to make room
            super().on_end(span)

    return _CountingBatchSpanProcessor
