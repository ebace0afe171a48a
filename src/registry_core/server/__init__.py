"""The registry side: an ASGI app serving artifacts (ETags, digests, deltas, Alt-Svc) and ``serve``.

:class:`MultiTenantApp` serves every tenant of a configuration (tenant resolution,
authentication once per request, rate limits, the uniform 404); :class:`IndexApp` one index.

hypercorn is imported only when a server is started, so importing this package stays cheap.
"""

from __future__ import annotations

from ._app import RegistryApp
from ._auth_middleware import PRINCIPAL_KEY, TENANT_KEY, AuthMiddleware
from ._index_app import IndexApp
from ._patch_store import PatchStore, PatchStoreStats, RedisPatchCache, SharedPatchCacheStats
from ._serve import (
    ServerHandle,
    ServerLimits,
    make_self_signed,
    self_signed_certificate,
    serve,
    start_server,
)
from ._storage import ArtifactInfo, DirectoryStorage, MemoryStorage, Storage
from ._tenancy import MultiTenantApp, TenantRuntime, build_app

__all__ = [
    "PRINCIPAL_KEY",
    "TENANT_KEY",
    "ArtifactInfo",
    "AuthMiddleware",
    "DirectoryStorage",
    "IndexApp",
    "MemoryStorage",
    "MultiTenantApp",
    "PatchStore",
    "PatchStoreStats",
    "RedisPatchCache",
    "RegistryApp",
    "ServerHandle",
    "ServerLimits",
    "SharedPatchCacheStats",
    "Storage",
    "TenantRuntime",
    "build_app",
    "make_self_signed",
    "self_signed_certificate",
    "serve",
    "start_server",
]
