"""Audit events and the tamper-evident audit log.

:class:`AuditEvent` is the record; :class:`AuditSink` the interface producers emit to.
:class:`LogSink` (the default, JSON lines on the ``registry_core.audit`` logger),
:class:`JsonlSink` (an append-only file), :class:`MemorySink` (tests) and :class:`FanOutSink`
are the plain sinks. :class:`AuditLog` is the transparency-style one (docs/audit.md): an
RFC 9162 Merkle tree stored as C2SP tlog tiles with signed checkpoints (Ed25519 + ML-DSA-65),
checked end to end by :func:`verify_log`. The log, proofs and verifier load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._events import AuditEvent, AuditSink, FanOutSink, JsonlSink, LogSink, MemorySink

# name -> private module, loaded on first attribute access
_LAZY: dict[str, str] = {
    "AuditLog": "._log",
    "AuditLogError": "._log",
    "Checkpoint": "._note",
    "NoteError": "._note",
    "NoteVerifier": "._note",
    "parse_checkpoint": "._note",
    "parse_vkeys": "._note",
    "open_note": "._note",
    "verifiers_from_keyring": "._note",
    "leaf_hash": "._merkle",
    "verify_inclusion": "._merkle",
    "verify_consistency": "._merkle",
    "verify_log": "._verify",
    "VerifyReport": "._verify",
}

__all__ = [
    "AuditEvent",
    "AuditLog",
    "AuditLogError",
    "AuditSink",
    "Checkpoint",
    "FanOutSink",
    "JsonlSink",
    "LogSink",
    "MemorySink",
    "NoteError",
    "NoteVerifier",
    "VerifyReport",
    "leaf_hash",
    "open_note",
    "parse_checkpoint",
    "parse_vkeys",
    "verifiers_from_keyring",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
