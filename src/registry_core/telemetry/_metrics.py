"""Prometheus metrics in a registry of their own (never prometheus-client's global one).

Each :class:`Metrics` holds a private ``CollectorRegistry``, so two apps in one process (tests,
several servers) never share or clash over series. Label values are bounded: ``route`` is a
template (``/simple/{project}/``), ``method`` one of the known methods or ``OTHER``, ``tenant``
a configured tenant's name or ``-``. Component counters (the ``stats`` an app keeps anyway) are
read at scrape time by :meth:`Metrics.watch`, so they cost nothing per request.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "metrics need prometheus-client: pip install 'registry-core[otel]'"
        ) from exc


def _numbers(stats: Any) -> Iterator[tuple[str, str | None, float]]:
    """(field, key, value) of every number in a stats mapping or dataclass; a Counter or
    mapping field gives one value per key."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        items: Mapping[str, Any] = {
            f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)
        }
    elif isinstance(stats, Mapping):
        items = stats
    else:
        return
    for name, value in items.items():
        if isinstance(value, bool) or not isinstance(name, str):
            continue
        if isinstance(value, int | float):
            yield name, None, float(value)
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                if isinstance(inner, int | float) and not isinstance(inner, bool):
                    yield name, str(key), float(inner)


class Metrics:
    """The request metrics, span counters and watched component counters of one Telemetry."""

    def __init__(self, *, span_counts: Callable[[], Mapping[str, int]] | None = None) -> None:
        _require_prometheus()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "registry_core_http_requests",
            "HTTP requests answered, by tenant, route template, method and status.",
            ["tenant", "route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "registry_core_http_request_duration_seconds",
            "Time from the request's arrival to its last response byte handed to the server.",
            ["tenant", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.response_bytes = Counter(
            "registry_core_http_response_bytes",
            "Response body bytes sent, by tenant and route template.",
            ["tenant", "route"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "registry_core_http_requests_in_flight",
            "HTTP requests being answered now.",
            registry=self.registry,
        )
        self._watched: list[tuple[str, Callable[[], Any], dict[str, str]]] = []
        self._lock = threading.Lock()
        self.registry.register(_Collector(self, span_counts))

    def observe(
        self, tenant: str, route: str, method: str, status: int, seconds: float, sent: int
    ) -> None:
        """Record one answered request."""
        self.requests.labels(tenant, route, method, str(status)).inc()
        self.duration.labels(tenant, route).observe(seconds)
        if sent:
            self.response_bytes.labels(tenant, route).inc(sent)

    def watch(self, component: str, stats: Callable[[], Any], **labels: str) -> None:
        """Export the numbers ``stats()`` returns (a mapping or dataclass) at every scrape as
        ``registry_core_<component>_<field>_total`` counters with ``labels`` (e.g. tenant,
        index); a mapping field (a Counter) becomes a ``key`` label."""
        if not _NAME.fullmatch(component):
            raise ValueError(f"component must match {_NAME.pattern}, got {component!r}")
        with self._lock:
            self._watched.append((component, stats, {k: str(v) for k, v in labels.items()}))

    def watched(self) -> list[tuple[str, Callable[[], Any], dict[str, str]]]:
        with self._lock:
            return list(self._watched)

    def text(self) -> bytes:
        """The Prometheus text exposition of everything above."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Collector:
    """Span counters and watched component stats, read when scraped."""

    def __init__(self, metrics: Metrics, span_counts: Callable[[], Mapping[str, int]] | None):
        self._metrics = metrics
        self._span_counts = span_counts

    def describe(self) -> list[Any]:
        return []  # families appear as components are watched

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        if self._span_counts is not None:
            counts = self._span_counts()
            for name, help_text in (
                ("dropped", "Spans lost: the export queue was full or their export failed."),
                ("exported", "Spans delivered to the collector."),
                ("failed_exports", "Span export calls that failed."),
            ):
                family = CounterMetricFamily(f"registry_core_spans_{name}", help_text)
                family.add_metric([], counts.get(name, 0))
                yield family
        families: dict[tuple[str, tuple[str, ...]], Any] = {}  # (name, label names) -> family
        for component, stats, labels in self._metrics.watched():
            try:
                values = list(_numbers(stats()))
            except Exception:  # a failing component must not break the scrape
                continue
            for field, key, value in values:
                if not _NAME.fullmatch(field):
                    continue
                names = tuple(sorted(labels)) + (("key",) if key is not None else ())
                metric = f"registry_core_{component}_{field}"
                found = families.get((metric, names))
                if found is None:
                    found = CounterMetricFamily(
                        metric, f"{component} counter {field!r}", labels=list(names)
                    )
                    families[(metric, names)] = found
                row = [labels[n] for n in sorted(labels)] + ([key] if key is not None else [])
                found.add_metric(row, value)
        yield from families.values()
