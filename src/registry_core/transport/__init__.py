"""The client side: :class:`Transport` (async HTTP/2 + HTTP/3) and :class:`SyncTransport`.

httpx, httpcore and aioquic are imported when this package is imported, never by
``import registry_core`` (the top-level package loads ``Transport`` lazily).
"""

from __future__ import annotations

from .._util import SingleFlight
from ._altsvc import AltService, AltSvcCache, parse_alt_svc
from ._client import ClientOptions, Response, Transport
from ._h3 import H3Connection
from ._policy import Decision, FetchPlan, FetchPolicy
from ._pool import CoalescingPool, ConnectionRecord, cert_covers
from ._retry import RetryPolicy
from ._sync import SyncTransport
from ._throughput import ThroughputEstimate

__all__ = [
    "AltService",
    "AltSvcCache",
    "ClientOptions",
    "CoalescingPool",
    "ConnectionRecord",
    "Decision",
    "FetchPlan",
    "FetchPolicy",
    "H3Connection",
    "Response",
    "RetryPolicy",
    "SingleFlight",
    "SyncTransport",
    "ThroughputEstimate",
    "Transport",
    "cert_covers",
    "parse_alt_svc",
]
