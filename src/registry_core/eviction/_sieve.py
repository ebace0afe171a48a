"""SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI'24), byte-aware, sans-IO.

One FIFO queue (new objects at the head) with a visited bit per object and a hand. A hit only
sets the bit (no list move, so hits are cheap and lock-light); eviction walks the hand from the
tail toward the head, clearing set bits, and evicts the first object whose bit is clear; the
hand stays where it stopped. Objects that survive keep their place in the queue, which is what
separates SIEVE from CLOCK. Every event is O(1) amortized.
"""

from __future__ import annotations

__all__ = ["SieveEviction"]


class _Node:
    __slots__ = ("key", "newer", "older", "size", "visited")

    def __init__(self, key: str, size: int) -> None:
        self.key = key
        self.size = size
        self.visited = False
        self.newer: _Node | None = None
        self.older: _Node | None = None


class SieveEviction:
    """SIEVE by bytes: :meth:`choose_victims` evicts (forgets) what it names."""

    name = "sieve"

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self._head: _Node | None = None  # newest
        self._tail: _Node | None = None  # oldest
        self._hand: _Node | None = None
        self.total_bytes = 0

    def _unlink(self, node: _Node) -> None:
        if self._hand is node:
            self._hand = node.newer
        if node.newer is not None:
            node.newer.older = node.older
        else:
            self._head = node.older
        if node.older is not None:
            node.older.newer = node.newer
        else:
            self._tail = node.newer
        node.newer = node.older = None
        del self._nodes[node.key]
        self.total_bytes -= node.size

    def record_insert(self, key: str, size: int, now: float) -> None:
        node = self._nodes.get(key)
        if node is not None:  # stored again without a remove: an access with a new size
            self.total_bytes += size - node.size
            node.size = size
            node.visited = True
            return
        node = _Node(key, size)
        node.older = self._head
        if self._head is not None:
            self._head.newer = node
        else:
            self._tail = node
        self._head = node
        self._nodes[key] = node
        self.total_bytes += size

    def record_access(self, key: str, now: float) -> None:
        node = self._nodes.get(key)
        if node is not None:
            node.visited = True

    def record_remove(self, key: str) -> None:
        node = self._nodes.get(key)
        if node is not None:
            self._unlink(node)

    def choose_victims(self, need_bytes: int) -> list[str]:
        victims: list[str] = []
        freed = 0
        while freed < need_bytes and self._tail is not None:
            node = self._hand if self._hand is not None else self._tail
            while node.visited:
                node.visited = False
                node = node.newer if node.newer is not None else self._tail
            victims.append(node.key)
            freed += node.size
            self._hand = node  # _unlink moves it to the next newer object
            self._unlink(node)
        return victims

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)
