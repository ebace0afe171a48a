"""Observability: request spans (OpenTelemetry), Prometheus metrics, JSON access logs, health.

``span(name, **attributes)`` is the cheap seam other components use; :class:`Telemetry` (loaded
lazily, needs ``pip install 'registry-core[otel]'``) wraps an ASGI app.
"""

from __future__ import annotations

from ._context import span

__all__ = ["span"]
