"""MemoryStorage: artifacts held in a dict (tests, demos, registries that keep blobs elsewhere)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import DigestMismatchError, DuplicateFileError, InvalidArgumentError
from ._protocol import ArtifactInfo, validate_path
from ._types import content_type_for

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Artifacts held in a dict; every method answers from memory (``nonblocking``)."""

    nonblocking = True

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[bytes, ArtifactInfo]] = {}
        self._by_sha: dict[bytes, str] = {}
        for path, data in (files or {}).items():
            self.replace(path, data)

    def replace(self, path: str, data: bytes) -> ArtifactInfo:
        """Store (or replace) an artifact: for tests that change files behind the server."""
        if validate_path(path) is None:
            raise InvalidArgumentError(f"invalid artifact path {path!r}")
        data = bytes(data)
        info = ArtifactInfo(
            path, len(data), hashlib.sha256(data).digest(), content_type_for(path), time.time_ns()
        )
        with self._lock:
            old = self._files.get(path)
            if old is not None and self._by_sha.get(old[1].sha256) == path:
                del self._by_sha[old[1].sha256]
            self._files[path] = (data, info)
            self._by_sha[info.sha256] = path
        return info

    def put(
        self, path: str, data: bytes | BinaryIO, *, sha256: bytes | None = None
    ) -> ArtifactInfo:
        """Store an immutable artifact (see :class:`~registry_core.storage.WritableStorage`)."""
        if validate_path(path) is None:
            raise InvalidArgumentError(f"invalid artifact path {path!r}")
        raw = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        digest = hashlib.sha256(raw).digest()
        if sha256 is not None and digest != sha256:
            raise DigestMismatchError(
                f"{path}: the bytes have SHA-256 {digest.hex()}, expected {sha256.hex()}"
            )
        with self._lock:
            old = self._files.get(path)
        if old is not None:
            if old[1].sha256 == digest:
                return old[1]
            raise DuplicateFileError(f"{path} exists with other bytes; files are immutable")
        return self.replace(path, raw)

    def delete(self, path: str) -> bool:
        with self._lock:
            old = self._files.pop(path, None)
            if old is not None and self._by_sha.get(old[1].sha256) == path:
                del self._by_sha[old[1].sha256]
        return old is not None

    def walk(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._files))

    def stat(self, path: str) -> ArtifactInfo | None:
        entry = self._files.get(path)
        return entry[1] if entry else None

    def read(self, path: str) -> bytes:
        entry = self._files.get(path)
        if entry is None:
            raise FileNotFoundError(path)
        return entry[0]

    def open(self, path: str) -> BinaryIO:
        return io.BytesIO(self.read(path))  # shares the bytes until written to

    def find_by_sha256(self, sha256: bytes) -> str | None:
        path = self._by_sha.get(sha256)
        if path is not None and path in self._files and self._files[path][1].sha256 == sha256:
            return path
        return None
