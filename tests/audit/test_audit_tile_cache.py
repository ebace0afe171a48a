"""The expanded-tile caches behind proofs: answers from the cache equal answers from disk after
a reopen (with caches small enough to evict), a tile recovery rewrites is never served stale,
a damaged tile is a clear error, and the byte-row expansion matches the reference tree."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.audit import AuditLog, AuditLogError
from registry_core.audit._merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_hash,
)
from registry_core.audit._tiles import (
    TILE_HEIGHT,
    TileError,
    TileHashReader,
    expand_rows,
    expand_tile,
    tile_path,
)

ORIGIN = "registry.example/acme"


def _entry(i: int) -> bytes:
    return b'{"i":%d}' % i


def _open(path: Path, **kw: int) -> AuditLog:
    return AuditLog(path, origin=ORIGIN, checkpoint_every=None, **kw)  # type: ignore[arg-type]


def _answers(log: AuditLog, queries: list[tuple[str, int, int]]) -> list[object]:
    out: list[object] = []
    for kind, a, size in queries:
        if kind == "inclusion":
            out.append(log.inclusion_proof(a, size))
        elif kind == "consistency":
            out.append(log.consistency_proof(a, size))
        else:
            out.append(log.root(size))
    return out


def test_cached_proofs_equal_proofs_from_disk_after_reopen(tmp_path: Path) -> None:
    n = 66_000  # a full level-1 tile, so level-1 tiles are read from disk too
    ref = MemoryTree()
    rng = random.Random(15)
    sizes = [n, 65_536, 65_537, 256, 257] + [rng.randint(1, n) for _ in range(10)]
    queries: list[tuple[str, int, int]] = []
    for s in sizes:
        queries += [("inclusion", rng.randrange(s), s) for _ in range(6)]
        queries += [("consistency", rng.randint(1, s), s) for _ in range(3)]
        queries.append(("root", 0, s))
    # caches of about three level-0 tiles and one upper tile: evictions all along
    small = {"tile_cache_bytes": 50_000, "upper_cache_bytes": 20_000}
    with _open(tmp_path / "log", **small) as log:
        for i in range(n):
            log.append(_entry(i))
            ref.append(_entry(i))
        first = _answers(log, queries)
        hits = log._tiles.hits + log._upper.hits
        assert _answers(log, queries) == first  # again, partly from the caches
        assert log._tiles.hits + log._upper.hits > hits
    with _open(tmp_path / "log") as log:  # cold: every tile read from disk
        assert _answers(log, queries) == first
        assert _answers(log, queries) == first  # and warm, from the default caches
    for (kind, a, s), got in zip(queries, first, strict=True):
        if kind == "inclusion":
            assert got == inclusion_proof(ref.hash_at, a, s)
        elif kind == "consistency":
            assert got == consistency_proof(ref.hash_at, a, s)
        else:
            assert got == tree_hash(ref.hash_at, s)


def test_a_tile_rewritten_at_recovery_is_not_served_from_the_cache(tmp_path: Path) -> None:
    ref = MemoryTree()
    for i in range(600):
        ref.append(_entry(i))
    good = inclusion_proof(ref.hash_at, 300, 600)
    with _open(tmp_path / "log") as log:
        for i in range(600):
            log.append(_entry(i))
        assert log.inclusion_proof(300) == good
        log.sync()
        tile = tmp_path / "log" / tile_path(0, 1)
        tile.write_bytes(b"\x00" * 8192)  # damaged on disk
        log._tiles.discard((0, 1))
        assert log.inclusion_proof(300) != good  # the damaged tile is now in the cache
        log._ensure_tile(0, 1)  # what recovery does for every tile it checks
        assert tile.read_bytes() == b"".join(leaf_hash(_entry(i)) for i in range(256, 512))
        assert log.inclusion_proof(300) == good  # the cached copy was dropped with the rewrite
    tile.write_bytes(b"\xff" * 8192)  # the newest full tile: recovery rewrites it on open
    with _open(tmp_path / "log") as log:
        assert log.inclusion_proof(300) == good
        assert log.consistency_proof(300) == consistency_proof(ref.hash_at, 300, 600)


def test_a_short_tile_is_a_clear_error(tmp_path: Path) -> None:
    with _open(tmp_path / "log") as log:
        for i in range(800):
            log.append(_entry(i))
    (tmp_path / "log" / tile_path(0, 0)).write_bytes(b"\x00" * 100)  # not one recovery rewrites
    with pytest.raises(AuditLogError, match="tile 0/0: 100 bytes, expected 8192"):
        _open(tmp_path / "log")  # the level-1 edge is rebuilt from it at open


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=256), st.binary(min_size=1, max_size=8))
def test_expanded_rows_match_the_reference_tree(width: int, salt: bytes) -> None:
    ref = MemoryTree()
    for i in range(width):
        ref.append(salt + i.to_bytes(2, "big"))
    rows = expand_rows(b"".join(ref.levels[0]))
    assert len(rows) == TILE_HEIGHT
    for r, row in enumerate(rows):
        want = ref.levels[r] if r < len(ref.levels) else []
        assert row == b"".join(want)
    assert expand_tile(list(ref.levels[0])) == [
        [row[i : i + 32] for i in range(0, len(row), 32)] for row in rows
    ]
    tiles = {tile_path(0, 0, width): b"".join(ref.levels[0])}
    reader = TileHashReader(tiles.__getitem__, width, cache_bytes=1 << 16)
    for level in range(min(TILE_HEIGHT, len(ref.levels))):
        for j, h in enumerate(ref.levels[level]):
            assert reader.hash_at(level, j) == h


def test_expand_rows_refuses_a_partial_hash() -> None:
    with pytest.raises(TileError):
        expand_rows(b"\x00" * 33)


def test_journal_restarts_while_appends_go_on_lose_nothing(tmp_path: Path) -> None:
    n_threads, per = 4, 700  # several bundles fill while the journal is being restarted
    stop = threading.Event()
    with _open(tmp_path / "log") as log:

        def flush() -> None:
            while not stop.is_set():
                log.sync()

        flusher = threading.Thread(target=flush)
        flusher.start()

        def writer(t: int) -> None:
            for i in range(per):
                log.append(b"%d:%d" % (t, i))

        writers = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        stop.set()
        flusher.join()
        entries = [log.entry(i) for i in range(len(log))]
        root = log.root()
    assert sorted(entries) == sorted(
        b"%d:%d" % (t, i) for t in range(n_threads) for i in range(per)
    )
    assert not list((tmp_path / "log").glob(".tail.*"))
    with _open(tmp_path / "log") as log:
        assert len(log) == n_threads * per
        assert [log.entry(i) for i in range(len(log))] == entries
        assert log.root() == root
