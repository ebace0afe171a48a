"""``registry-core keys generate | list | rotate | retire | phase DIR``: the registry's keys.

DIR is the registry directory; the keyring lives in ``DIR/.registry-core/keys/``. The
passphrase that encrypts private keys comes from ``--passphrase-file`` (first line) or the
environment variable ``REGISTRY_CORE_KEY_PASSPHRASE``; ``list`` and ``retire`` need none.
Nothing printed ever holds private material. Errors are one line, exit 2.

When DIR publishes TUF metadata (``serve --sign``), ``rotate`` of a TUF role goes through the
repository (a new hybrid pair, the role's metadata re-signed and published, root rotations
signed by the old and the new root keys) and ``phase`` changes a role's threshold. The
repository has one writer: run these while ``serve`` is stopped, then start it again.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import InvalidArgumentError

_ALGORITHMS = ("ed25519", "ml-dsa-44", "ml-dsa-65", "ml-dsa-87")  # = signing.ALGORITHMS
_MAX_PASSPHRASE_FILE = 64 << 10


def _passphrase(args: argparse.Namespace) -> bytes | None:
    path = getattr(args, "passphrase_file", None)
    if path is None:
        return None  # Keyring reads REGISTRY_CORE_KEY_PASSPHRASE
    with open(path, "rb") as f:
        data = f.read(_MAX_PASSPHRASE_FILE + 1)
    if len(data) > _MAX_PASSPHRASE_FILE:
        raise InvalidArgumentError(f"passphrase file {path} is larger than 64 KiB")
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not first:
        raise InvalidArgumentError(f"passphrase file {path} is empty")
    return first


def _keyring(args: argparse.Namespace) -> Any:
    from ..signing import Keyring, keyring_dir

    return Keyring(keyring_dir(args.directory), passphrase=_passphrase(args))


def _when(value: Any) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _line(info: Any) -> str:
    return f"{info.key_id}  {info.algorithm}  {info.role}  valid until {_when(info.not_after)}"


def _cmd_generate(args: argparse.Namespace) -> int:
    ring = _keyring(args)
    if args.algorithm is None:
        infos = list(ring.generate_hybrid(args.role, pq=args.pq, valid_days=args.valid_days))
    else:
        infos = [ring.generate(args.role, args.algorithm, valid_days=args.valid_days)]
    for info in infos:
        print(_line(info))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    ring = _keyring(args)
    keys = ring.keys(args.role, active_only=not args.all)
    now = ring.now()
    if args.json:
        out = [dict(k.to_dict(), status=k.status_at(now)) for k in keys]
        print(json.dumps(out, indent=1, sort_keys=True))
        return 0
    rows = [("ID", "ALGORITHM", "ROLE", "STATUS", "CREATED", "NOT_AFTER", "PAIR")]
    rows += [
        (
            k.key_id,
            k.algorithm,
            k.role,
            k.status_at(now),
            _when(k.created),
            _when(k.not_after),
            k.pair[:16] if k.pair else "-",
        )
        for k in keys
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _published_tuf(args: argparse.Namespace, ring: Any) -> Any:
    """DIR's TufRepository when DIR publishes TUF metadata, else None."""
    from pathlib import Path

    from ..storage import STATE_DIR

    if not (Path(args.directory) / STATE_DIR / "tuf" / "timestamp.json").is_file():
        return None
    from ..signing import TufRepository

    repo = TufRepository.for_registry(args.directory, ring)
    repo.init()
    return repo


def _cmd_rotate(args: argparse.Namespace) -> int:
    ring = _keyring(args)
    repo = _published_tuf(args, ring)
    from ..signing._tuf import ROLES

    if repo is not None and args.role in ROLES:
        if args.valid_days is not None:
            raise InvalidArgumentError(
                "--valid-days does not apply to a TUF role (its pair gets the default validity)"
            )
        before = {k.key_id for k in ring.keys(args.role, active_only=False)}
        repo.rotate_keys(args.role)
        for info in ring.keys(args.role, active_only=False):
            if info.key_id not in before:
                print(_line(info))
        print(f"TUF metadata re-signed with the new {args.role} keys and published")
        return 0
    new, old = ring.rotate(args.role, valid_days=args.valid_days)
    for info in new:
        print(_line(info))
    if old:
        print(
            f"{len(old)} previous {args.role} keys stay active until retired "
            f"(registry-core keys retire {args.directory} KEY_ID)"
        )
    return 0


def _cmd_retire(args: argparse.Namespace) -> int:
    info = _keyring(args).retire(args.key_id)
    print(f"retired {info.key_id} ({info.algorithm}, {info.role}); its private key is deleted")
    return 0


def _cmd_phase(args: argparse.Namespace) -> int:
    ring = _keyring(args)
    repo = _published_tuf(args, ring)
    if repo is None:
        raise InvalidArgumentError(
            f"{args.directory} publishes no TUF metadata (start it once with serve --sign)"
        )
    repo.set_phase(args.role, args.phase)
    need = "either key (Ed25519 or ML-DSA)" if args.phase == 1 else "both keys"
    print(f"{args.role}: phase {args.phase}, a signature by {need} of its pair; published")
    return 0


def _valid_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 day")
    return value


def _common(p: argparse.ArgumentParser, *, passphrase: bool = True) -> None:
    p.add_argument("directory", help="the registry directory (keys in DIR/.registry-core/keys)")
    if passphrase:
        p.add_argument(
            "--passphrase-file",
            metavar="FILE",
            default=None,
            help="read the key passphrase from FILE's first line "
            "(default: $REGISTRY_CORE_KEY_PASSPHRASE)",
        )


def add_keys_parser(sub: Any) -> None:
    """Add ``keys generate | list | rotate | retire`` to an ``argparse`` subparsers object."""
    keys = sub.add_parser("keys", help="generate, list, rotate and retire signing keys")
    verbs = keys.add_subparsers(
        dest="keys_command", required=True, metavar="{generate,list,rotate,retire,phase}"
    )

    p = verbs.add_parser(
        "generate",
        help="generate a key (default: a hybrid Ed25519 + ML-DSA-65 pair) for a role",
        description="Generate signing keys for ROLE: a hybrid Ed25519 + ML-DSA pair by default, "
        "or one key of --algorithm. Private keys are stored encrypted with the passphrase.",
    )
    _common(p)
    p.add_argument("--role", required=True, help="root, targets, snapshot, timestamp, bins, ...")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--algorithm", choices=_ALGORITHMS, default=None, help="one key of this")
    kind.add_argument(
        "--hybrid", action="store_true", help="an Ed25519 + ML-DSA pair (the default)"
    )
    p.add_argument(
        "--pq",
        choices=_ALGORITHMS[1:],
        default="ml-dsa-65",
        help="the post-quantum half of a hybrid pair (default ml-dsa-65)",
    )
    p.add_argument("--valid-days", type=_valid_days, default=365, metavar="N")
    p.set_defaults(func=_cmd_generate, command_name="keys generate")

    p = verbs.add_parser("list", help="list keys (public data only)")
    _common(p, passphrase=False)
    p.add_argument("--role", default=None, help="only this role's keys")
    p.add_argument("--all", action="store_true", help="include expired and retired keys")
    p.add_argument("--json", action="store_true", help="JSON: public keys and life cycle")
    p.set_defaults(func=_cmd_list, command_name="keys list")

    p = verbs.add_parser(
        "rotate",
        help="add a new hybrid pair for a role (old keys stay until retired)",
    )
    _common(p)
    p.add_argument("--role", required=True)
    p.add_argument("--valid-days", type=_valid_days, default=None, metavar="N")
    p.set_defaults(func=_cmd_rotate, command_name="keys rotate")

    p = verbs.add_parser("retire", help="retire a key and delete its private key")
    _common(p, passphrase=False)
    p.add_argument("key_id", help="the key id (or a unique prefix of 8+ hex digits)")
    p.set_defaults(func=_cmd_retire, command_name="keys retire")

    p = verbs.add_parser(
        "phase",
        help="a TUF role's hybrid threshold: 1 = either key verifies, 2 = both required",
        description="Set the migration phase of a TUF role of DIR: phase 1 (threshold 1 of its "
        "Ed25519 + ML-DSA pair: classical clients still verify) or phase 2 (threshold 2: the "
        "post-quantum signature is required). Published as a new root or targets version.",
    )
    _common(p)
    p.add_argument(
        "--role", required=True, help="root, targets, snapshot, timestamp, bins, patches"
    )
    p.add_argument("--phase", type=int, choices=(1, 2), required=True)
    p.set_defaults(func=_cmd_phase, command_name="keys phase")
