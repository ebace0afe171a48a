"""``registry-core token create | list | revoke DIR``: the index's API tokens.

``create`` prints the raw token once, alone on stdout (so ``TOKEN=$(registry-core token create
DIR)`` works); only a hash of its secret is stored. ``list`` never shows secrets or hashes.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..errors import InvalidArgumentError
from ._index import open_index


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _cmd_create(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:
        raw, _record = index.create_token(scope=args.project, description=args.description)
    finally:
        index.close()
    print(raw, flush=True)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:
        tokens = index.tokens()
    finally:
        index.close()
    rows = [("ID", "SCOPE", "CREATED", "REVOKED", "DESCRIPTION")]
    rows += [
        (t.token_id, t.scope or "*", _when(t.created_ns), _when(t.revoked_ns), t.description)
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print(
            (
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4]
            ).rstrip()
        )
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:
        revoked = index.revoke_token(args.token_id)
    finally:
        index.close()
    if not revoked:
        raise InvalidArgumentError(f"no valid token {args.token_id!r} in {args.directory}")
    print(f"revoked {args.token_id}")
    return 0


def add_token_parser(sub: Any) -> None:
    """Add ``token create | list | revoke`` to an ``argparse`` subparsers object."""
    token = sub.add_parser("token", help="create, list and revoke the index's API tokens")
    verbs = token.add_subparsers(
        dest="token_command", required=True, metavar="{create,list,revoke}"
    )

    p = verbs.add_parser(
        "create",
        help="create a token and print it once",
        description="Create an upload token for the index in DIR and print it once on stdout "
        "(twine: TWINE_USERNAME=__token__ TWINE_PASSWORD=<token>; uv publish --token <token>). "
        "Only a hash of its secret is stored: it cannot be shown again.",
    )
    p.add_argument("directory", help="the index directory (as given to serve)")
    p.add_argument(
        "--project",
        metavar="NAME",
        default=None,
        help="scope: the token may upload to this project only (default: any project)",
    )
    p.add_argument("--description", default="", help="a note shown by token list")
    p.set_defaults(func=_cmd_create, command_name="token create")

    p = verbs.add_parser("list", help="list tokens (id, scope, created, revoked; no secrets)")
    p.add_argument("directory", help="the index directory")
    p.set_defaults(func=_cmd_list, command_name="token list")

    p = verbs.add_parser("revoke", help="revoke a token by its id (from token list)")
    p.add_argument("directory", help="the index directory")
    p.add_argument("token_id", help="the token's id (the part after 'rc-' in the token)")
    p.set_defaults(func=_cmd_revoke, command_name="token revoke")
