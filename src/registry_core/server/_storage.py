"""Where artifacts come from: a small storage protocol and a directory implementation.

A registry plugs its own store in by implementing :class:`Storage` (three methods). Paths are
relative, ``/``-separated and never contain ``..``; the app validates them before asking.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import InvalidArgumentError

__all__ = ["ArtifactInfo", "DirectoryStorage", "Storage", "validate_path"]


@dataclass(frozen=True)
class ArtifactInfo:
    """Metadata of one stored artifact; ``sha256`` is of its exact bytes."""

    path: str
    size: int
    sha256: bytes
    content_type: str = "application/octet-stream"


@runtime_checkable
class Storage(Protocol):
    """What :class:`~registry_core.server.RegistryApp` needs from a store."""

    def stat(self, path: str) -> ArtifactInfo | None:
        """Metadata of the artifact at ``path``, or None when there is none."""

    def read(self, path: str) -> bytes:
        """The artifact's bytes (raise FileNotFoundError if it vanished)."""

    def find_by_sha256(self, sha256: bytes) -> str | None:
        """Path of an artifact whose bytes have this SHA-256 (the base of a delta), or None."""


def validate_path(raw: str) -> str | None:
    """Normalise a URL path into a storage path; None for anything that could escape the root."""
    path = raw.lstrip("/")
    if not path or "\x00" in path or "\\" in path or len(path) > 1024:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    return path


class DirectoryStorage:
    """Artifacts are the regular files under ``root`` (hidden files, escaping symlinks refused).

    SHA-256 digests are computed once per (size, mtime) and cached; ``find_by_sha256`` keeps an
    index that is refreshed when a lookup misses, at most once per ``rescan_interval`` seconds.
    """

    def __init__(self, root: str | os.PathLike[str], *, rescan_interval: float = 1.0) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InvalidArgumentError(f"storage root {str(self.root)!r} is not a directory")
        self._lock = threading.Lock()
        self._meta: dict[str, tuple[int, int, ArtifactInfo]] = {}
        self._by_sha: dict[bytes, str] = {}
        self._rescan_interval = rescan_interval
        self._last_scan = float("-inf")

    def _file(self, path: str) -> Path | None:
        if validate_path(path) is None:
            return None
        full = (self.root / path).resolve()
        if self.root not in full.parents or not full.is_file():
            return None
        return full

    def stat(self, path: str) -> ArtifactInfo | None:
        full = self._file(path)
        if full is None:
            return None
        st = full.stat()
        with self._lock:
            cached = self._meta.get(path)
        if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return cached[2]
        h = hashlib.sha256()
        with open(full, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        info = ArtifactInfo(path, st.st_size, h.digest(), ctype)
        with self._lock:
            self._meta[path] = (st.st_size, st.st_mtime_ns, info)
            self._by_sha[info.sha256] = path
        return info

    def read(self, path: str) -> bytes:
        full = self._file(path)
        if full is None:
            raise FileNotFoundError(path)
        return full.read_bytes()

    def find_by_sha256(self, sha256: bytes) -> str | None:
        import time

        with self._lock:
            path = self._by_sha.get(sha256)
        if path is not None:
            info = self.stat(path)
            if info is not None and info.sha256 == sha256:
                return path
        now = time.monotonic()
        if now - self._last_scan < self._rescan_interval:
            return None
        self._last_scan = now
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                info = self.stat(rel)
                if info is not None and info.sha256 == sha256:
                    return rel
        return None


class MemoryStorage:
    """Artifacts held in a dict (tests, demos, registries that keep blobs elsewhere)."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, tuple[bytes, ArtifactInfo]] = {}
        self._by_sha: dict[bytes, str] = {}
        for path, data in (files or {}).items():
            self.put(path, data)

    def put(self, path: str, data: bytes) -> ArtifactInfo:
        """Store (or replace) an artifact."""
        if validate_path(path) is None:
            raise InvalidArgumentError(f"invalid artifact path {path!r}")
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        info = ArtifactInfo(path, len(data), hashlib.sha256(data).digest(), ctype)
        with self._lock:
            self._files[path] = (bytes(data), info)
            self._by_sha[info.sha256] = path
        return info

    def stat(self, path: str) -> ArtifactInfo | None:
        entry = self._files.get(path)
        return entry[1] if entry else None

    def read(self, path: str) -> bytes:
        entry = self._files.get(path)
        if entry is None:
            raise FileNotFoundError(path)
        return entry[0]

    def find_by_sha256(self, sha256: bytes) -> str | None:
        path = self._by_sha.get(sha256)
        if path is not None and path in self._files and self._files[path][1].sha256 == sha256:
            return path
        return None
