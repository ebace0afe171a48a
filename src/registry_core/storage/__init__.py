"""Where artifacts live: the storage protocol, a directory, an in-memory store and S3.

The server reads through :class:`Storage`; the index publishes through
:class:`WritableStorage` (immutable files, atomic puts, digest-checked). An S3-compatible
store, :class:`S3Storage`, implements the same protocols (boto3, the ``s3`` extra; its
module is imported on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

from ._directory import STATE_DIR, DirectoryStorage
from ._memory import MemoryStorage
from ._protocol import ArtifactInfo, Storage, WritableStorage, validate_path
from ._types import content_type_for

__all__ = [
    "STATE_DIR",
    "ArtifactInfo",
    "DirectoryStorage",
    "MemoryStorage",
    "S3Storage",
    "S3StorageError",
    "Storage",
    "WritableStorage",
    "content_type_for",
    "validate_path",
]

_LAZY = {"S3Storage": "._s3", "S3StorageError": "._s3"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
