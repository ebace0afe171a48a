"""Which cached files to drop when the proxy's cache is over its bound: the policies now live in
:mod:`registry_core.eviction` (shared with the server's patch store); re-exported here so
``registry_core.proxy.LRUEviction`` and ``EvictionPolicy`` keep working."""

from __future__ import annotations

from ..eviction import EvictionPolicy, LRUEviction, S3FIFOEviction, SieveEviction, make_policy

__all__ = ["EvictionPolicy", "LRUEviction", "S3FIFOEviction", "SieveEviction", "make_policy"]
