"""Remembered actions persisted beside the stat cache (``<stat file>.actions``).

A new StatCache on the same file (a new process, such as each ``registry-core cache run``)
takes the warm fast path; a damaged, truncated or forged file costs the per-file path only,
never a wrong key.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.cache import Action, StatCache, compute_action
from registry_core.cache._statcache import _SNAP_MAGIC

HOUR = 3600 * 10**9
ARGV = ["/bin/sh", "-c", "true"]


class CountingStatCache(StatCache):
    """A StatCache that counts the files looked up one by one (the slow path's work)."""

    looked_up = 0

    def digests_counted(self, paths: Any, **kw: Any) -> Any:
        if not any(str(p).endswith("/sh") for p in paths):  # the tool is looked up every run
            self.looked_up += len(paths)
        return super().digests_counted(paths, **kw)


def tree(root: Path, n: int = 12) -> None:
    old = time.time_ns() - HOUR + 123_456_789
    for i in range(n):
        p = root / "src" / f"d{i % 3}" / f"f{i}.c"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * (i + 3))
        os.utime(p, ns=(old, old))


def action(root: Path, sc: StatCache, **kw: Any) -> Action:
    return compute_action(ARGV, inputs=["src"], cwd=root, stat_cache=sc, **kw)


def warmed(root: Path) -> tuple[Path, str]:
    """A stat file whose ``.actions`` sibling remembers the action; its key."""
    tree(root)
    stat = root / "stat.bin"
    action(root, StatCache(stat))  # hashes
    key = action(root, StatCache(stat)).key  # all trusted: remembered and persisted
    assert (root / "stat.bin.actions").exists()
    return stat, key


def test_a_new_stat_cache_takes_the_fast_path(tmp_path: Path) -> None:
    stat, key = warmed(tmp_path)
    sc = CountingStatCache(stat)
    a = action(tmp_path, sc)
    assert a.key == key
    assert sc.looked_up == 0 and sc.hashed == 0
    assert action(tmp_path, sc) is a  # decoded once, then held in memory


def test_an_edit_after_persisting_is_seen_by_a_new_process(tmp_path: Path) -> None:
    stat, key = warmed(tmp_path)
    (tmp_path / "src" / "d0" / "f0.c").write_bytes(b"changed")
    sc = CountingStatCache(stat)
    a = action(tmp_path, sc)
    assert a.key != key
    assert a.key == action(tmp_path, StatCache(None)).key
    assert sc.looked_up == 1  # only the edited file


def test_a_different_signature_does_not_use_the_entry(tmp_path: Path) -> None:
    stat, key = warmed(tmp_path)
    sc = CountingStatCache(stat)
    a = action(tmp_path, sc, outputs=["out.o"])
    assert a.key != key and sc.looked_up == 12


def _rewrite(path: Path, edit: Any) -> None:
    """Decode the file, let ``edit`` change the entries, write it back with a valid checksum."""
    data = path.read_bytes()
    head = len(_SNAP_MAGIC) + 65
    end = data.index(b"\n", head)
    index = json.loads(data[head:end])
    pos, entries = end + 1, []
    for _sig, _n, length in index:
        entries.append(json.loads(data[pos : pos + length]))
        pos += length
    edit(index, entries)
    blobs = [json.dumps(e).encode() for e in entries]
    for item, blob in zip(index, blobs, strict=True):
        item[2] = len(blob)
    body = json.dumps(index).encode() + b"\n" + b"".join(blobs)
    path.write_bytes(_SNAP_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)


def test_a_forged_entry_that_disagrees_with_its_signature_is_ignored(tmp_path: Path) -> None:
    stat, key = warmed(tmp_path)

    def other_argv(index: Any, entries: Any) -> None:
        entries[0][2][2] = ["/bin/sh", "-c", "false"]  # the action's argv, not the signature's

    _rewrite(tmp_path / "stat.bin.actions", other_argv)
    sc = CountingStatCache(stat)
    assert action(tmp_path, sc).key == key
    assert sc.looked_up == 12


def test_a_wrong_shape_is_ignored(tmp_path: Path) -> None:
    stat, key = warmed(tmp_path)

    def short_stats(index: Any, entries: Any) -> None:
        entries[0][1] = entries[0][1][:-1]

    _rewrite(tmp_path / "stat.bin.actions", short_stats)
    sc = CountingStatCache(stat)
    assert action(tmp_path, sc).key == key
    assert sc.looked_up == 12 and sc.discarded == 1


def test_forget_removes_the_file(tmp_path: Path) -> None:
    stat, _key = warmed(tmp_path)
    StatCache(stat).forget()
    assert not (tmp_path / "stat.bin.actions").exists()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.none() | st.integers(0, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3),
)
def test_damage_costs_the_slow_path_never_a_wrong_key(
    tmp_path_factory: Any, cut: int | None, flips: list[tuple[int, int]]
) -> None:
    root = tmp_path_factory.mktemp("damaged")
    stat, key = warmed(root)
    path = root / "stat.bin.actions"
    data = bytearray(path.read_bytes())
    for at, x in flips:
        data[at % len(data)] ^= x
    if cut is not None:
        del data[cut % len(data) :]
    damaged = bytes(data) != path.read_bytes()
    path.write_bytes(bytes(data))
    sc = CountingStatCache(stat)
    assert action(root, sc).key == key
    if damaged:
        assert sc.looked_up == 12
