"""Where artifacts live: the storage protocol, a directory and an in-memory store.

The server reads through :class:`Storage`; the index publishes through
:class:`WritableStorage` (immutable files, atomic puts, digest-checked). An S3-compatible
store (the ops issue) implements the same protocols.
"""

from __future__ import annotations

from ._directory import STATE_DIR, DirectoryStorage
from ._memory import MemoryStorage
from ._protocol import ArtifactInfo, Storage, WritableStorage, validate_path
from ._types import content_type_for

__all__ = [
    "STATE_DIR",
    "ArtifactInfo",
    "DirectoryStorage",
    "MemoryStorage",
    "Storage",
    "WritableStorage",
    "content_type_for",
    "validate_path",
]
