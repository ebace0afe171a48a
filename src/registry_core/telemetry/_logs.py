"""Structured access logs: one JSON object per request, on one line.

Fields: ``time`` (UTC, RFC 3339, the request's arrival), ``request_id``, ``tenant``,
``method``, ``route`` (the template), ``path`` (without the query string: it may carry a
sign-in code), ``status``, ``bytes`` (response body), ``duration_ms``, ``subject`` (the
principal, ``-`` when anonymous or unknown), ``client`` (the peer address of the connection,
from the ASGI scope, when the server gives one), ``trace_id`` when traced. Never a header, a
cookie, a token or a query string.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ACCESS_LOGGER", "AccessLog", "access_line"]

ACCESS_LOGGER = "registry_core.telemetry.access"


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps(separators=) builds one per call
_second: tuple[int, str] = (-1, "")


def _rfc3339(epoch_s: float) -> str:
    global _second
    whole = int(epoch_s)
    cached = _second
    if cached[0] != whole:
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _second = cached
    return f"{cached[1]}.{min(int((epoch_s - whole) * 1000), 999):03d}Z"


def access_line(
    *,
    start_s: float,
    request_id: str,
    tenant: str,
    method: str,
    route: str,
    path: str,
    status: int,
    sent: int,
    duration_s: float,
    subject: str | None,
    trace_id: str | None = None,
    client: str | None = None,
) -> str:
    """The JSON line of one request (keys in a fixed order; non-ASCII escaped)."""
    record: dict[str, Any] = {
        "time": _rfc3339(start_s),
        "request_id": request_id,
        "tenant": tenant,
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "bytes": sent,
        "duration_ms": round(duration_s * 1000, 3),
        "subject": subject or "-",
    }
    if client:
        record["client"] = client
    if trace_id:
        record["trace_id"] = trace_id
    return _ENCODER.encode(record)


class AccessLog:
    """Where access lines go: a callable given (tests, a file), else the
    ``registry_core.telemetry.access`` logger at INFO (the server configures its handler)."""

    def __init__(self, sink: Callable[[str], None] | None = None) -> None:
        self._sink = sink
        self._logger = logging.getLogger(ACCESS_LOGGER)

    def write(self, line: str) -> None:
        if self._sink is not None:
            self._sink(line)
        elif self._logger.isEnabledFor(logging.INFO):
            self._logger.info(line)
