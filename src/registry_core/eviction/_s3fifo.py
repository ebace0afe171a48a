"""S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23), byte-aware,
sans-IO.

Three FIFO queues: a small one (10 % of the bytes) that new objects enter, a main one (the rest)
and a ghost one (keys only, 90 % of the bytes' worth of recently evicted keys). Evicting from
the small queue moves an object accessed at least ``move_to_main_threshold`` times to the main
queue and sends the others to the ghost; an object coming back while its key is in the ghost
goes straight to the main queue. The main queue is a CLOCK with a 2-bit counter. One-hit
wonders (most objects in skewed traffic) leave quickly through the small queue.

Details follow libCacheSim's ``S3FIFO.c`` (the reference the bench compares against): a
threshold of 2, insertion into the main queue while the small one is full and nothing has been
evicted yet, and the main queue evicted first when it is over its share. One deviation: libCacheSim
refuses objects at least as large as the small queue; a policy here cannot refuse an insert, so
they enter the small queue and leave at the next eviction from it.
"""

from __future__ import annotations

from collections import OrderedDict

from ..errors import InvalidArgumentError

__all__ = ["S3FIFOEviction"]


class S3FIFOEviction:
    """S3-FIFO by bytes. ``capacity_bytes``: the cache's bound (the queues' shares are taken of
    it); None: of the bytes held when eviction starts (the cache is full then)."""

    name = "s3fifo"

    def __init__(
        self,
        capacity_bytes: int | None = None,
        *,
        small_ratio: float = 0.10,
        ghost_ratio: float = 0.90,
        move_to_main_threshold: int = 2,
    ) -> None:
        if capacity_bytes is not None and capacity_bytes < 1:
            raise InvalidArgumentError(f"capacity_bytes must be >= 1, not {capacity_bytes!r}")
        if not 0.0 < small_ratio < 1.0 or not 0.0 <= ghost_ratio <= 10.0:
            raise InvalidArgumentError(
                f"small_ratio must be in (0, 1) and ghost_ratio in [0, 10], "
                f"not {small_ratio!r}, {ghost_ratio!r}"
            )
        if move_to_main_threshold < 1:
            raise InvalidArgumentError("move_to_main_threshold must be >= 1")
        self.capacity_bytes = capacity_bytes
        self.small_ratio = small_ratio
        self.ghost_ratio = ghost_ratio
        self.threshold = move_to_main_threshold
        self._small: OrderedDict[str, int] = OrderedDict()  # oldest first
        self._main: OrderedDict[str, int] = OrderedDict()
        self._ghost: OrderedDict[str, int] = OrderedDict()
        self._freq: dict[str, int] = {}
        self.small_bytes = 0
        self.main_bytes = 0
        self.ghost_bytes = 0
        self._has_evicted = False

    @property
    def total_bytes(self) -> int:
        return self.small_bytes + self.main_bytes

    def _capacity(self) -> int:
        return self.capacity_bytes if self.capacity_bytes is not None else self.total_bytes

    def record_insert(self, key: str, size: int, now: float) -> None:
        if key in self._freq:  # stored again without a remove: an access with a new size
            queue = self._small if key in self._small else self._main
            delta = size - queue[key]
            queue[key] = size
            if queue is self._small:
                self.small_bytes += delta
            else:
                self.main_bytes += delta
            self.record_access(key, now)
            return
        small_cap = int(self._capacity() * self.small_ratio)
        ghost_size = self._ghost.pop(key, None)
        self._trim_ghost()  # after the look-up: as if the key had left the ghost at the miss
        if ghost_size is not None:
            self.ghost_bytes -= ghost_size
            self._main[key] = size
            self.main_bytes += size
        elif not self._has_evicted and self.small_bytes >= small_cap:
            self._main[key] = size
            self.main_bytes += size
        else:
            self._small[key] = size
            self.small_bytes += size
        self._freq[key] = 0

    def record_access(self, key: str, now: float) -> None:
        f = self._freq.get(key)
        if f is not None and f < 3:
            self._freq[key] = f + 1

    def record_remove(self, key: str) -> None:
        if self._freq.pop(key, None) is None:
            return
        size = self._small.pop(key, None)
        if size is not None:
            self.small_bytes -= size
        else:
            self.main_bytes -= self._main.pop(key)

    def _to_ghost(self, key: str, size: int) -> None:
        """Remember an evicted key. The ghost is trimmed at the next insert, not here: the
        insert that follows an eviction is the miss that caused it, and its key must be looked
        up in the ghost as it was before this eviction (libCacheSim looks it up first)."""
        if size > int(self._capacity() * self.ghost_ratio):
            return
        self._ghost[key] = size
        self.ghost_bytes += size

    def _trim_ghost(self) -> None:
        cap = int(self._capacity() * self.ghost_ratio)
        while self.ghost_bytes > cap and self._ghost:
            self.ghost_bytes -= self._ghost.popitem(last=False)[1]

    def _evict_small(self) -> str | None:
        while self._small:
            key, size = self._small.popitem(last=False)
            self.small_bytes -= size
            if self._freq[key] >= self.threshold:
                self._main[key] = size
                self.main_bytes += size
                self._freq[key] = 0
            else:
                del self._freq[key]
                self._to_ghost(key, size)
                return key
        return None

    def _evict_main(self) -> str | None:
        main, freq = self._main, self._freq
        while main:
            key = next(iter(main))
            f = freq[key]
            if f >= 1:
                main.move_to_end(key)
                freq[key] = f - 1
            else:
                self.main_bytes -= main.pop(key)
                del freq[key]
                return key
        return None

    def choose_victims(self, need_bytes: int) -> list[str]:
        victims: list[str] = []
        freed = 0
        while freed < need_bytes and (self._small or self._main):
            self._has_evicted = True
            cap = self._capacity()
            main_cap = cap - int(cap * self.small_ratio)
            size_before = self.total_bytes
            if self.main_bytes > main_cap or not self._small:
                key = self._evict_main()
            else:
                key = self._evict_small()
            if key is not None:
                victims.append(key)
                freed += size_before - self.total_bytes
        return victims

    def __contains__(self, key: object) -> bool:
        return key in self._freq

    def __len__(self) -> int:
        return len(self._freq)
