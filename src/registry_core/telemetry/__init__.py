"""Observability: request spans (OpenTelemetry), Prometheus metrics, JSON access logs, health.

``span(name, **attributes)`` and ``annotate(tenant=..., subject=..., route=...)`` are the cheap
seams other components call (no OpenTelemetry import; no-ops outside a traced request).
:class:`Telemetry` (loaded on first use; ``pip install 'registry-core[otel]'`` for tracing and
metrics) wraps an ASGI app with them and answers ``/healthz``, ``/readyz`` and ``/metrics``.
Metric names, span names and attributes: docs/observability.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._context import annotate, span

if TYPE_CHECKING:  # pragma: no cover
    from ._wrap import Telemetry, route_template

__all__ = ["Telemetry", "annotate", "route_template", "span"]


def __getattr__(name: str) -> Any:
    if name in ("Telemetry", "route_template"):
        from . import _wrap

        return getattr(_wrap, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
