"""Policies by name: what ``--eviction`` and ``[cache] eviction`` choose from."""

from __future__ import annotations

from ..errors import InvalidArgumentError
from ._policy import EvictionPolicy, LRUEviction
from ._s3fifo import S3FIFOEviction
from ._sieve import SieveEviction

__all__ = ["POLICIES", "make_policy"]

#: The simple policies by name (the learned one lives in ``registry_core.ml``: it needs a model).
POLICIES: tuple[str, ...] = ("lru", "sieve", "s3fifo")


def make_policy(name: str, *, capacity_bytes: int | None = None) -> EvictionPolicy:
    """A new policy named ``name`` (one of :data:`POLICIES`). ``capacity_bytes``: the cache's
    bound, which S3-FIFO sizes its queues from (the others ignore it)."""
    key = name.strip().lower().replace("-", "") if isinstance(name, str) else name
    if key == "lru":
        return LRUEviction()
    if key == "sieve":
        return SieveEviction()
    if key == "s3fifo":
        return S3FIFOEviction(capacity_bytes)
    raise InvalidArgumentError(
        f"unknown eviction policy {name!r}: expected one of {', '.join(POLICIES)}"
        + (" (learned needs a model: registry_core.ml.LearnedEviction)" if key == "learned" else "")
    )
