"""The tiled audit log: appends, proofs against an in-memory reference tree across tile
boundaries, checkpoints with both signatures, crash recovery, one writer, the sink contract."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from registry_core.audit import (
    AuditEvent,
    AuditLog,
    AuditLogError,
    AuditSink,
    NoteVerifier,
    open_note,
)
from registry_core.audit._merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)
from registry_core.audit._note import parse_checkpoint, verifiers_from_keyring
from registry_core.audit._tiles import entries_path, tile_path
from registry_core.errors import SigningKeyError
from registry_core.signing import Keyring

ORIGIN = "registry.example/acme"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keys", insecure_plaintext=True)


def _open(path: Path, keyring: Keyring | None = None, **kw: object) -> AuditLog:
    kw.setdefault("checkpoint_every", None)
    return AuditLog(path, origin=ORIGIN, keyring=keyring, **kw)  # type: ignore[arg-type]


def _entry(i: int) -> bytes:
    return b'{"i":%d}' % i


def test_proofs_match_the_reference_across_tiles(tmp_path: Path) -> None:
    n = 66_000  # a full level-1 tile (65,536 entries) and a partial level-2 tile
    ref = MemoryTree()
    with _open(tmp_path / "log") as log:
        for i in range(n):
            assert log.append(_entry(i)) == i
            ref.append(_entry(i))
        rng = random.Random(15)
        sizes = [1, 255, 256, 257, 65_535, 65_536, 65_537, n]
        sizes += [rng.randint(1, n) for _ in range(20)]
        for size in sizes:
            root = log.root(size)
            assert root == tree_hash(ref.hash_at, size), size
            i = rng.randrange(size)
            proof = log.inclusion_proof(i, size)
            assert proof == inclusion_proof(ref.hash_at, i, size)
            assert verify_inclusion(ref.hash_at(0, i), i, size, proof, root)
            m = rng.randint(0, size)
            cproof = log.consistency_proof(m, size)
            assert cproof == consistency_proof(ref.hash_at, m, size)
            assert verify_consistency(m, size, log.root(m), root, cproof)
        assert log.entry(0) == _entry(0) and log.entry(n - 1) == _entry(n - 1)
        assert log.entry(300) == _entry(300)
        with pytest.raises(AuditLogError):
            log.entry(n)
        with pytest.raises(AuditLogError):
            log.inclusion_proof(5, n + 1)
        with pytest.raises(AuditLogError):
            log.consistency_proof(10, 5)
    # reopened: the same tree, rebuilt from the tiles and the tail
    with _open(tmp_path / "log") as log:
        assert len(log) == n and log.root() == tree_hash(ref.hash_at, n)
        assert log.append(_entry(n)) == n
        ref.append(_entry(n))
        assert log.root() == tree_hash(ref.hash_at, n + 1)
    assert (tmp_path / "log" / tile_path(1, 0)).stat().st_size == 8192
    assert (tmp_path / "log" / tile_path(0, 256)).stat().st_size == 8192


def test_checkpoint_carries_both_signatures(tmp_path: Path, keyring: Keyring) -> None:
    with _open(tmp_path / "log", keyring) as log:
        for i in range(300):
            log.append(_entry(i))
        note = log.checkpoint()
        assert (tmp_path / "log" / "checkpoint").read_bytes() == note
        keys = verifiers_from_keyring(keyring, ORIGIN)
        assert sorted(k.algorithm for k in keys) == ["ed25519", "ml-dsa-65"]
        assert [NoteVerifier.from_vkey(k.vkey()) for k in keys] == keys
        opened = open_note(note, keys)
        assert sorted(v.algorithm for v in opened.verified) == ["ed25519", "ml-dsa-65"]
        cp = parse_checkpoint(opened.text)
        assert (cp.origin, cp.size, cp.root) == (ORIGIN, 300, log.root())
        # the partial tiles and bundle of this size are published with it
        assert (tmp_path / "log" / tile_path(0, 1, 44)).stat().st_size == 44 * 32
        assert (tmp_path / "log" / tile_path(1, 0, 1)).stat().st_size == 32
        assert (tmp_path / "log" / entries_path(1, 44)).is_file()
        assert log.latest_checkpoint() == note  # nothing new: not re-signed
        log.append(_entry(300))
        newer = log.latest_checkpoint()
        assert newer != note and parse_checkpoint(open_note(newer or b"", keys).text).size == 301
        # one key alone verifies only its own line; the other line is "unknown"
        ed = [k for k in keys if k.algorithm == "ed25519"]
        assert open_note(note, ed).unknown == 1
    assert "secret" not in repr(log).lower()


def test_no_keyring_no_checkpoint(tmp_path: Path) -> None:
    with _open(tmp_path / "log") as log:
        log.append(b"x")
        with pytest.raises(SigningKeyError):
            log.checkpoint()
        assert log.latest_checkpoint() is None  # logged, not raised


def test_one_writer(tmp_path: Path) -> None:
    with _open(tmp_path / "log"), pytest.raises(AuditLogError, match="one writer"):
        _open(tmp_path / "log")
    with _open(tmp_path / "log"):  # released on close
        pass


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(AuditLogError):
        AuditLog(tmp_path / "a", origin="has space")
    with _open(tmp_path / "log") as log:
        with pytest.raises(AuditLogError, match="65535"):
            log.append(b"x" * 65536)
        assert len(log) == 0
    with pytest.raises(AuditLogError, match="closed"):
        log.append(b"late")


def test_sink_contract(tmp_path: Path) -> None:
    with _open(tmp_path / "log") as log:
        assert isinstance(log, AuditSink)
        event = AuditEvent(kind="upload", tenant="acme", subject="user:a", outcome="ok")
        log.emit(event)
        assert json.loads(log.entry(0)) == event.to_json()
        # a huge event is cut to fit an entry, never dropped
        detail = {str(i): "\x01" * 1000 for i in range(32)}
        big = AuditEvent(kind="k", tenant="t", subject="s", outcome="ok", detail=detail)
        log.emit(big)
        assert json.loads(log.entry(1))["detail"]["_cut"] == "true"
    log.emit(event)  # closed: dropped, never raised


def test_recovery_after_a_torn_tail_record(tmp_path: Path) -> None:
    with _open(tmp_path / "log") as log:
        for i in range(10):
            log.append(_entry(i))
    with open(tmp_path / "log" / "tail", "ab") as f:
        f.write(b"\x00\x50partial")  # a crash in the middle of a write
    with _open(tmp_path / "log") as log:
        assert len(log) == 10
        log.append(_entry(10))
        assert log.entry(10) == _entry(10)
    with _open(tmp_path / "log") as log:
        assert len(log) == 11


def test_recovery_rewrites_a_missing_or_wrong_tile(tmp_path: Path) -> None:
    ref = MemoryTree()
    with _open(tmp_path / "log") as log:
        for i in range(600):
            log.append(_entry(i))
            ref.append(_entry(i))
    tile = tmp_path / "log" / tile_path(0, 1)
    tile.unlink()  # crashed after the bundle, before its tile
    with _open(tmp_path / "log") as log:
        assert log.root() == tree_hash(ref.hash_at, 600)
    assert tile.stat().st_size == 8192
    tile.write_bytes(b"\x00" * 8192)  # a tile that disagrees with its entries
    with _open(tmp_path / "log") as log:
        assert log.root() == tree_hash(ref.hash_at, 600)


def test_recovery_after_promotion_before_tail_reset(tmp_path: Path) -> None:
    with _open(tmp_path / "log") as log:
        for i in range(255):
            log.append(_entry(i))
    stale = (tmp_path / "log" / "tail").read_bytes()
    with _open(tmp_path / "log") as log:
        log.append(_entry(255))  # the bundle is written, the tail reset
    full = stale + len(_entry(255)).to_bytes(2, "big") + _entry(255)
    (tmp_path / "log" / "tail").write_bytes(full)
    with _open(tmp_path / "log") as log:  # the old tail is recognised and dropped
        assert len(log) == 256 and log.entry(255) == _entry(255)
    # a tail with a full bundle's worth (crash before the bundle was written) is promoted
    (tmp_path / "log" / entries_path(0)).unlink()
    (tmp_path / "log" / tile_path(0, 0)).unlink()
    (tmp_path / "log" / "tail").write_bytes(full)
    with _open(tmp_path / "log") as log:
        assert len(log) == 256
    assert (tmp_path / "log" / entries_path(0)).is_file()


def test_removed_bundle_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path / "log") as log:
        for i in range(600):
            log.append(_entry(i))
    (tmp_path / "log" / entries_path(1)).unlink()
    with pytest.raises(AuditLogError, match="removed"):
        _open(tmp_path / "log")


def test_files_are_private(tmp_path: Path, keyring: Keyring) -> None:
    with _open(tmp_path / "log", keyring) as log:
        log.append(b"x")
        log.checkpoint()
    for root, _dirs, files in os.walk(tmp_path / "log"):
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o077 == 0, name


def test_close_signs_a_last_checkpoint_and_threads_append(tmp_path: Path, keyring: Keyring) -> None:
    import threading

    log = _open(tmp_path / "log", keyring, flush_interval_s=0.01)
    barrier = threading.Barrier(4)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(300):
            log.append(b"%d-%d" % (k, i))
            if i % 50 == 0:
                size = len(log)
                log.inclusion_proof(size - 1, size)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()  # no explicit checkpoint: close signs one
    keys = verifiers_from_keyring(keyring, ORIGIN)
    cp = parse_checkpoint(open_note((tmp_path / "log" / "checkpoint").read_bytes(), keys).text)
    assert cp.size == 1200
    with _open(tmp_path / "log") as again:
        assert len(again) == 1200 and again.root() == cp.root
        assert sorted(again.entry(i) for i in range(1200)) == sorted(
            b"%d-%d" % (k, i) for k in range(4) for i in range(300)
        )
