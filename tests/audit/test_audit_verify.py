"""verify_log end to end: a good log verifies; a modified, removed, reordered or inserted entry
is always reported (hypothesis over random logs and random tampering, with and without the
tampering party also rewriting every tile to match); signatures and trusted checkpoints."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.audit import AuditLog, NoteVerifier, verify_log
from registry_core.audit._merkle import MemoryTree
from registry_core.audit._note import ED25519_TYPE, verifiers_from_keyring
from registry_core.audit._tiles import (
    TILE_WIDTH,
    encode_bundle,
    entries_path,
    tile_path,
    tile_width,
)
from registry_core.signing import Keyring

ORIGIN = "registry.example/acme"


@pytest.fixture(scope="module")
def keyring() -> Iterator[Keyring]:
    d = tempfile.mkdtemp(prefix="rc-audit-keys-")
    try:
        kr = Keyring(Path(d) / "keys", insecure_plaintext=True)
        kr.generate_hybrid("audit")
        yield kr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _build(path: Path, keyring: Keyring, entries: list[bytes]) -> bytes:
    with AuditLog(path, origin=ORIGIN, keyring=keyring, checkpoint_every=None) as log:
        for e in entries:
            log.append(e)
        return log.checkpoint()


def _publish(path: Path, entries: list[bytes], size: int, *, tiles: bool) -> None:
    """What a party rewriting the files would do: the bundles of ``entries`` at the paths the
    checkpoint's ``size`` calls for and, with ``tiles``, every tile recomputed to match."""
    for b in range(-(-size // TILE_WIDTH)):
        chunk = entries[b * TILE_WIDTH : (b + 1) * TILE_WIDTH]
        target = path / entries_path(b, tile_width(0, b, size))
        target.write_bytes(encode_bundle(chunk))
    if not tiles:
        return
    ref = MemoryTree()
    for e in entries:
        ref.append(e)
    tlevel = 0
    while size >> (8 * tlevel):
        row = ref.levels[8 * tlevel] if 8 * tlevel < len(ref.levels) else []
        count = size >> (8 * tlevel)
        for n in range(-(-count // TILE_WIDTH)):
            target = path / tile_path(tlevel, n, tile_width(tlevel, n, size))
            target.write_bytes(b"".join(row[n * TILE_WIDTH : (n + 1) * TILE_WIDTH]))
        tlevel += 1


def _keys(keyring: Keyring) -> list[NoteVerifier]:
    return verifiers_from_keyring(keyring, ORIGIN)


def test_a_good_log_verifies(tmp_path: Path, keyring: Keyring) -> None:
    entries = [b"entry %d" % i for i in range(700)]
    _build(tmp_path / "log", keyring, entries)
    report = verify_log(tmp_path / "log", keys=_keys(keyring), origin=ORIGIN)
    assert report.ok, report.problems
    assert (report.size, report.entries_checked) == (700, 700)
    assert report.signatures == ["ed25519", "ml-dsa-65"]
    # the empty log, too
    _build(tmp_path / "empty", keyring, [])
    assert verify_log(tmp_path / "empty", keys=_keys(keyring)).ok


def _tamper(entries: list[bytes], kind: str, i: int, j: int, blob: bytes) -> list[bytes]:
    out = list(entries)
    if kind == "modify":
        out[i] = out[i] + blob if blob else out[i] + b"!"
    elif kind == "remove":
        del out[i]
    elif kind == "insert":
        out.insert(i, blob)
    elif kind == "reorder":
        out[i], out[j] = out[j], out[i]
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 600),
    kind=st.sampled_from(["modify", "remove", "insert", "reorder"]),
    seed=st.data(),
    rewrite_tiles=st.booleans(),
)
def test_tampering_is_always_detected(
    keyring: Keyring, n: int, kind: str, seed: st.DataObject, rewrite_tiles: bool
) -> None:
    entries = [b"event-%d-%s" % (k, b"x" * (k % 7)) for k in range(n)]
    i = seed.draw(st.integers(0, n - 1))
    j = i
    if kind == "reorder" and n == 1:
        kind = "modify"
    elif kind == "reorder":
        j = seed.draw(st.integers(0, n - 1).filter(lambda k: k != i), "j")
    blob = seed.draw(st.binary(max_size=40), "blob")
    tampered = _tamper(entries, kind, i, j, blob)
    assert tampered != entries
    with tempfile.TemporaryDirectory(prefix="rc-audit-") as d:
        path = Path(d) / "log"
        _build(path, keyring, entries)
        assert verify_log(path, keys=_keys(keyring)).ok
        _publish(path, tampered, n, tiles=rewrite_tiles)
        report = verify_log(path, keys=_keys(keyring))
        assert not report.ok, (kind, i, j, rewrite_tiles)
        if rewrite_tiles and kind != "remove":
            assert any(p.startswith("root:") or "entry bundle" in p for p in report.problems)


def test_problems_name_what_is_wrong(tmp_path: Path, keyring: Keyring) -> None:
    entries = [b"e%d" % i for i in range(300)]
    path = tmp_path / "log"
    _build(path, keyring, entries)
    _publish(path, _tamper(entries, "modify", 17, 0, b""), 300, tiles=False)
    report = verify_log(path, keys=_keys(keyring))
    assert any(p.startswith("entry 17:") for p in report.problems), report.problems
    (path / tile_path(0, 1, 44)).unlink()
    report = verify_log(path, keys=_keys(keyring))
    assert any("tile/0/001.p/44: missing" in p for p in report.problems), report.problems


def test_signatures(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "log"
    note = _build(path, keyring, [b"a", b"b"])
    keys = _keys(keyring)
    other = Keyring(tmp_path / "other", insecure_plaintext=True)
    other.generate_hybrid("audit")
    report = verify_log(path, keys=verifiers_from_keyring(other, ORIGIN))
    assert not report.ok and "no signature from a trusted key" in report.problems[0]
    # a line stripped: the ML-DSA-65 signature is required when its key is trusted
    text, _, sigs = note.decode().rpartition("\n\n")
    first = sigs.splitlines()[0]
    (path / "checkpoint").write_text(text + "\n\n" + first + "\n")
    report = verify_log(path, keys=keys)
    assert report.problems == ["checkpoint: no valid ml-dsa-65 signature from a trusted key"]
    ed_only = [k for k in keys if k.sig_type == ED25519_TYPE]
    assert verify_log(path, keys=ed_only).ok
    # the body changed under the signatures
    (path / "checkpoint").write_bytes(note.replace(b"\n2\n", b"\n3\n"))
    report = verify_log(path, keys=keys)
    assert not report.ok and "does not verify" in report.problems[0]
    # wrong origin
    (path / "checkpoint").write_bytes(note)
    assert not verify_log(path, keys=keys, origin="elsewhere/x").ok
    assert not verify_log(path, keys=[]).ok


def test_trusted_checkpoint(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "log"
    entries = [b"e%d" % i for i in range(400)]
    with AuditLog(path, origin=ORIGIN, keyring=keyring, checkpoint_every=None) as log:
        for e in entries[:300]:
            log.append(e)
        old = log.checkpoint()
        for e in entries[300:]:
            log.append(e)
        log.checkpoint()
    keys = _keys(keyring)
    report = verify_log(path, keys=keys, trusted_checkpoint=old)
    assert report.ok and report.consistent_with_trusted is True
    # history rewritten and re-signed by the log's own key: only the trusted checkpoint shows it
    forged = tmp_path / "forged"
    _build(forged, keyring, [b"rewritten"] + entries[1:])
    report = verify_log(forged, keys=keys, trusted_checkpoint=old)
    assert report.consistent_with_trusted is False and not report.ok
    assert verify_log(forged, keys=keys).ok  # self-consistent, as a forger would make it
    # truncated below the trusted size
    short = tmp_path / "short"
    _build(short, keyring, entries[:100])
    report = verify_log(short, keys=keys, trusted_checkpoint=old)
    assert not report.ok and "truncated" in report.problems[0]


def test_missing_log(tmp_path: Path, keyring: Keyring) -> None:
    report = verify_log(tmp_path / "nothing", keys=_keys(keyring))
    assert report.problems == ["checkpoint: missing"]
