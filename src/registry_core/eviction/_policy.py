"""The eviction policy protocol and LRU, sans-IO.

A policy keeps only the state it needs (sizes, recency, counts...) from the events a cache
reports; it never touches the disk or the clock (``now`` comes in as an argument). The cache asks
it for victims when an insert would go over its bound and removes every key it names.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, runtime_checkable

__all__ = ["EvictionPolicy", "LRUEviction"]


@runtime_checkable
class EvictionPolicy(Protocol):
    """A cache's eviction decisions. ``key``: a cached object's name (``<project>/<filename>``
    in the proxy, an entry path in the patch store); ``now``: the cache's clock (seconds,
    monotonic within a run).

    Contract: :meth:`choose_victims` may advance the policy's state (SIEVE's hand, S3-FIFO's
    queues) and forgets what it names; the caller removes every key named and reports it with
    :meth:`record_remove`, which is a no-op for keys the policy no longer holds."""

    def record_insert(self, key: str, size: int, now: float) -> None:
        """``key`` (``size`` bytes) was stored (or found at start, oldest first)."""

    def record_access(self, key: str, now: float) -> None:
        """``key`` was served from the cache or used as a delta base."""

    def record_remove(self, key: str) -> None:
        """``key`` is gone (evicted, found corrupt, replaced)."""

    def choose_victims(self, need_bytes: int) -> list[str]:
        """Keys whose removal frees at least ``need_bytes`` (all of them if that is not
        possible). The file being inserted is never among the keys the policy knows then."""


class LRUEviction:
    """Least recently used first, by bytes. :meth:`choose_victims` is a pure query here (the
    keys stay known until :meth:`record_remove`)."""

    name = "lru"

    def __init__(self) -> None:
        self._order: OrderedDict[str, int] = OrderedDict()

    def record_insert(self, key: str, size: int, now: float) -> None:
        self._order[key] = size
        self._order.move_to_end(key)

    def record_access(self, key: str, now: float) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def record_remove(self, key: str) -> None:
        self._order.pop(key, None)

    def choose_victims(self, need_bytes: int) -> list[str]:
        victims: list[str] = []
        freed = 0
        for key, size in self._order.items():
            if freed >= need_bytes:
                break
            victims.append(key)
            freed += size
        return victims

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)
