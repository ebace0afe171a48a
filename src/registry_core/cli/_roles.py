"""``registry-core role grant | revoke | list``: a tenant's role bindings.

``role grant DIR SUBJECT ROLE [RESOURCE]`` binds ``ROLE`` (reader, uploader, maintainer, owner,
auditor, admin) to ``SUBJECT`` (``user:alice``, ``group:devs``, ``token:<id>``,
``publisher:<name>``, ``*`` for everyone, ``authenticated``) on ``RESOURCE`` (``*`` the whole
tenant, the default; ``main`` an index; ``main/foo`` a project). ``--config FILE --tenant NAME``
instead of DIR acts on a tenant of a v2 config. Run with file access, the command is the local
operator and may grant anything; with ``--as-token-file FILE`` (or ``$REGISTRY_CORE_AS_TOKEN``)
it acts as that token's principal: the decision point must allow ``role.grant`` on the
resource and :func:`~registry_core.auth.grantable` the role (an owner grants up to owner, an
admin anything). Every grant and revocation is audited by the tenant store. Config bindings
are listed (source "config") but only the config file changes them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from ..errors import InvalidArgumentError, PermissionDeniedError
from ._index import (
    AS_TOKEN_ENV,
    Target,
    acting_principal,
    add_acting_argument,
    add_target_arguments,
    open_target,
    split_target,
)

__all__ = ["AS_TOKEN_ENV", "add_role_parser", "run_role"]


def _check_grant(target: Target, actor: Any, role: str, resource: Any) -> None:
    """The one decision point (role.grant on ``resource``), then grantable(role)."""
    from ..auth import grantable, require

    policy = target.store.policy()
    require(actor, "role.grant", resource, policy, audit=target.store_audit)
    if not grantable(policy.roles(actor, resource), role):
        from ..audit import AuditEvent

        event = AuditEvent(
            kind="authz.denied",
            tenant=target.tenant,
            subject=actor.subject,
            outcome="denied",
            action="role.grant",
            resource=str(resource),
            detail={"reason": f"may not grant {role}", "method": actor.method},
        )
        with contextlib.suppress(Exception):  # auditing never changes the decision
            target.store_audit.emit(event)
        raise PermissionDeniedError(f"{actor.subject} may not grant {role} on {resource}")


def _parse(args: argparse.Namespace, target_words: list[str]) -> dict[str, str | None]:
    return split_target(args, target_words, ("SUBJECT", "ROLE", "RESOURCE"), optional=1)


def _cmd_grant(args: argparse.Namespace) -> int:
    from ..auth import ROLES, check_subject

    words = _parse(args, args.words)
    subject = check_subject(words["SUBJECT"])
    role = str(words["ROLE"])
    if role not in ROLES:
        raise InvalidArgumentError(f"unknown role {role[:40]!r} (known: {', '.join(ROLES)})")
    with open_target(args) as target:
        resource = target.resource(words["RESOURCE"])
        actor = acting_principal(target, args)
        _check_grant(target, actor, role, resource)
        if args.role_command == "grant":
            target.store.grant(subject, role, resource, by=actor.subject)
            print(f"granted {role} on {resource} to {subject} ({target.where})")
            return 0
        if not target.store.revoke_role(subject, role, resource, by=actor.subject):
            if any(
                (b.subject, b.role, b.resource) == (subject, role, resource)
                for b in target.store.static_bindings
            ):
                raise InvalidArgumentError(
                    f"{subject} has {role} on {resource} from the config file: edit it there"
                )
            raise InvalidArgumentError(
                f"{subject} has no {role} binding on {resource} in {target.where}"
            )
        print(f"revoked {role} on {resource} from {subject} ({target.where})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    split_target(args, args.words, ())
    with open_target(args) as target:
        actor = acting_principal(target, args)
        if actor.method != "local":  # the view of those who grant roles, and of auditors
            from ..auth import authorize, require

            everything, policy = target.resource(None), target.store.policy()
            if not authorize(actor, "role.grant", everything, policy):
                require(actor, "audit.read", everything, policy, audit=target.store_audit)
        rows = [(b, "config") for b in target.store.static_bindings]
        rows += [(b, "stored") for b in target.store.bindings()]
    if args.subject is not None:
        rows = [(b, src) for b, src in rows if b.subject == args.subject]
    data = [
        {
            "subject": b.subject,
            "role": b.role,
            "resource": str(b.resource),
            "granted_by": b.granted_by,
            "source": source,
        }
        for b, source in sorted(rows, key=lambda r: (str(r[0].resource), r[0].subject, r[0].role))
    ]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    table = [("SUBJECT", "ROLE", "RESOURCE", "SOURCE", "GRANTED BY")]
    table += [(d["subject"], d["role"], d["resource"], d["source"], d["granted_by"]) for d in data]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for line in table:
        cells = "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
        print(f"{cells}  {line[4]}".rstrip())
    return 0


def run_role(args: argparse.Namespace) -> int:
    """Run ``role grant | revoke | list`` (``args`` from :func:`add_role_parser`)."""
    if args.role_command == "list":
        return _cmd_list(args)
    return _cmd_grant(args)


def add_role_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``role grant | revoke | list`` to an ``argparse`` subparsers object."""
    role = sub.add_parser("role", help="grant, revoke and list a tenant's roles")
    verbs = role.add_subparsers(dest="role_command", required=True, metavar="{grant,revoke,list}")

    def acting(p: argparse.ArgumentParser) -> None:
        add_target_arguments(p)
        add_acting_argument(p)

    for verb, text in (
        ("grant", "bind ROLE to SUBJECT on RESOURCE (default '*': the whole tenant)"),
        ("revoke", "remove a binding made with grant"),
    ):
        p = verbs.add_parser(
            verb,
            usage="%(prog)s (DIR | --config FILE --tenant NAME) SUBJECT ROLE [RESOURCE]",
            help=text,
            description=f"{text[0].upper()}{text[1:]}. SUBJECT: user:ID, group:NAME, token:ID, "
            "publisher:NAME, '*' or authenticated. ROLE: reader, uploader, maintainer, owner, "
            "auditor, admin. RESOURCE: '*', INDEX or INDEX/PROJECT.",
        )
        p.add_argument("words", nargs="+", metavar="[DIR] SUBJECT ROLE [RESOURCE]")
        acting(p)
        p.set_defaults(func=run_role, command_name=f"role {verb}")

    p = verbs.add_parser(
        "list",
        usage="%(prog)s (DIR | --config FILE --tenant NAME) [--subject S] [--json]",
        help="list bindings (stored and from the config)",
    )
    p.add_argument("words", nargs="*", metavar="DIR")
    acting(p)
    p.add_argument("--subject", help="only this subject's bindings")
    p.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    p.set_defaults(func=run_role, command_name="role list")
    return role
