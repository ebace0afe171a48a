"""``registry-core security report DIR [--json]``: the registry's security figures.

DIR is a registry directory (its TUF metadata in ``.registry-core/tuf/``) or a TUF metadata
directory. Prints PQC key coverage (per role), the quantum threat score and the compliance
score with its versioned checklist; definitions in docs/security.md ("Signed registry").
``--fail-under SCORE`` exits 1 when the compliance score is below it (for CI).
"""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_report(args: argparse.Namespace) -> int:
    from ..signing._report import report_json, security_report

    config: dict[str, Any] = {"flags": getattr(args, "flags", None)}
    report = security_report(args.directory, config=config)
    print(report_json(report) if args.json else report.render(), flush=True)
    if args.fail_under is not None and 100 * report.compliance_score < args.fail_under:
        return 1
    return 0


def add_security_parser(sub: Any) -> None:
    """Add ``security report`` to an ``argparse`` subparsers object."""
    security = sub.add_parser("security", help="the signed registry's security figures")
    verbs = security.add_subparsers(dest="security_command", required=True, metavar="{report}")
    p = verbs.add_parser(
        "report",
        help="PQC key coverage, quantum threat score, compliance score",
        description="Compute the security figures of the registry in DIR from its TUF metadata, "
        "keyring, storage and this code's TLS defaults (definitions: docs/security.md).",
    )
    p.add_argument("directory", help="the registry directory, or a TUF metadata directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--fail-under",
        type=float,
        metavar="PERCENT",
        default=None,
        help="exit 1 when the compliance score is below PERCENT",
    )
    p.set_defaults(func=_cmd_report, command_name="security report")
