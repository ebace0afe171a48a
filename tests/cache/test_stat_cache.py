"""StatCache: no rehash when nothing changed, rehash on any stat change, git's racy rule."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.cache import StatCache
from registry_core.cache._statcache import _Table, hash_file
from registry_core.errors import InvalidArgumentError

HOUR = 3600 * 10**9


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aged(path: Path, data: bytes) -> Path:
    """``path`` with ``data`` and an mtime an hour ago (not racy)."""
    path.write_bytes(data)
    old = time.time_ns() - HOUR + 123_456_789  # sub-second part: the fine granularity applies
    os.utime(path, ns=(old, old))
    return path


def test_warm_lookup_does_not_rehash(tmp_path: Path) -> None:
    files = [aged(tmp_path / f"f{i}", bytes([i]) * (i + 1)) for i in range(20)]
    sc = StatCache(tmp_path / "stat.bin")
    first = sc.digests([str(f) for f in files])
    assert sc.hashed == 20
    assert first[str(files[3])].sha256 == sha(b"\x03" * 4)
    again = StatCache(tmp_path / "stat.bin")  # another process: from the file
    assert again.digests([str(f) for f in files]) == first
    assert again.hashed == 0
    assert len(again) == 20


def test_a_touched_file_is_rehashed_with_the_same_digest(tmp_path: Path) -> None:
    f = aged(tmp_path / "a", b"content")
    sc = StatCache(tmp_path / "stat.bin")
    d1 = sc.digest(f)
    os.utime(f)  # touch: new mtime and ctime, same content
    d2 = sc.digest(f)
    assert sc.hashed == 2 and d1 == d2


def test_one_changed_byte_is_seen(tmp_path: Path) -> None:
    f = aged(tmp_path / "a", b"content")
    sc = StatCache(tmp_path / "stat.bin")
    sc.digest(f)
    st = os.stat(f)
    f.write_bytes(b"contenT")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: ctime differs
    assert sc.digest(f).sha256 == sha(b"contenT")


def test_racy_entries_are_rehashed(tmp_path: Path) -> None:
    """An entry recorded within the granularity of the file's mtime is not trusted."""
    f = tmp_path / "a"
    f.write_bytes(b"v1")
    now = time.time_ns()
    os.utime(f, ns=(now, now - 5_000_000))  # written 5 ms before it is recorded: racy
    sc = StatCache(tmp_path / "stat.bin", granularity_ns=20_000_000)
    assert sc.is_racy(now - 5_000_000, now)
    sc.digest(f, now_ns=now)
    sc.digest(f, now_ns=now)
    assert sc.hashed == 2  # the racy entry was not used
    # Re-recorded later, it is no longer racy.
    sc.digest(f, now_ns=now + 10**9)
    sc.digest(f, now_ns=now + 10**9)
    assert sc.hashed == 3


def test_racy_rule_protects_a_rewrite_with_an_identical_stat_tuple(tmp_path: Path) -> None:
    """Simulate git's scenario: the cached digest is stale but the stat tuple matches.

    The stale digest is planted with the file's real stat tuple; recorded within the
    granularity it must not be used, recorded well after the mtime it is (by design).
    """
    f = tmp_path / "a"
    f.write_bytes(b"new")
    st = os.stat(f)
    sc = StatCache(None)
    tup = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    sc._extra[str(f)] = (tup, sha(b"old"), st.st_mtime_ns + 1_000_000)  # 1 ms later: racy
    assert sc.digest(f).sha256 == sha(b"new")


def test_whole_second_mtimes_use_the_coarse_granularity(tmp_path: Path) -> None:
    sc = StatCache(None, granularity_ns=20_000_000)
    t = 1_700_000_000 * 10**9
    assert sc.is_racy(t, t + 1_500_000_000)  # 1.5 s later: racy on a 1-2 s filesystem
    assert not sc.is_racy(t + 1, t + 1_500_000_000)  # sub-second mtime: the 20 ms rule
    assert not sc.is_racy(t, t + 3 * 10**9)


def test_concurrent_writers_merge(tmp_path: Path) -> None:
    a = aged(tmp_path / "a", b"a")
    b = aged(tmp_path / "b", b"b")
    s1 = StatCache(tmp_path / "stat.bin")
    s2 = StatCache(tmp_path / "stat.bin")
    s1.digest(a)
    s2.digest(b)  # s2 read the file before s1 wrote? it re-reads under the lock and merges
    fresh = StatCache(tmp_path / "stat.bin")
    fresh.digests([a, b])
    assert fresh.hashed == 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_file_costs_a_rehash_only(tmp_path: Path, damage: str) -> None:
    f = aged(tmp_path / "a", b"data")
    db = tmp_path / "stat.bin"
    StatCache(db).digest(f)
    raw = bytearray(db.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 2] ^= 1
    elif damage == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    else:
        raw = bytearray()
    db.write_bytes(bytes(raw))
    sc = StatCache(db)
    assert sc.digest(f).sha256 == sha(b"data")
    assert sc.hashed == 1
    assert StatCache(db).digest(f).sha256 == sha(b"data")  # rewritten whole


def test_large_files_and_threads(tmp_path: Path) -> None:
    data = [os.urandom((3 << 20) + i) for i in range(3)]  # above the one-read size
    files = [aged(tmp_path / f"big{i}", d) for i, d in enumerate(data)]
    sc = StatCache(None, threads=2)
    out = sc.digests(files)
    assert [out[str(f)].sha256 for f in files] == [sha(d) for d in data]
    assert hash_file(files[0])[0] == sha(data[0])


def test_modes_and_bad_paths(tmp_path: Path) -> None:
    f = aged(tmp_path / "x", b"#!/bin/sh\n")
    os.chmod(f, 0o755)
    assert StatCache(None).digest(f).is_executable
    with pytest.raises(InvalidArgumentError):
        StatCache(None).digest(tmp_path)
    with pytest.raises(InvalidArgumentError):
        StatCache(None, granularity_ns=-1)


def test_forget_and_counters(tmp_path: Path) -> None:
    f = aged(tmp_path / "a", b"a")
    sc = StatCache(tmp_path / "stat.bin")
    sc.digest(f)
    sc.bump(hits=2, saved_ms=5)
    sc.bump(hits=1)
    assert sc.counters() == {"hits": 3, "saved_ms": 5}
    assert sc.forget() == 1
    assert len(StatCache(tmp_path / "stat.bin")) == 0 and sc.counters() == {}


u64 = st.integers(0, (1 << 64) - 1)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
rows = st.dictionaries(
    st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=30).map(
        lambda s: "/" + s
    ),
    st.tuples(
        st.tuples(u64, u64, u64, i64, i64),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        i64,
    ),
    max_size=20,
)


@given(rows)
def test_file_format_round_trip(table: dict) -> None:  # type: ignore[type-arg]
    data = _Table.dump_rows(table)
    parsed = _Table.parse(data)
    assert parsed is not None and parsed.to_dict() == table


@given(rows, st.integers(0, 10_000), st.integers(1, 255))
def test_damaged_file_format_is_refused(table: dict, where: int, flip: int) -> None:  # type: ignore[type-arg]
    data = bytearray(_Table.dump_rows(table))
    data[where % len(data)] ^= flip
    assert _Table.parse(bytes(data)) is None


@given(st.binary(max_size=200))
def test_random_bytes_are_not_a_table(data: bytes) -> None:
    assert _Table.parse(data) is None
