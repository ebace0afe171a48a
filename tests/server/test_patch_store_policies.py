"""PatchStore with each eviction policy: the bound holds and the disk agrees for any sequence
of puts and gets, a SIEVE store keeps an entry read since it was written, a custom policy plugs
in, and a restarted store hands what it finds to its policy oldest first."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.eviction import POLICIES, LRUEviction, SieveEviction, make_policy
from registry_core.server._patch_store import PatchStore


def sha(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def _on_disk(root) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 11), st.integers(0, 700)), min_size=1, max_size=40
    ),
    bound=st.integers(200, 3000),
)
def test_bound_and_disk_agree_for_each_policy(tmp_path_factory, name, ops, bound):
    root = tmp_path_factory.mktemp(name)
    store = PatchStore(root, max_bytes=bound, policy=make_policy(name, capacity_bytes=bound))
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
        assert _on_disk(root) == store.total_bytes
        assert len(store.policy) == len(store)  # type: ignore[arg-type]


def test_sieve_store_keeps_an_entry_read_since_written(tmp_path):
    store = PatchStore(tmp_path, max_bytes=2000, policy=SieveEviction())
    for i in range(4):  # 441 bytes each
        store.put(sha(i), sha(100), "archive", bytes([i]) * 400)
    assert store.get(sha(0), sha(100), "archive")  # the oldest, read: its bit is set
    store.put(sha(4), sha(100), "archive", bytes([4]) * 400)  # over 2000: evict to 1800
    assert store.get(sha(0), sha(100), "archive") == bytes([0]) * 400
    assert store.get(sha(1), sha(100), "archive") is None
    assert store.stats.evicted == 1 and store.total_bytes <= 1800


def test_custom_policy_and_restart_order(tmp_path):
    class Recording(LRUEviction):
        def __init__(self) -> None:
            super().__init__()
            self.inserted: list[str] = []

        def record_insert(self, key, size, now):
            self.inserted.append(os.path.basename(key)[:4])
            super().record_insert(key, size, now)

    store = PatchStore(tmp_path, max_bytes=10_000)
    paths = []
    for i in range(3):
        store.put(sha(i), sha(100), "archive", b"x" * 100)
        paths.append(store._path(sha(i), sha(100), "archive"))
    for age, path in enumerate(reversed(paths)):  # make the first written the newest on disk
        os.utime(path, ns=(10**18 + age * 10**9, 10**18 + age * 10**9))
    policy = Recording()
    PatchStore(tmp_path, max_bytes=10_000, policy=policy, clock=lambda: 5.0)
    assert policy.inserted == [sha(i).hex()[:4] for i in (2, 1, 0)]
