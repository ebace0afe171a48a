"""``registry-core token create | list | revoke``: a tenant's API tokens.

Each command acts on an index directory ``DIR`` (tenant "default", index "main") or, with
``--config FILE --tenant NAME``, on one tenant of a v2 config (see ``_index.open_target``).
``create`` prints the raw token once, alone on stdout (so ``TOKEN=$(registry-core token create
DIR)`` works); only a hash of its secret is stored. A token holds least-privilege scopes
(``--scope ACTIONS:RESOURCE``, repeatable; ``--project P`` is ``read,upload,create:INDEX/P``;
neither: ``read,upload,create:INDEX``), may act for an ``--owner`` (its roles, narrowed by the
scopes; without one the scopes are the whole grant) and may expire (``--expires 30d``).
``list`` shows owner, scopes and times, never a secret or its hash.

Run with file access, the command is the local operator (the tenant's admin). With
``--as-token-file FILE`` (or ``$REGISTRY_CORE_AS_TOKEN``) it acts as that token's principal,
through the one decision point: ``create`` needs ``token.create`` on every scope's resource
and makes a token of the caller's own (owner: its subject, never longer-lived than the acting
token), so a new token never holds more than its owner's roles; ``revoke`` of one's own token
needs nothing more, of anyone else's ``token.revoke`` on every resource it covers (docs/rbac.md);
``list`` shows one's own tokens, all of them with ``audit.read`` on the tenant.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from ..errors import InvalidArgumentError, PermissionDeniedError
from ._index import (
    Target,
    acting_principal,
    add_acting_argument,
    add_target_arguments,
    open_target,
    split_target,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]{1,9})\s*([smhdw])")
MAX_TTL_S = 10 * 366 * 86400  # ten years: beyond that, say never


def parse_duration(text: str) -> float | None:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` in seconds; ``"never"`` is None."""
    value = text.strip().lower()
    if value == "never":
        return None
    m = _DURATION.fullmatch(value)
    if m is None or int(m.group(1)) == 0:
        raise InvalidArgumentError(
            f"--expires {text[:40]!r}: expected N followed by s, m, h, d or w (e.g. 30d), or never"
        )
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > MAX_TTL_S:
        raise InvalidArgumentError(f"--expires {text[:40]!r}: over ten years; use never")
    return float(seconds)


def format_duration(seconds: float | None) -> str:
    """The inverse of :func:`parse_duration` for whole units (largest unit that divides)."""
    if seconds is None:
        return "never"
    n = int(seconds)
    for unit in ("w", "d", "h", "m"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{n}s"


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _scopes(target: Target, args: argparse.Namespace) -> list[Any]:
    from ..auth import Scope

    index = args.index or target.default_index
    target.resource(index)  # an index of this tenant
    texts = list(args.scope or ())
    if args.project is not None:
        texts.append(f"read,upload,create:{index}/{args.project}")
    if not texts:
        texts.append(f"read,upload,create:{index}")
    scopes = []
    for text in texts:
        scope = Scope.parse(target.tenant, text)
        target.resource(str(scope.resource))  # refuses an index the tenant does not have
        if scope not in scopes:
            scopes.append(scope)
    return scopes


def _cmd_create(args: argparse.Namespace) -> int:
    from ..auth import check_subject

    split_target(args, args.words, ())
    ttl = parse_duration(args.expires) if args.expires is not None else None
    owner = check_subject(args.owner) if args.owner is not None else None
    if owner is not None and (owner in ("*", "authenticated") or owner.startswith("group:")):
        raise InvalidArgumentError(
            f"--owner {owner!r}: a token acts for one subject (user:..., publisher:...)"
        )
    with open_target(args) as target:
        if target.max_ttl_s is not None:
            if args.expires is None:
                ttl = target.max_ttl_s  # the tenant's bound is the default
            elif ttl is None or ttl > target.max_ttl_s:
                raise InvalidArgumentError(
                    f"{target.where}: tokens live at most {format_duration(target.max_ttl_s)} "
                    f"(token_max_ttl_s); --expires {args.expires} is longer"
                )
        scopes = _scopes(target, args)
        now = time.time_ns()
        expires_ns = now + int(ttl * 1e9) if ttl is not None else None
        actor = acting_principal(target, args)
        if actor.method != "local":
            owner, expires_ns = _check_create(target, actor, owner, scopes, expires_ns, args)
        raw, _record = target.store.create_token(
            owner=owner,
            scopes=scopes,
            description=args.description,
            expires_ns=expires_ns,
            now_ns=now,
        )
    print(raw, flush=True)
    return 0


def _check_create(
    target: Target,
    actor: Any,
    owner: str | None,
    scopes: list[Any],
    expires_ns: int | None,
    args: argparse.Namespace,
) -> tuple[str, int | None]:
    """A token made by ``actor``: token.create on every scope, its own, not outliving it."""
    from ..auth import require

    if actor.standalone or actor.subject.startswith("token:"):
        raise PermissionDeniedError(
            f"{actor.subject}: a token without an owner cannot create tokens"
        )
    if owner is not None and owner != actor.subject:
        raise PermissionDeniedError(f"{actor.subject} may create tokens for itself only")
    policy = target.store.policy()
    for scope in scopes:
        require(actor, "token.create", scope.resource, policy, audit=target.store_audit)
    if actor.expires_ns is not None:
        if args.expires is None:  # by default at most as long as the acting token lives
            expires_ns = min(expires_ns or actor.expires_ns, actor.expires_ns)
        elif expires_ns is None or expires_ns > actor.expires_ns:
            raise InvalidArgumentError(
                f"--expires {args.expires}: longer than the acting token lives "
                f"(until {_when(actor.expires_ns)})"
            )
    return actor.subject, expires_ns


def _row(t: Any) -> dict[str, Any]:
    return {
        "id": t.token_id,
        "owner": t.owner,
        "scopes": [str(s) for s in t.scopes],
        "created": _when(t.created_ns),
        "expires": _when(t.expires_ns) if t.expires_ns is not None else "never",
        "revoked": _when(t.revoked_ns),
        "last_used": _when(t.last_used_ns),
        "description": t.description,
    }


def _cmd_list(args: argparse.Namespace) -> int:
    split_target(args, args.words, ())
    with open_target(args) as target:
        actor = acting_principal(target, args)
        tokens = target.store.tokens()
        if actor.method != "local":
            from ..auth import authorize

            everything = target.resource(None)
            if not authorize(actor, "audit.read", everything, target.store.policy()):
                tokens = [t for t in tokens if _owns(actor, t)]
    rows = [_row(t) for t in tokens]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("ID", "OWNER", "SCOPES", "CREATED", "EXPIRES", "REVOKED", "DESCRIPTION")]
    table += [
        (
            r["id"],
            r["owner"] or "-",
            " ".join(r["scopes"]),
            r["created"],
            r["expires"],
            r["revoked"],
            r["description"],
        )
        for r in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(6)]
    for line in table:
        cells = "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
        print(f"{cells}  {line[6]}".rstrip())
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    token_id = split_target(args, args.words, ("TOKEN_ID",))["TOKEN_ID"]
    assert token_id is not None
    with open_target(args) as target:
        actor = acting_principal(target, args)
        where = target.where
        record = target.store.token(token_id)
        if actor.method != "local" and record is not None and not _owns(actor, record):
            from ..auth import require

            policy = target.store.policy()
            for scope in record.scopes:
                require(actor, "token.revoke", scope.resource, policy, audit=target.store_audit)
        revoked = record is not None and target.store.revoke_token(token_id, by=actor.subject)
    if not revoked:
        raise InvalidArgumentError(f"no valid token {token_id[:80]!r} in {where}")
    print(f"revoked {token_id}")
    return 0


def _owns(actor: Any, record: Any) -> bool:
    """``record`` is the actor's own token (owned by its subject, or the acting token)."""
    return record.token_id == actor.token_id or (
        record.owner is not None and record.owner == actor.subject
    )


def add_token_parser(sub: Any) -> None:
    """Add ``token create | list | revoke`` to an ``argparse`` subparsers object."""
    token = sub.add_parser("token", help="create, list and revoke a tenant's API tokens")
    verbs = token.add_subparsers(
        dest="token_command", required=True, metavar="{create,list,revoke}"
    )

    p = verbs.add_parser(
        "create",
        usage="%(prog)s (DIR | --config FILE --tenant NAME) [options]",
        help="create a token and print it once",
        description="Create an API token for the index in DIR (or a tenant of a v2 config) and "
        "print it once on stdout (twine: TWINE_USERNAME=__token__ TWINE_PASSWORD=<token>; uv "
        "publish --token <token>). Only a hash of its secret is stored: it cannot be shown "
        "again. Default scope: read,upload,create on the index.",
    )
    p.add_argument(
        "words", nargs="*", metavar="DIR", help="the index directory (as given to serve)"
    )
    add_target_arguments(p)
    p.add_argument(
        "--project",
        metavar="NAME",
        default=None,
        help="scope: read, upload and create this project only (default: any project)",
    )
    p.add_argument(
        "--scope",
        action="append",
        metavar="ACTIONS:RESOURCE",
        help="a least-privilege scope, e.g. upload:main/foo or read:* (repeatable)",
    )
    p.add_argument("--index", metavar="NAME", help="the index of --project (default: the first)")
    p.add_argument(
        "--owner",
        metavar="SUBJECT",
        help="act for this subject (user:alice): its roles, narrowed by the scopes; "
        "default: none, the scopes are the token's whole grant",
    )
    p.add_argument(
        "--expires",
        metavar="DURATION",
        help="30d, 12h, 90m, 2w or never (default: never, or the tenant's token_max_ttl_s)",
    )
    p.add_argument("--description", default="", help="a note shown by token list")
    add_acting_argument(p)
    p.set_defaults(func=_cmd_create, command_name="token create")

    p = verbs.add_parser(
        "list",
        usage="%(prog)s (DIR | --config FILE --tenant NAME) [--json]",
        help="list tokens (id, owner, scopes, expiry, revoked; no secrets)",
    )
    p.add_argument("words", nargs="*", metavar="DIR", help="the index directory")
    add_target_arguments(p)
    p.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    add_acting_argument(p)
    p.set_defaults(func=_cmd_list, command_name="token list")

    p = verbs.add_parser(
        "revoke",
        usage="%(prog)s (DIR | --config FILE --tenant NAME) TOKEN_ID",
        help="revoke a token by its id (from token list)",
    )
    p.add_argument(
        "words",
        nargs="+",
        metavar="[DIR] TOKEN_ID",
        help="the index directory, then the token's id (the part after 'rc-' in the token)",
    )
    add_target_arguments(p)
    add_acting_argument(p)
    p.set_defaults(func=_cmd_revoke, command_name="token revoke")
