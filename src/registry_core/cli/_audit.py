"""``registry-core audit verify | show | keys``: the tamper-evident audit log (docs/audit.md).

- ``verify DIR|URL --key FILE [--trusted-checkpoint FILE] [--origin O]``: re-hash a copy of a
  log end to end (a directory, or the tenant's ``<base>/_/audit`` URL with ``--token-file``
  for an ``audit.read`` token). Exit 0 with one summary line when all is well, 1 with one
  line per problem otherwise (2: a usage or registry-core error, as every command).
- ``show DIR`` (a log directory): the current checkpoint's origin, size and root (NOT
  verified: ``verify`` is the check) and the last ``--entries N`` entries.
- ``keys REGISTRY_DIR --origin O``: the verifier keys (``<name>+<id>+<key>`` lines) of the
  tenant's ``audit`` keys, from ``REGISTRY_DIR/.registry-core/keys``: the ``--key`` file an
  auditor pins. Public halves only; no passphrase needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["add_audit_parser", "run_audit"]

_MAX_FILE = 1 << 20


def _read_small(path: str, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE + 1)
    if len(data) > _MAX_FILE:
        raise InvalidArgumentError(f"{what} {path} is larger than 1 MiB")
    return data


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..audit import parse_vkeys, verify_log

    keys = parse_vkeys(_read_small(args.key, "key file").decode("utf-8", "replace"))
    trusted = None
    if args.trusted_checkpoint:
        trusted = _read_small(args.trusted_checkpoint, "trusted checkpoint")
    headers = {}
    if args.token_file:
        token = _read_small(args.token_file, "token file").split(b"\n", 1)[0].strip()
        if not token:
            raise InvalidArgumentError(f"token file {args.token_file} is empty")
        headers["Authorization"] = "Bearer " + token.decode("ascii", "replace")
    report = verify_log(
        args.source,
        keys=keys,
        origin=args.origin,
        trusted_checkpoint=trusted,
        headers=headers,
        tls_verify=args.ca or True,
    )
    if args.json:
        doc: dict[str, Any] = {
            "ok": report.ok,
            "origin": report.origin,
            "size": report.size,
            "root": report.root.hex(),
            "signatures": report.signatures,
            "entries_checked": report.entries_checked,
            "consistent_with_trusted": report.consistent_with_trusted,
            "problems": report.problems,
        }
        print(json.dumps(doc, indent=1))
    elif report.ok:
        trusted_note = ""
        if report.consistent_with_trusted:
            trusted_note = ", consistent with the trusted checkpoint"
        print(
            f"ok: {report.origin} size {report.size} root {report.root.hex()}, "
            f"{report.entries_checked} entries re-hashed, signed by "
            f"{' + '.join(report.signatures)}{trusted_note}"
        )
    else:
        for problem in report.problems:
            print(f"{args.source}: {problem}")
    return 0 if report.ok else 1


def _cmd_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..audit._note import parse_checkpoint
    from ..audit._tiles import TILE_WIDTH, decode_bundle, entries_path, tile_width

    root = Path(args.directory)
    data = _read_small(str(root / "checkpoint"), "checkpoint")
    text = data.decode("utf-8", "replace").rpartition("\n\n")[0] + "\n"
    cp = parse_checkpoint(text)
    print(f"origin {cp.origin}\nsize {cp.size}\nroot {cp.root.hex()}\n(not verified: use verify)")
    first = max(0, cp.size - args.entries)
    for b in range(first // TILE_WIDTH, -(-cp.size // TILE_WIDTH)):
        width = tile_width(0, b, cp.size)
        with open(root / entries_path(b, width), "rb") as f:
            entries = decode_bundle(f.read(TILE_WIDTH * 65537 + 1), width)
        for i, entry in enumerate(entries):
            index = b * TILE_WIDTH + i
            if index >= first:
                sys.stdout.write(f"{index} {entry.decode('utf-8', 'replace')}\n")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from ..audit import verifiers_from_keyring
    from ..signing import Keyring, keyring_dir

    ring = Keyring(keyring_dir(args.directory))
    name = args.name or args.origin
    keys = verifiers_from_keyring(ring, name, role=args.role, active_only=not args.all)
    if not keys:
        raise InvalidArgumentError(
            f"no {args.role!r} Ed25519 / ML-DSA-65 key in {keyring_dir(args.directory)}"
        )
    for v in keys:
        print(v.vkey())
    return 0


def add_audit_parser(sub: Any) -> None:
    """Add ``audit verify | show | keys`` to the ``registry-core`` sub-parsers."""
    p = sub.add_parser("audit", help="verify and show the tamper-evident audit log")
    p.set_defaults(command_name="audit")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    v = asub.add_parser("verify", help="check a log (directory or URL) end to end")
    v.add_argument("source", metavar="DIR|URL", help="the log directory or its base URL")
    v.add_argument("--key", required=True, metavar="FILE", help="trusted verifier keys")
    v.add_argument("--trusted-checkpoint", metavar="FILE", help="a checkpoint seen before")
    v.add_argument("--origin", default=None, help="the checkpoint origin to expect")
    v.add_argument("--token-file", metavar="FILE", help="an audit.read API token (URL only)")
    v.add_argument("--ca", metavar="FILE", default=None, help="CA bundle for the URL's TLS")
    v.add_argument("--json", action="store_true", help="the report as JSON")
    v.set_defaults(func=_cmd_verify, command_name="audit verify")

    s = asub.add_parser("show", help="the current checkpoint and the last entries")
    s.add_argument("directory", metavar="DIR", help="the log directory")
    s.add_argument("--entries", type=int, default=0, metavar="N", help="print the last N")
    s.set_defaults(func=_cmd_show, command_name="audit show")

    k = asub.add_parser("keys", help="the verifier keys of a registry's audit keys")
    k.add_argument("directory", metavar="REGISTRY_DIR", help="keys in DIR/.registry-core/keys")
    k.add_argument("--origin", required=True, help="the log's origin (the key name)")
    k.add_argument("--name", default=None, help="a key name other than the origin")
    k.add_argument("--role", default="audit", help="the keyring role (default: audit)")
    k.add_argument("--all", action="store_true", help="include expired and retired keys")
    k.set_defaults(func=_cmd_keys, command_name="audit keys")


def run_audit(args: argparse.Namespace) -> int:
    """Run a parsed ``audit`` command."""
    return int(args.func(args))
