"""The pull-through delta proxy: a local index for pip and uv in front of another index.

``registry-core proxy --upstream URL --cache-dir DIR`` runs :func:`run_proxy`; pip and uv
point at ``http://127.0.0.1:3141/simple/``. Pages are cached and revalidated, files fetched
once, as a registry-core delta from an older cached version when the upstream can send one,
and always checked against the SHA-256 the upstream page advertises. :func:`warm` fills the
cache from a requirements file ahead of time (no dependency resolution: list every package).

Importing this package loads httpx only when the proxy first talks to its upstream;
``import registry_core`` never imports it.
"""

from __future__ import annotations

from ._app import ProxyApp, ProxyStats
from ._eviction import EvictionPolicy, LRUEviction
from ._run import run_proxy, start_proxy
from ._warm import WarmReport, parse_requirements, warm

__all__ = [
    "EvictionPolicy",
    "LRUEviction",
    "ProxyApp",
    "ProxyStats",
    "WarmReport",
    "parse_requirements",
    "run_proxy",
    "start_proxy",
    "warm",
]
