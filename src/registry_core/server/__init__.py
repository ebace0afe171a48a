"""The registry side: an ASGI app serving artifacts (ETags, digests, deltas, Alt-Svc) and ``serve``.

hypercorn is imported only when a server is started, so importing this package stays cheap.
"""

from __future__ import annotations

from ._app import RegistryApp
from ._index_app import IndexApp
from ._patch_store import PatchStore, PatchStoreStats
from ._serve import (
    ServerHandle,
    ServerLimits,
    make_self_signed,
    self_signed_certificate,
    serve,
    start_server,
)
from ._storage import ArtifactInfo, DirectoryStorage, MemoryStorage, Storage

__all__ = [
    "ArtifactInfo",
    "DirectoryStorage",
    "IndexApp",
    "MemoryStorage",
    "PatchStore",
    "PatchStoreStats",
    "RegistryApp",
    "ServerHandle",
    "ServerLimits",
    "Storage",
    "make_self_signed",
    "self_signed_certificate",
    "serve",
    "start_server",
]
