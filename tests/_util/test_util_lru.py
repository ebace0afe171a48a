"""registry_core._util.LRU: the one locked LRU (entry and byte bounds)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core._util import LRU


def test_entry_bound_evicts_least_recently_used() -> None:
    lru: LRU[str, int] = LRU(max_entries=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3
    assert len(lru) == 2


def test_byte_bound_counts_weights_and_refuses_oversized() -> None:
    lru: LRU[str, bytes] = LRU(max_bytes=10)
    assert lru.put("a", b"12345")
    assert lru.put("b", b"12345")
    assert lru.size == 10
    assert lru.put("c", b"1")
    assert "a" not in lru and lru.size == 6
    assert not lru.put("big", b"x" * 11)
    assert "big" not in lru and lru.size == 6


def test_replacing_a_key_updates_its_weight() -> None:
    lru: LRU[str, bytes] = LRU(max_bytes=100)
    lru.put("a", b"x" * 60)
    lru.put("a", b"x" * 10)
    assert lru.size == 10 and len(lru) == 1
    assert lru.pop("a") == b"x" * 10 and lru.size == 0
    assert lru.pop("a") is None


def test_oversized_replacement_drops_the_old_value() -> None:
    lru: LRU[str, bytes] = LRU(max_bytes=4)
    lru.put("a", b"abc")
    lru.put("a", b"abcdef")
    assert "a" not in lru and lru.size == 0


def test_needs_a_bound() -> None:
    with pytest.raises(ValueError):
        LRU()


def test_custom_weigh_and_both_bounds() -> None:
    lru: LRU[int, str] = LRU(max_entries=3, max_bytes=100, weigh=lambda v: 40)
    for i in range(5):
        lru.put(i, "v")
    assert len(lru) == 2 and lru.size == 80  # the byte bound bites first


@given(st.lists(st.tuples(st.integers(0, 20), st.binary(max_size=30)), max_size=200))
def test_bounds_hold_for_any_sequence(ops: list[tuple[int, bytes]]) -> None:
    lru: LRU[int, bytes] = LRU(max_entries=8, max_bytes=64)
    for key, value in ops:
        lru.put(key, value)
        assert len(lru) <= 8
        assert lru.size <= 64
        assert lru.size == sum(len(lru.get(k) or b"") for k in range(21) if k in lru)


def test_shared_across_threads() -> None:
    lru: LRU[int, bytes] = LRU(max_entries=50, max_bytes=1000)
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        start.wait()
        for i in range(2000):
            lru.put((seed * 7919 + i) % 97, b"x" * (i % 40))
            lru.get(i % 97)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lru) <= 50 and lru.size <= 1000
    assert lru.size == sum(len(v) for k in range(97) if (v := lru.get(k)) is not None)
