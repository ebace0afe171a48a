"""Where artifacts come from: a small storage protocol and two implementations.

A registry plugs its own store in by implementing :class:`Storage` (three methods). Paths are
relative, ``/``-separated and never contain ``..``; the app validates them before asking.

Two optional members let the app do better, and are used when present:

- ``open(path)`` returning a binary file object (``read(n)``, ``seek``, ``close``): full bodies
  and ranges are streamed from it in pieces instead of read whole with ``read(path)``;
- ``nonblocking = True``: the store answers from memory, so the app calls it on the event loop
  instead of in a worker thread (every other store is called off the loop).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from ..errors import InvalidArgumentError
from ._types import content_type_for

__all__ = ["ArtifactInfo", "DirectoryStorage", "MemoryStorage", "Storage", "validate_path"]

_HASH_BLOCK = 1 << 20


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

    A file's SHA-256 is computed once per (size, mtime, inode) and kept. ``find_by_sha256``
    builds an index of every file's digest at its first call (one walk of the tree, hashing
    each file once) and then answers from it: a hit costs one ``stat`` to check the file did
    not change, a miss costs nothing. The index follows every :meth:`stat` (a new or
    rewritten file is re-indexed when it is next asked for); :meth:`refresh` re-walks the
    tree (hashing only new or changed files), for registries that add files behind the
    server's back and want them usable as delta bases before anyone asks for them.
    ``rescan_interval``: when not None, a miss also triggers :meth:`refresh`, at most once per
    that many seconds (off by default: a miss must stay cheap for anonymous clients). Only one
    thread walks at a time; lookups made meanwhile answer from the part already indexed
    instead of waiting.

    Every method may block on the file system; :class:`~registry_core.server.RegistryApp`
    calls them in worker threads.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, rescan_interval: float | None = None
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InvalidArgumentError(f"storage root {str(self.root)!r} is not a directory")
        self._root = str(self.root)
        self._root_prefix = os.path.join(self._root, "")
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._meta: dict[str, tuple[tuple[int, int, int], ArtifactInfo]] = {}
        self._by_sha: dict[bytes, str] = {}
        self._indexed = False
        self._rescan_interval = rescan_interval
        self._last_scan = float("-inf")

    # -- file-system access (one place each, so tests can count them) -----------------------

    def _stat(self, full: str) -> os.stat_result:
        return os.stat(full)

    def _scandir(self, directory: str) -> list[os.DirEntry[str]]:
        with os.scandir(directory) as it:
            return list(it)

    def _file(self, path: str) -> str | None:
        if validate_path(path) is None:
            return None
        # os.path, not pathlib: pathlib interns every component, so a flood of unique
        # missing paths would grow the interpreter's intern table
        full = os.path.realpath(os.path.join(self._root, path))
        if not full.startswith(self._root_prefix):
            return None
        return full

    # -- the protocol --------------------------------------------------------------------------

    def stat(self, path: str) -> ArtifactInfo | None:
        full = self._file(path)
        if full is None:
            return None
        try:
            st = self._stat(full)
        except OSError:
            self._forget(path)
            return None
        import stat as stat_mod

        if not stat_mod.S_ISREG(st.st_mode):
            self._forget(path)
            return None
        return self._info(path, full, st)

    def _info(self, path: str, full: str, st: os.stat_result) -> ArtifactInfo | None:
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._meta.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        h = hashlib.sha256()
        try:
            with open(full, "rb") as f:
                while block := f.read(_HASH_BLOCK):
                    h.update(block)
        except OSError:
            self._forget(path)
            return None
        info = ArtifactInfo(path, st.st_size, h.digest(), content_type_for(path), st.st_mtime_ns)
        with self._lock:
            if cached is not None and self._by_sha.get(cached[1].sha256) == path:
                del self._by_sha[cached[1].sha256]
            self._meta[path] = (key, info)
            self._by_sha[info.sha256] = path
        return info

    def _forget(self, path: str) -> None:
        with self._lock:
            cached = self._meta.pop(path, None)
            if cached is not None and self._by_sha.get(cached[1].sha256) == path:
                del self._by_sha[cached[1].sha256]

    def read(self, path: str) -> bytes:
        full = self._file(path)
        if full is None:
            raise FileNotFoundError(path)
        with open(full, "rb") as f:
            return f.read()

    def open(self, path: str) -> BinaryIO:
        """The artifact opened for reading (raise FileNotFoundError if it is not one)."""
        full = self._file(path)
        if full is None:
            raise FileNotFoundError(path)
        return open(full, "rb")

    def find_by_sha256(self, sha256: bytes) -> str | None:
        if not self._indexed:
            self._build_index()
        with self._lock:
            path = self._by_sha.get(sha256)
        if path is not None:
            info = self.stat(path)  # one stat: still there, unchanged?
            if info is not None and info.sha256 == sha256:
                return path
        if self._rescan_interval is not None:
            now = time.monotonic()
            if now - self._last_scan >= self._rescan_interval and self._index_lock.acquire(
                blocking=False
            ):
                try:
                    self._walk()
                    self._indexed = True
                finally:
                    self._index_lock.release()
                with self._lock:
                    return self._by_sha.get(sha256)
        return None

    # -- the index -------------------------------------------------------------------------------

    @property
    def indexed(self) -> bool:
        """Whether the first walk of the tree has completed."""
        return self._indexed

    def _build_index(self) -> None:
        # Only the first caller walks; callers arriving during the walk do not wait for it
        # (a server's worker threads would all stall behind one long walk): they answer from
        # what has been indexed so far, as a miss does.
        if not self._index_lock.acquire(blocking=False):
            return
        try:
            if not self._indexed:
                self._walk()
                self._indexed = True
        finally:
            self._index_lock.release()

    def refresh(self) -> int:
        """Re-walk the tree: index new and changed files, drop vanished ones; returns the count."""
        with self._index_lock:
            n = self._walk()
            self._indexed = True
            return n

    def _walk(self) -> int:
        self._last_scan = time.monotonic()
        seen: set[str] = set()
        pending = [str(self.root)]
        root_len = len(str(self.root)) + 1
        while pending:
            directory = pending.pop()
            try:
                entries = self._scandir(directory)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = entry.path[root_len:].replace(os.sep, "/")
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                except OSError:
                    continue
                if self.stat(rel) is not None:
                    seen.add(rel)
        with self._lock:
            gone = [p for p in self._meta if p not in seen]
        for p in gone:
            self._forget(p)
        return len(seen)

    def __len__(self) -> int:
        """Artifacts indexed so far."""
        return len(self._meta)


class MemoryStorage:
    """Artifacts held in a dict (tests, demos, registries that keep blobs elsewhere)."""

    nonblocking = True

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
