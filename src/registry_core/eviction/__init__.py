"""Cache eviction policies, sans-IO, shared by the server's patch store and the proxy's cache.

``LRUEviction`` (the default), ``SieveEviction`` (NSDI'24) and ``S3FIFOEviction`` (SOSP'23),
all byte-aware and O(1) amortized per event; ``make_policy(name)`` builds one by name;
``replay(policy, requests, capacity_bytes)`` measures one without a disk. The
learned policy is ``registry_core.ml`` (optional extra, behind ``ML_LEARNED_EVICTION``).
"""

from ._make import POLICIES, make_policy
from ._policy import EvictionPolicy, LRUEviction
from ._replay import ReplayResult, replay
from ._s3fifo import S3FIFOEviction
from ._sieve import SieveEviction

__all__ = [
    "POLICIES",
    "EvictionPolicy",
    "LRUEviction",
    "ReplayResult",
    "S3FIFOEviction",
    "SieveEviction",
    "make_policy",
    "replay",
]
