"""The incremental build cache: content-hash keys, a local store and a Redis remote tier.

``cache_key`` hashes a build's inputs; ``LocalStore`` is a content-addressed directory with LRU
eviction; ``RedisStore`` is the remote tier (``redis`` is imported only when one is made);
``BuildCache`` puts them together behind the ``INCREMENTAL_CACHE`` flag. ``RedisLock`` is a
lease with fencing numbers over a RedisStore (the shared patch cache's single-flight).
See docs/cache.md.
"""

from __future__ import annotations

from ._cache import BuildCache, CacheStats, TierStats
from ._key import cache_key
from ._local import LocalStore
from ._lock import RedisLock
from ._redis import RedisStore

__all__ = [
    "BuildCache",
    "CacheStats",
    "LocalStore",
    "RedisLock",
    "RedisStore",
    "TierStats",
    "cache_key",
]
