"""MurmurHash3 x86_32 in pure Python, and Unleash's gradual-rollout bucket.

Unleash clients place a user in a rollout bucket with
``murmur3_x86_32(f"{group_id}:{user_id}", seed=0) % 100 + 1``; using the same function here means
a registry that already runs Unleash sees the same users in the same buckets.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["murmur3_32", "rollout_bucket"]

_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_MASK = 0xFFFFFFFF


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 of ``data`` as an unsigned 32-bit integer."""
    h = seed & _MASK
    n = len(data)
    nblocks = n >> 2
    for i in range(0, nblocks << 2, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
        h = ((h << 13) | (h >> 19)) & _MASK
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = nblocks << 2
    rem = n & 3
    k = 0
    if rem == 3:
        k ^= data[tail + 2] << 16
    if rem >= 2:
        k ^= data[tail + 1] << 8
    if rem >= 1:
        k ^= data[tail]
        k = (k * _C1) & _MASK
        k = ((k << 15) | (k >> 17)) & _MASK
        k = (k * _C2) & _MASK
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


@lru_cache(maxsize=65536)
def rollout_bucket(group: str, key: str, seed: int = 0) -> int:
    """Unleash's normalized value of ``key`` in ``group``: an integer in 1..100.

    A key is in a rollout of ``p`` percent when ``rollout_bucket(group, key) <= p``. Cached,
    because the same keys come back on every request.
    """
    return murmur3_32(f"{group}:{key}".encode(), seed) % 100 + 1
