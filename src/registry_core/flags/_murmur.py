"""MurmurHash3 x86_32 in pure Python, and Unleash's gradual-rollout bucket.

Unleash clients place a user in a rollout bucket with
``murmur3_x86_32(f"{group_id}:{user_id}", seed=0) % 100 + 1``; using the same function here means
a registry that already runs Unleash sees the same users in the same buckets.

Strings are hashed as UTF-8 (as Unleash's Python, Go and Java clients do; ASCII ids bucket the
same in every Unleash SDK). When the optional ``mmh3`` package (C) is installed, buckets are
computed with it (the hash 30 to 60 times faster); the result is identical, and
``MURMUR_BACKEND`` says which one is in use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache

__all__ = [
    "MURMUR_BACKEND",
    "murmur3_32",
    "rollout_bucket",
    "rollout_bucket_mmh3",
    "rollout_bucket_python",
]

_MASK = 0xFFFFFFFF
_unpackers: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 of ``data`` as an unsigned 32-bit integer."""
    m = _MASK
    h = seed & m
    n = len(data)
    nblocks = n >> 2
    if nblocks:
        unpack = _unpackers.get(nblocks)
        if unpack is None:  # one little-endian unpack of all 4-byte blocks at once
            unpack = _unpackers.setdefault(nblocks, struct.Struct(f"<{nblocks}I").unpack_from)
        for k in unpack(data):
            k = (k * 0xCC9E2D51) & m
            k = (((k << 15) | (k >> 17)) & m) * 0x1B873593 & m
            h ^= k
            h = ((((h << 13) | (h >> 19)) & m) * 5 + 0xE6546B64) & m
    rem = n & 3
    if rem:
        tail = nblocks << 2
        k = data[tail]
        if rem > 1:
            k |= data[tail + 1] << 8
            if rem > 2:
                k |= data[tail + 2] << 16
        k = (k * 0xCC9E2D51) & m
        h ^= (((k << 15) | (k >> 17)) & m) * 0x1B873593 & m
    h ^= n
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & m
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & m
    return h ^ (h >> 16)


def rollout_bucket_python(group: str, key: str, seed: int = 0) -> int:
    """:func:`rollout_bucket` computed with the pure-Python :func:`murmur3_32`."""
    return murmur3_32(f"{group}:{key}".encode("utf-8", "surrogatepass"), seed) % 100 + 1


_mmh3_hash: Callable[..., int] | None
try:  # optional C implementation of the same function
    from mmh3 import hash as _mmh3_hash
except ImportError:  # depends on the environment (tests force this path in a subprocess)
    _mmh3_hash = None


def rollout_bucket_mmh3(group: str, key: str, seed: int = 0) -> int:
    """:func:`rollout_bucket` computed with the ``mmh3`` C extension (when installed)."""
    if _mmh3_hash is None:
        raise ImportError("the optional 'mmh3' package is not installed: pip install mmh3")
    data = f"{group}:{key}".encode("utf-8", "surrogatepass")
    return _mmh3_hash(data, seed, False) % 100 + 1


MURMUR_BACKEND = "mmh3" if _mmh3_hash is not None else "python"

#: Unleash's normalized value of ``key`` in ``group``: an integer in 1..100. A key is in a
#: rollout of ``p`` percent when ``rollout_bucket(group, key) <= p``. The pure-Python path is
#: cached: it costs microseconds per key and the same keys come back.
rollout_bucket: Callable[..., int] = (
    rollout_bucket_mmh3
    if _mmh3_hash is not None
    else lru_cache(maxsize=65536)(rollout_bucket_python)
)
