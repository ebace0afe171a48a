"""Which cached files to drop when the proxy's cache is over its bound, sans-IO.

An :class:`EvictionPolicy` only keeps the state it needs (sizes, recency, counts...) from the
events the cache reports; it never touches the disk. The cache asks it for victims when an
insert would exceed ``max_cache_bytes`` and deletes what it names. :class:`LRUEviction` (least
recently used, weighted by bytes) is the default; other policies plug in by implementing the
same four methods.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, runtime_checkable

__all__ = ["EvictionPolicy", "LRUEviction"]


@runtime_checkable
class EvictionPolicy(Protocol):
    """The cache's eviction decisions. ``key``: a cached file's path relative to the cache
    (``<project>/<filename>``); ``now``: the proxy's clock (seconds, monotonic within a run)."""

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
    """Least recently used first, by bytes."""

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

    def __len__(self) -> int:
        return len(self._order)
