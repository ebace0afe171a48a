"""Audit events: who did or was refused what, where (a leaf: imports nothing of registry_core).

:class:`AuditEvent` is the record; :class:`AuditSink` the interface producers emit to.
:class:`LogSink` (the default, JSON lines on the ``registry_core.audit`` logger),
:class:`JsonlSink` (an append-only file), :class:`MemorySink` (tests) and :class:`FanOutSink`
are the sinks shipped here.
"""

from __future__ import annotations

from ._events import AuditEvent, AuditSink, FanOutSink, JsonlSink, LogSink, MemorySink

__all__ = ["AuditEvent", "AuditSink", "FanOutSink", "JsonlSink", "LogSink", "MemorySink"]
