"""Upload checks: the seam where an index asks "is this upload suspicious?" before publishing.

A check looks at one staged upload (:class:`UploadCandidate`: its names, digest, core metadata and
the staged bytes, read-only) and returns :class:`Finding` objects; it never changes the upload.
:class:`UploadChecks` runs a list of checks and applies the deployment's action: ``"warn"`` (the
default) turns each finding into an ``upload.suspicious`` audit event and lets the upload proceed;
``"refuse"`` does the same and then raises :class:`~registry_core.errors.UploadRejectedError` for
the first finding at or above ``refuse_severity``, before anything is stored.

The index only knows this protocol; the checks themselves (typosquatting, suspicious content) live
in :mod:`registry_core.ml`, which the index never imports. A check that raises is a bug, not a
verdict: it is logged and reported as a ``check-error`` finding of severity ``low``, so a broken
check neither blocks every upload nor passes silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from ..audit import AuditEvent, AuditSink
from ..errors import InvalidArgumentError, UploadRejectedError

__all__ = [
    "ACTIONS",
    "SEVERITIES",
    "Finding",
    "UploadCandidate",
    "UploadCheck",
    "UploadChecks",
]

log = logging.getLogger(__name__)

ACTIONS = ("warn", "refuse")
#: Severities, weakest first.
SEVERITIES = ("low", "medium", "high")
_MAX_FINDINGS = 32  # per upload: a hostile archive cannot flood the audit log


@dataclass(frozen=True)
class UploadCandidate:
    """One upload, validated and staged but not yet stored. ``file`` is the staged bytes
    (seekable, read-only use: a check seeks to where it needs and reads a bounded amount);
    ``new_project``: the upload creates the project."""

    project: str
    filename: str
    version: str
    kind: str
    size: int
    sha256: str
    metadata: bytes
    file: BinaryIO
    new_project: bool = False
    uploader: str = ""
    tenant: str = "default"


@dataclass(frozen=True)
class Finding:
    """What a check found: which ``check``, how bad (``severity`` in :data:`SEVERITIES`), a
    human ``message`` and string ``detail`` (which popular project, which file in the archive...).
    """

    check: str
    severity: str
    message: str
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidArgumentError(
                f"finding severity must be one of {SEVERITIES}, not {self.severity!r}"
            )
        object.__setattr__(self, "detail", {str(k): str(v) for k, v in self.detail.items()})


@runtime_checkable
class UploadCheck(Protocol):
    """A check run on every upload. ``name`` identifies it in findings and audit events."""

    name: str

    def check(self, upload: UploadCandidate) -> Sequence[Finding]: ...


class UploadChecks:
    """Runs ``checks`` on each upload and applies ``action`` (``"warn"`` or ``"refuse"``).

    With ``"refuse"``, a finding at or above ``refuse_severity`` rejects the upload (400) after
    every finding has been audited; weaker findings only warn.
    """

    def __init__(
        self,
        checks: Sequence[UploadCheck],
        *,
        action: str = "warn",
        refuse_severity: str = "high",
    ) -> None:
        if action not in ACTIONS:
            raise InvalidArgumentError(
                f"upload check action must be one of {ACTIONS}, not {action!r}"
            )
        if refuse_severity not in SEVERITIES:
            raise InvalidArgumentError(
                f"refuse_severity must be one of {SEVERITIES}, not {refuse_severity!r}"
            )
        for c in checks:
            if not isinstance(c, UploadCheck):
                raise InvalidArgumentError(f"{c!r} is not an UploadCheck (name and check())")
        self.checks = tuple(checks)
        self.action = action
        self.refuse_severity = refuse_severity

    def run(self, upload: UploadCandidate) -> list[Finding]:
        """Every check's findings (at most 32 in all); a check that raises gives a
        ``check-error`` finding instead."""
        findings: list[Finding] = []
        for c in self.checks:
            try:
                upload.file.seek(0)
                found = list(c.check(upload))
            except Exception as exc:
                log.exception(
                    "upload check %s failed on %s", getattr(c, "name", c), upload.filename
                )
                found = [
                    Finding(
                        "check-error",
                        "low",
                        f"check {getattr(c, 'name', '?')} failed: {type(exc).__name__}",
                        {"failed_check": str(getattr(c, "name", "?"))},
                    )
                ]
            findings.extend(found)
            if len(findings) >= _MAX_FINDINGS:
                del findings[_MAX_FINDINGS:]
                break
        upload.file.seek(0)
        return findings

    def enforce(
        self, upload: UploadCandidate, audit: AuditSink, *, subject: str = "local"
    ) -> list[Finding]:
        """Run the checks, audit every finding as ``upload.suspicious``, and raise
        UploadRejectedError when the action is ``"refuse"`` and a finding is severe enough."""
        findings = self.run(upload)
        bar = SEVERITIES.index(self.refuse_severity)
        blocking = [
            f for f in findings if self.action == "refuse" and SEVERITIES.index(f.severity) >= bar
        ]
        for f in findings:
            audit.emit(
                AuditEvent(
                    kind="upload.suspicious",
                    tenant=upload.tenant,
                    subject=subject,
                    outcome="denied" if f in blocking else "ok",
                    action="upload",
                    resource=f"{upload.tenant}/{upload.project}",
                    detail={
                        "check": f.check,
                        "severity": f.severity,
                        "message": f.message,
                        "filename": upload.filename,
                        "sha256": upload.sha256,
                        **dict(f.detail),
                    },
                )
            )
        if blocking:
            first = blocking[0]
            raise UploadRejectedError(
                f"{upload.filename}: refused by the upload check {first.check} "
                f"({first.severity}): {first.message}"
            )
        return findings
