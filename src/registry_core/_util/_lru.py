"""One locked LRU mapping, bounded by its number of entries, the total weight of its values, or
both. Every cache in registry_core (patch cache, encoded bodies, deflate parameter memo,
session tickets, detector memories) is one of these."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _len(value: object) -> int:
    return len(value)  # type: ignore[arg-type]


class LRU(Generic[K, V]):
    """Thread-safe least-recently-used mapping.

    ``max_entries`` bounds the count, ``max_bytes`` the sum of ``weigh(value)`` (``len`` by
    default); ``None`` leaves that bound off. A value heavier than ``max_bytes`` is not stored.
    """

    def __init__(
        self,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        *,
        weigh: Callable[[V], int] = _len,
    ) -> None:
        if max_entries is None and max_bytes is None:
            raise ValueError("an LRU needs max_entries, max_bytes or both")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._weigh = weigh
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: K, value: V) -> bool:
        """Store ``value``; returns False when it alone exceeds ``max_bytes``."""
        weight = self._weigh(value) if self.max_bytes is not None else 0
        if self.max_bytes is not None and weight > self.max_bytes:
            self.discard(key)
            return False
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._data[key] = (value, weight)
            self._size += weight
            while (self.max_bytes is not None and self._size > self.max_bytes) or (
                self.max_entries is not None and len(self._data) > self.max_entries
            ):
                _, (_, w) = self._data.popitem(last=False)
                self._size -= w
        return True

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            item = self._data.pop(key, None)
            if item is None:
                return default
            self._size -= item[1]
            return item[0]

    def discard(self, key: K) -> None:
        self.pop(key)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._size = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        """Total weight currently held (0 when no ``max_bytes`` bound is set)."""
        return self._size
