"""DirectoryStorage: artifacts are the regular files under a directory.

The store's private state (the index database, computed patches, upload staging) lives in
``root/.registry-core/`` (:attr:`DirectoryStorage.state_dir`): a hidden name, so it is never
served and never walked as an artifact.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mod
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .._util import AtomicFile
from ..errors import DigestMismatchError, DuplicateFileError, InvalidArgumentError
from ._protocol import ArtifactInfo, validate_path
from ._types import content_type_for

__all__ = ["STATE_DIR", "DirectoryStorage"]

_HASH_BLOCK = 1 << 20
#: Name of the hidden directory under the root that holds the store's private state.
STATE_DIR = ".registry-core"


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

    # -- writing (the index publishes through these) ----------------------------------------

    @property
    def state_dir(self) -> Path:
        """``root/.registry-core``: private state (database, patches, staging), never served."""
        path = self.root / STATE_DIR
        path.mkdir(exist_ok=True)
        return path

    def put(
        self, path: str, data: bytes | BinaryIO, *, sha256: bytes | None = None
    ) -> ArtifactInfo:
        """Store an immutable artifact atomically (:class:`~registry_core.storage.WritableStorage`).

        The bytes are written to a hidden temporary file in the target's directory, hashed as
        they are copied, fsynced, then hard-linked to ``path`` (never replacing a file).
        """
        clean = validate_path(path)
        if clean is None or clean != path:
            raise InvalidArgumentError(f"invalid artifact path {path!r}")
        full = os.path.join(self._root, *path.split("/"))
        parent = os.path.realpath(os.path.dirname(full))
        if parent != self._root and not parent.startswith(self._root_prefix):
            raise InvalidArgumentError(f"artifact path {path!r} escapes the storage root")
        os.makedirs(os.path.dirname(full), exist_ok=True)
        h = hashlib.sha256()
        try:
            with AtomicFile(full, fsync=True, overwrite=False) as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    h.update(data)
                    out.write(data)
                else:
                    while block := data.read(_HASH_BLOCK):
                        h.update(block)
                        out.write(block)
                if sha256 is not None and h.digest() != sha256:
                    raise DigestMismatchError(
                        f"{path}: the bytes have SHA-256 {h.hexdigest()}, expected {sha256.hex()}"
                    )
        except FileExistsError:
            existing = self.stat(path)
            if existing is not None and existing.sha256 == h.digest():
                return existing
            raise DuplicateFileError(
                f"{path} exists with other bytes; files are immutable"
            ) from None
        info = self.stat(path)
        if info is None or info.sha256 != h.digest():  # replaced behind us: say so
            raise DuplicateFileError(f"{path} changed while it was being stored")
        return info

    def delete(self, path: str) -> bool:
        full = self._file(path)
        if full is None:
            return False
        try:
            os.unlink(full)
        except FileNotFoundError:
            return False
        self._forget(path)
        return True

    def walk(self) -> Iterator[str]:
        """Every regular file under the root (hidden names and symlinks leaving it excluded)."""
        pending = [self._root]
        root_len = len(self._root) + 1
        while pending:
            directory = pending.pop()
            try:
                entries = self._scandir(directory)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                except OSError:
                    continue
                rel = entry.path[root_len:].replace(os.sep, "/")
                if self._file(rel) is not None:
                    yield rel

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
        seen = {rel for rel in self.walk() if self.stat(rel) is not None}
        with self._lock:
            gone = [p for p in self._meta if p not in seen]
        for p in gone:
            self._forget(p)
        return len(seen)

    def __len__(self) -> int:
        """Artifacts indexed so far."""
        return len(self._meta)
