"""The incremental build cache: content-hash keys, a local store and remote tiers.

``cache_key`` hashes a build's inputs; ``LocalStore`` is a content-addressed directory with LRU
eviction; ``RedisStore`` is the remote tier (``redis`` is imported only when one is made);
``BuildCache`` puts them together behind the ``INCREMENTAL_CACHE`` flag, and ``BuildCache.run``
caches a whole command (its outputs, exit status and stdout/stderr) under an action key, in the
Remote Execution API's ``ActionResult`` format over ``ActionTier``s (``LocalActionTier``,
``RedisActionTier``, and the Bazel HTTP remote cache). ``StatCache`` remembers file digests by
stat tuple. ``RedisLock`` is a lease with fencing numbers over a RedisStore (the shared patch
cache's single-flight). See docs/cache.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._action import ACTION_SCHEMA, Action, InputFile, compute_action
from ._cache import BuildCache, CacheStats, TierStats
from ._key import cache_key
from ._local import LocalStore
from ._lock import RedisLock
from ._reapi import (
    ActionResult,
    Digest,
    OutputFile,
    decode_action_result,
    encode_action_result,
)
from ._redis import RedisStore
from ._run import RunResult
from ._statcache import FileDigest, StatCache
from ._tiers import ActionTier, LocalActionTier, RedisActionTier

if TYPE_CHECKING:
    from ._bazel import BazelHTTPTier, BazelTierStats


def __getattr__(name: str) -> Any:
    """BazelHTTPTier and BazelTierStats load on first use (ssl, ipaddress...: a local
    ``registry-core cache run`` does not pay for them)."""
    if name in ("BazelHTTPTier", "BazelTierStats"):
        from . import _bazel

        return getattr(_bazel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTION_SCHEMA",
    "Action",
    "ActionResult",
    "ActionTier",
    "BazelHTTPTier",
    "BazelTierStats",
    "BuildCache",
    "CacheStats",
    "Digest",
    "FileDigest",
    "InputFile",
    "LocalActionTier",
    "LocalStore",
    "OutputFile",
    "RedisActionTier",
    "RedisLock",
    "RedisStore",
    "RunResult",
    "StatCache",
    "TierStats",
    "cache_key",
    "compute_action",
    "decode_action_result",
    "encode_action_result",
]
