"""Replay a request sequence through a policy as a cache of a given size would (sans-IO).

What benchmarks and tests use to measure a policy without a disk: a miss inserts the object
(evicting the policy's victims first), a hit reports an access. Objects larger than the whole
cache are never stored (and count as misses), as in libCacheSim.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import InvalidArgumentError
from ._policy import EvictionPolicy

__all__ = ["ReplayResult", "replay"]


@dataclass
class ReplayResult:
    """Counts of one replay; ``hits``: per request, whether it hit (when ``record=True``)."""

    requests: int = 0
    misses: int = 0
    bytes_requested: int = 0
    bytes_missed: int = 0
    evictions: int = 0
    hits: list[bool] = field(default_factory=list)

    @property
    def miss_ratio(self) -> float:
        return self.misses / self.requests if self.requests else 0.0

    @property
    def byte_miss_ratio(self) -> float:
        return self.bytes_missed / self.bytes_requested if self.bytes_requested else 0.0


def replay(
    policy: EvictionPolicy,
    requests: Iterable[tuple[str, int, float]],
    capacity_bytes: int,
    *,
    record: bool = False,
    warmup: int = 0,
) -> ReplayResult:
    """Feed ``(key, size, now)`` requests to a cache of ``capacity_bytes`` run by ``policy``.

    The first ``warmup`` requests fill the cache but are not counted. Raises
    InvalidArgumentError when the policy names a key the cache does not hold, names one twice,
    or frees too little while holding more (a broken policy is an error, not a figure)."""
    if capacity_bytes < 1:
        raise InvalidArgumentError(f"capacity_bytes must be >= 1, not {capacity_bytes!r}")
    sizes: dict[str, int] = {}
    total = 0
    out = ReplayResult()
    for i, (key, size, now) in enumerate(requests):
        counted = i >= warmup
        if counted:
            out.requests += 1
            out.bytes_requested += size
        held = sizes.get(key)
        if held is not None and held == size:
            policy.record_access(key, now)
            if counted and record:
                out.hits.append(True)
            continue
        if counted:
            out.misses += 1
            out.bytes_missed += size
            if record:
                out.hits.append(False)
        if held is not None:  # the object changed size: replaced
            del sizes[key]
            total -= held
            policy.record_remove(key)
        if size > capacity_bytes:
            continue
        need = total + size - capacity_bytes
        if need > 0:
            victims = policy.choose_victims(need)
            if len(set(victims)) != len(victims):
                raise InvalidArgumentError(f"policy named a key twice: {victims!r:.200}")
            for v in victims:
                vs = sizes.pop(v, None)
                if vs is None:
                    raise InvalidArgumentError(f"policy named {v!r}, which is not cached")
                total -= vs
                policy.record_remove(v)
                out.evictions += 1
            if total + size > capacity_bytes and sizes:
                raise InvalidArgumentError(
                    f"policy freed too little: {need} bytes needed, {len(sizes)} objects left"
                )
        sizes[key] = size
        total += size
        policy.record_insert(key, size, now)
    return out
