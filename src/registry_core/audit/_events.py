"""Audit events and the sinks that record them.

An :class:`AuditEvent` says who did (or was refused) what, on which resource, in which tenant.
Producers (authorization, tokens, sign-in, uploads, rate limits) call ``sink.emit(event)``; a
sink never raises, so recording can never break the operation it records. Events carry no
secrets: callers never put a token, session id or password in ``detail``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["AuditEvent", "AuditSink", "FanOutSink", "JsonlSink", "LogSink", "MemorySink"]

OUTCOMES = ("ok", "denied", "failed")
_MAX_FIELD = 1024  # a value longer than this is cut: an event is bounded whatever the caller
_MAX_DETAIL = 32

_log = logging.getLogger("registry_core.audit")
_internal = logging.getLogger("registry_core.audit.sink")


def _cut(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 3] + "..."


@dataclass(frozen=True)
class AuditEvent:
    """One audited happening. ``time_ns`` 0 means "now" (filled in at construction)."""

    kind: str
    tenant: str
    subject: str
    outcome: str
    action: str = ""
    resource: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)
    time_ns: int = 0

    def __post_init__(self) -> None:
        if self.time_ns == 0:
            object.__setattr__(self, "time_ns", time.time_ns())
        items = list(self.detail.items())[:_MAX_DETAIL]
        object.__setattr__(self, "detail", {_cut(k): _cut(v) for k, v in items})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (strings and one integer; every field bounded)."""
        return {
            "time_ns": self.time_ns,
            "kind": _cut(self.kind),
            "tenant": _cut(self.tenant),
            "subject": _cut(self.subject),
            "outcome": _cut(self.outcome),
            "action": _cut(self.action),
            "resource": _cut(self.resource),
            "detail": dict(self.detail),
        }


@runtime_checkable
class AuditSink(Protocol):
    """Where audit events go. ``emit`` must not raise."""

    def emit(self, event: AuditEvent) -> None: ...


def _line(event: AuditEvent) -> str:
    return json.dumps(event.to_json(), sort_keys=True, separators=(",", ":"))


class LogSink:
    """Each event as one JSON line at INFO on the ``registry_core.audit`` logger (the default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or _log

    def emit(self, event: AuditEvent) -> None:
        with contextlib.suppress(Exception):  # a sink never breaks what it records
            self.logger.info("%s", _line(event))


class MemorySink:
    """Keeps the last ``max_events`` events in ``events`` (tests, the demo)."""

    def __init__(self, max_events: int = 10_000) -> None:
        self.max_events = max_events
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)
            if len(self.events) > self.max_events:
                del self.events[: len(self.events) - self.max_events]

    def kinds(self) -> list[str]:
        """The kinds of the events held, oldest first."""
        with self._lock:
            return [e.kind for e in self.events]


class JsonlSink:
    """Appends one JSON line per event to ``path`` (``O_APPEND``: several processes may share
    the file; each line is one ``write``). Created mode 0600. A write failure is logged once
    per failure streak and the event dropped: auditing never fails the audited operation."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        self._failing = False

    def emit(self, event: AuditEvent) -> None:
        try:
            data = (_line(event) + "\n").encode("utf-8")
            with self._lock:
                if self._fd is None:
                    return
                os.write(self._fd, data)
                self._failing = False
        except Exception as e:
            if not self._failing:
                self._failing = True
                _internal.warning("audit log %s: write failed (%s); events dropped", self.path, e)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonlSink({self.path!r})"


class FanOutSink:
    """Sends each event to every sink given (one failing sink does not stop the others)."""

    def __init__(self, *sinks: AuditSink) -> None:
        self.sinks = tuple(sinks)

    def emit(self, event: AuditEvent) -> None:
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.emit(event)
