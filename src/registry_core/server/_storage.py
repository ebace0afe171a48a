"""Compatibility: the storage classes moved to :mod:`registry_core.storage`."""

from __future__ import annotations

from ..storage import ArtifactInfo, DirectoryStorage, MemoryStorage, Storage, validate_path

__all__ = ["ArtifactInfo", "DirectoryStorage", "MemoryStorage", "Storage", "validate_path"]
