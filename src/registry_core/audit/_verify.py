"""End-to-end verification of a published audit log (a directory or a base URL).

:func:`verify_log` trusts nothing it reads: it checks the checkpoint's signatures against the
given verifier keys (one verified signature per algorithm given: Ed25519 and ML-DSA-65),
re-hashes every entry of every bundle, compares every tile with the hashes recomputed from the
entries below it, recomputes the root and compares it with the checkpoint's, and, given a
previously trusted checkpoint, checks that its tree is a prefix of this one (the root of the
first ``m`` recomputed entries is the trusted root, and the RFC 9162 consistency proof built
from the recomputed tree verifies). A modified, removed, reordered or inserted entry changes a
leaf hash, a bundle's length or the root: it is always reported, whatever else was rewritten,
unless the checkpoint was re-signed by a trusted key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._merkle import (
    EMPTY_ROOT,
    consistency_proof,
    leaf_hash,
    node_hash,
    tree_hash,
    verify_consistency,
)
from ._note import Checkpoint, NoteError, NoteVerifier, open_note, parse_checkpoint
from ._tiles import (
    MAX_ENTRY,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileError,
    decode_bundle,
    entries_path,
    expand_tile,
    split_hashes,
    tile_path,
    tile_width,
)

__all__ = ["VerifyReport", "verify_log"]

_MAX_FILE = TILE_WIDTH * (MAX_ENTRY + 2)
_MAX_CHECKPOINT = 64 * 1024
_MAX_PROBLEMS = 1000


class _Missing(Exception):
    pass


@dataclass
class VerifyReport:
    """What :func:`verify_log` found. ``ok``: no problem at all."""

    source: str
    origin: str = ""
    size: int = 0
    root: bytes = b""
    signatures: list[str] = field(default_factory=list)
    entries_checked: int = 0
    consistent_with_trusted: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("... more problems not listed")


def _dir_fetch(root: Path) -> Callable[[str], bytes]:
    def fetch(rel: str) -> bytes:
        path = root / rel
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_FILE + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _Missing(rel) from None
        if len(data) > _MAX_FILE:
            raise TileError(f"{rel}: larger than {_MAX_FILE} bytes")
        return data

    return fetch


def _url_fetch(
    base: str, headers: Mapping[str, str] | None, verify: bool | str
) -> tuple[Callable[[str], bytes], Callable[[], None]]:
    import httpx

    client = httpx.Client(verify=verify, headers=dict(headers or {}), timeout=30.0)
    prefix = base.rstrip("/") + "/"

    def fetch(rel: str) -> bytes:
        with client.stream("GET", prefix + rel) as resp:
            if resp.status_code == 404:
                raise _Missing(rel)
            if resp.status_code != 200:
                raise TileError(f"{rel}: HTTP {resp.status_code}")
            out = bytearray()
            for chunk in resp.iter_bytes():
                out += chunk
                if len(out) > _MAX_FILE:
                    raise TileError(f"{rel}: larger than {_MAX_FILE} bytes")
            return bytes(out)

    return fetch, client.close


class _Levels:
    """Hashes recomputed from the entries: tile level 0 only for the tiles kept, every hash of
    the levels above (1/256 of the entries: small)."""

    def __init__(self) -> None:
        self.level0: dict[int, list[bytes]] = {}
        self.upper: list[list[bytes]] = []  # upper[t-1]: the hashes of tile level t

    def hashes(self, tlevel: int, n: int) -> list[bytes]:
        if tlevel == 0:
            return self.level0[n]
        row = self.upper[tlevel - 1]
        return row[n * TILE_WIDTH : (n + 1) * TILE_WIDTH]

    def hash_at(self, level: int, index: int) -> bytes:
        tlevel, r = divmod(level, TILE_HEIGHT)
        n, off = divmod(index << r, TILE_WIDTH)
        rows = expand_tile(self.hashes(tlevel, n))
        return rows[r][off >> r]


def verify_log(
    source: str | os.PathLike[str],
    *,
    keys: Sequence[NoteVerifier],
    origin: str | None = None,
    trusted_checkpoint: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    tls_verify: bool | str = True,
    fetch: Callable[[str], bytes] | None = None,
) -> VerifyReport:
    """Check a published audit log end to end (see the module docstring). ``source``: the
    log directory or its base URL (``https://host/<tenant base>/_/audit``); ``keys``: the
    trusted verifier keys; ``origin``: the expected checkpoint origin; ``headers``: sent with
    every request (an ``Authorization`` header for the registry's audit routes)."""
    text = os.fspath(source)
    report = VerifyReport(source=text)
    close: Callable[[], None] = lambda: None  # noqa: E731
    if fetch is None:
        if text.startswith(("https://", "http://")):
            fetch, close = _url_fetch(text, headers, tls_verify)
        else:
            fetch = _dir_fetch(Path(text))
    try:
        _verify(fetch, report, list(keys), origin, trusted_checkpoint)
    except _Missing as exc:
        report.problem(f"{exc}: missing")
    except Exception as exc:  # a transport error: reported, never a crash
        report.problem(f"cannot read the log: {type(exc).__name__}: {exc}")
    finally:
        close()
    return report


def _open_checkpoint(
    data: bytes, keys: list[NoteVerifier], report: VerifyReport, what: str
) -> tuple[Checkpoint, list[str]] | None:
    try:
        opened = open_note(data, keys)
    except NoteError as exc:
        report.problem(f"{what}: {exc}")
        return None
    algorithms = sorted({v.algorithm for v in opened.verified})
    for wanted in sorted({v.algorithm for v in keys}):
        if wanted not in algorithms:
            report.problem(f"{what}: no valid {wanted} signature from a trusted key")
    try:
        cp = parse_checkpoint(opened.text)
    except NoteError as exc:
        report.problem(f"{what}: {exc}")
        return None
    return cp, algorithms


def _verify(
    fetch: Callable[[str], bytes],
    report: VerifyReport,
    keys: list[NoteVerifier],
    origin: str | None,
    trusted: bytes | None,
) -> None:
    if not keys:
        report.problem("no verifier key given")
        return
    data = fetch("checkpoint")
    if len(data) > _MAX_CHECKPOINT:
        report.problem("checkpoint: too large")
        return
    opened = _open_checkpoint(data, keys, report, "checkpoint")
    if opened is None:
        return
    cp, report.signatures = opened
    report.origin, report.size, report.root = cp.origin, cp.size, cp.root
    if origin is not None and cp.origin != origin:
        report.problem(f"checkpoint: origin {cp.origin!r}, expected {origin!r}")
    old = None
    if trusted is not None:
        old_opened = _open_checkpoint(trusted, keys, report, "trusted checkpoint")
        if old_opened is not None:
            old = old_opened[0]
            if old.origin != cp.origin:
                report.problem("trusted checkpoint: another origin")
                old = None
            elif old.size > cp.size:
                report.problem(
                    f"trusted checkpoint: size {old.size} is larger than the current {cp.size} "
                    "(the log was truncated)"
                )
                report.consistent_with_trusted = False
                old = None
    size = cp.size
    levels = _Levels()
    keep = {(size - 1) // TILE_WIDTH}
    if old is not None and old.size:
        keep.update({(old.size - 1) // TILE_WIDTH, old.size // TILE_WIDTH})
    # level 0: every bundle re-hashed and compared with its tile
    upper_in: list[bytes] = []
    bundles = -(-size // TILE_WIDTH)
    for n in range(bundles):
        width = tile_width(0, n, size)
        hashes: list[bytes] | None = None
        try:
            entries = decode_bundle(fetch(entries_path(n, width)), width)
            hashes = [leaf_hash(e) for e in entries]
            report.entries_checked += width
        except _Missing:
            report.problem(f"{entries_path(n, width)}: missing")
        except TileError as exc:
            report.problem(f"{entries_path(n, width)}: {exc} (entries removed or inserted)")
        tile = _fetch_tile(fetch, report, 0, n, width)
        if hashes is None:
            hashes = tile  # cannot re-hash: go on with what the tile claims
        elif tile is not None and tile != hashes:
            first = next(i for i in range(width) if tile[i] != hashes[i])
            report.problem(
                f"entry {n * TILE_WIDTH + first}: its hash is not the one in "
                f"{tile_path(0, n, width)} (modified, reordered, removed or inserted)"
            )
        if hashes is None:
            report.problem(f"bundle {n}: neither entries nor tile: cannot check the root")
            return
        if n in keep:
            levels.level0[n] = hashes
        if width == TILE_WIDTH:
            top = expand_tile(hashes)[TILE_HEIGHT - 1]
            upper_in.append(node_hash(top[0], top[1]))
    # the levels above: each tile compared with the roots of the full tiles below it
    tlevel, current = 1, upper_in
    while size >> (TILE_HEIGHT * tlevel):
        levels.upper.append(current)
        nxt: list[bytes] = []
        count = len(current)
        for n in range(-(-count // TILE_WIDTH)):
            chunk = current[n * TILE_WIDTH : (n + 1) * TILE_WIDTH]
            tile = _fetch_tile(fetch, report, tlevel, n, len(chunk))
            if tile is not None and tile != chunk:
                report.problem(
                    f"{tile_path(tlevel, n, len(chunk))}: disagrees with the tiles below"
                )
            if len(chunk) == TILE_WIDTH:
                top = expand_tile(chunk)[TILE_HEIGHT - 1]
                nxt.append(node_hash(top[0], top[1]))
        current = nxt
        tlevel += 1
    root = EMPTY_ROOT if size == 0 else tree_hash(levels.hash_at, size)
    if root != cp.root:
        report.problem(
            f"root: the checkpoint says {cp.root.hex()}, the entries hash to {root.hex()}"
        )
    if old is not None:
        old_root = EMPTY_ROOT if old.size == 0 else tree_hash(levels.hash_at, old.size)
        proof_ok = verify_consistency(
            old.size, size, old.root, root, consistency_proof(levels.hash_at, old.size, size)
        )
        report.consistent_with_trusted = old_root == old.root and proof_ok
        if not report.consistent_with_trusted:
            report.problem(
                f"trusted checkpoint: the first {old.size} entries no longer hash to its root "
                "(history was rewritten)"
            )


def _fetch_tile(
    fetch: Callable[[str], bytes], report: VerifyReport, tlevel: int, n: int, width: int
) -> list[bytes] | None:
    rel = tile_path(tlevel, n, width)
    try:
        return split_hashes(fetch(rel), width)
    except _Missing:
        report.problem(f"{rel}: missing")
    except TileError as exc:
        report.problem(f"{rel}: {exc}")
    return None
