"""PatchStore: entries round-trip, "not worth it" is remembered, corrupt entries are dropped,
the total size stays under its bound (oldest first), a new store counts what is on disk."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError
from registry_core.server._patch_store import PatchStore


def sha(i: int | bytes) -> bytes:
    return hashlib.sha256(i if isinstance(i, bytes) else str(i).encode()).digest()


def _entry(store: PatchStore, base: bytes, target: bytes, mode: str = "archive") -> str:
    return store._path(base, target, mode)


def test_put_get_round_trip(tmp_path):
    store = PatchStore(tmp_path / "patches")
    assert not (tmp_path / "patches").exists()  # nothing is created before a write
    assert store.get(sha(1), sha(2), "archive") is None
    assert store.put(sha(1), sha(2), "archive", b"patch bytes")
    assert store.get(sha(1), sha(2), "archive") == b"patch bytes"
    assert store.get(sha(1), sha(2), "binary") is None  # the mode is part of the key
    assert store.get(sha(2), sha(1), "archive") is None  # so is the direction
    assert len(store) == 1 and store.stats.hits == 1 and store.stats.writes == 1
    assert store.total_bytes == os.path.getsize(_entry(store, sha(1), sha(2)))


def test_not_worth_marker_is_remembered(tmp_path):
    store = PatchStore(tmp_path)
    assert store.put(sha(1), sha(2), "binary", b"")
    assert store.get(sha(1), sha(2), "binary") == b""
    assert store.stats.not_worth_hits == 1
    assert PatchStore(tmp_path).get(sha(1), sha(2), "binary") == b""  # and survives a restart


@settings(max_examples=60, deadline=None)
@given(patch=st.binary(max_size=4096), mode=st.sampled_from(["archive", "binary", "x1"]))
def test_round_trip_property(tmp_path_factory, patch, mode):
    store = PatchStore(tmp_path_factory.mktemp("prop"))
    base, target = sha(patch + b"b"), sha(patch + b"t")
    assert store.put(base, target, mode, patch)
    assert store.get(base, target, mode) == patch
    assert PatchStore(store.directory).get(base, target, mode) == patch


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],  # truncated
        lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]),  # one bit flipped in the payload
        lambda raw: raw[:12] + bytes([raw[12] ^ 1]) + raw[13:],  # ... in the stored digest
        lambda raw: b"GIF89a" + raw[6:],  # not ours
        lambda raw: raw[: len(raw) - 20],  # payload gone but for a few bytes
        lambda raw: b"",  # empty file
    ],
)
def test_corrupt_entry_is_deleted_and_reported_missing(tmp_path, damage):
    store = PatchStore(tmp_path)
    store.put(sha(1), sha(2), "archive", b"p" * 100)
    path = _entry(store, sha(1), sha(2))
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(damage(raw))
    assert store.get(sha(1), sha(2), "archive") is None
    assert not os.path.exists(path) and store.stats.corrupt == 1
    assert len(store) == 0 and store.total_bytes == 0
    assert store.put(sha(1), sha(2), "archive", b"p" * 100)  # computed again, stored again
    assert store.get(sha(1), sha(2), "archive") == b"p" * 100


def test_total_size_is_bounded_oldest_evicted_first(tmp_path):
    store = PatchStore(tmp_path, max_bytes=2000)
    for i in range(4):
        store.put(sha(i), sha(100), "archive", bytes([i]) * 400)
    assert store.get(sha(0), sha(100), "archive") is not None  # read: now the newest
    for i in range(4, 7):  # each entry is 441 bytes: every put from here evicts one
        store.put(sha(i), sha(100), "archive", bytes([i]) * 400)
        assert store.total_bytes <= 2000
    on_disk = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(tmp_path) for f in files
    )
    assert on_disk == store.total_bytes <= 2000
    assert store.stats.evicted == 3
    assert store.get(sha(0), sha(100), "archive") == bytes([0]) * 400  # kept: recently read
    for i in (1, 2, 3):
        assert store.get(sha(i), sha(100), "archive") is None  # the oldest went
    assert store.get(sha(6), sha(100), "archive") == bytes([6]) * 400  # the newest stays


def test_entry_larger_than_the_bound_is_not_stored(tmp_path):
    store = PatchStore(tmp_path, max_bytes=100)
    assert not store.put(sha(1), sha(2), "archive", b"x" * 200)
    assert store.stats.too_large == 1 and len(store) == 0
    assert store.get(sha(1), sha(2), "archive") is None


def test_new_store_counts_disk_and_removes_stale_temporaries(tmp_path):
    first = PatchStore(tmp_path)
    first.put(sha(1), sha(2), "archive", b"a" * 300)
    first.put(sha(3), sha(4), "binary", b"")
    shard = os.path.dirname(_entry(first, sha(1), sha(2)))
    stale = os.path.join(shard, ".leftover.abc.tmp")  # a writer that crashed mid-write
    with open(stale, "wb") as f:
        f.write(b"half")
    foreign = os.path.join(shard, "README")
    with open(foreign, "wb") as f:
        f.write(b"not an entry")
    second = PatchStore(tmp_path)
    assert len(second) == 2 and second.total_bytes == first.total_bytes
    assert not os.path.exists(stale) and os.path.exists(foreign)  # foreign files left alone


def test_write_failure_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = PatchStore(blocker)
    assert store.put(sha(1), sha(2), "archive", b"patch") is False
    assert store.stats.write_errors == 1
    assert store.get(sha(1), sha(2), "archive") is None


def test_delete(tmp_path):
    store = PatchStore(tmp_path)
    store.put(sha(1), sha(2), "archive", b"patch")
    assert store.delete(sha(1), sha(2), "archive") and not store.delete(sha(1), sha(2), "archive")
    assert len(store) == 0 and store.total_bytes == 0


@pytest.mark.parametrize(
    "args",
    [
        (b"short", sha(2), "archive"),
        (sha(1), "ab" * 32, "archive"),
        (sha(1), sha(2), "../../etc"),
        (sha(1), sha(2), "Archive"),
        (sha(1), sha(2), ""),
    ],
)
def test_bad_keys_are_refused(tmp_path, args):
    store = PatchStore(tmp_path)
    with pytest.raises(InvalidArgumentError):
        store.get(*args)
    with pytest.raises(InvalidArgumentError):
        store.put(*args, b"x")


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1"])
def test_max_bytes_is_validated(tmp_path, bad):
    with pytest.raises(InvalidArgumentError):
        PatchStore(tmp_path, max_bytes=bad)


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 11), st.integers(0, 700)), min_size=1, max_size=40
    ),
    bound=st.integers(200, 3000),
)
def test_bound_and_disk_agree_property(tmp_path_factory, ops, bound):
    """Any sequence of puts and gets: the total never exceeds the bound, what the store counts
    is what is on disk, and every entry it answers is the last one put for that key."""
    root = tmp_path_factory.mktemp("bound")
    store = PatchStore(root, max_bytes=bound)
    last: dict[int, bytes] = {}
    for is_put, key, size in ops:
        if is_put:
            data = bytes([key]) * size
            if store.put(sha(key), sha(99), "archive", data):
                last[key] = data
        else:
            got = store.get(sha(key), sha(99), "archive")
            assert got is None or got == last[key]
        assert store.total_bytes <= bound
        on_disk = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files
        )
        assert on_disk == store.total_bytes
    assert PatchStore(root, max_bytes=bound).total_bytes == store.total_bytes
