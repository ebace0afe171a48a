"""The storage protocol: where artifacts live, as the server and the index see them.

A registry plugs its own store in by implementing :class:`Storage` (three methods); the index
needs :class:`WritableStorage` (three more). Paths are relative, ``/``-separated and never
contain ``..`` or a hidden component (``.x``); :func:`validate_path` is the one check.

Two optional members let the server do better, and are used when present:

- ``open(path)`` returning a binary file object (``read(n)``, ``seek``, ``close``): full bodies
  and ranges are streamed from it in pieces instead of read whole with ``read(path)``;
- ``nonblocking = True``: the store answers from memory, so the app calls it on the event loop
  instead of in a worker thread (every other store is called off the loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

__all__ = ["ArtifactInfo", "Storage", "WritableStorage", "validate_path"]


@dataclass(frozen=True)
class ArtifactInfo:
    """Metadata of one stored artifact; ``sha256`` is of its exact bytes.

    ``mtime_ns``: when the artifact was stored (nanoseconds since the epoch), when known; the
    app uses it to order versions whose file names carry no comparable version.
    """

    path: str
    size: int
    sha256: bytes
    content_type: str = "application/octet-stream"
    mtime_ns: int | None = None


@runtime_checkable
class Storage(Protocol):
    """What :class:`~registry_core.server.RegistryApp` needs from a store."""

    def stat(self, path: str) -> ArtifactInfo | None:
        """Metadata of the artifact at ``path``, or None when there is none."""

    def read(self, path: str) -> bytes:
        """The artifact's bytes (raise FileNotFoundError if it vanished)."""

    def find_by_sha256(self, sha256: bytes) -> str | None:
        """Path of an artifact whose bytes have this SHA-256 (the base of a delta), or None."""


@runtime_checkable
class WritableStorage(Storage, Protocol):
    """A store the index can publish into. Files are immutable once stored."""

    def put(
        self, path: str, data: bytes | BinaryIO, *, sha256: bytes | None = None
    ) -> ArtifactInfo:
        """Store ``data`` (bytes or a binary file read to its end) at ``path`` atomically: it
        appears whole or not at all. With ``sha256`` the bytes are checked as they are copied
        and :class:`~registry_core.errors.DigestMismatchError` is raised with nothing stored.
        If ``path`` holds the same bytes already its info is returned; other bytes raise
        :class:`~registry_core.errors.DuplicateFileError`."""

    def delete(self, path: str) -> bool:
        """Remove the artifact at ``path``; False when there was none."""

    def walk(self) -> Iterator[str]:
        """Every artifact path in the store (hidden names excluded), in no particular order."""


def validate_path(raw: str) -> str | None:
    """Normalise a URL path into a storage path; None for anything that could escape the root
    or name a hidden file (the store's private state lives under hidden names)."""
    path = raw.lstrip("/")
    if not path or "\x00" in path or "\\" in path or len(path) > 1024:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    return path
