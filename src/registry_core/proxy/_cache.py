"""The proxy's file cache on disk: bounded by bytes, atomic writes, state rebuilt at start.

Layout under the cache directory: ``files/<project>/<filename>`` (distribution files and their
``.metadata`` files, counted against the bound) and ``pages/<project>.json`` (the upstream's
project pages with their ETags, small, not counted). Files appear whole or not at all
(:func:`registry_core._util.atomic_write`: a hidden temporary file in the same directory, then a
rename); hidden names are temporaries of an interrupted write, never counted and removed at
start. Only bytes that matched the upstream page's SHA-256 are ever stored.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from .._util import atomic_write
from ..errors import InvalidArgumentError
from ._eviction import EvictionPolicy, LRUEviction

__all__ = ["FileCache", "safe_filename"]

_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!~-]{0,254}$")
_PROJECT = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,200}[a-z0-9])?$")


def safe_filename(name: str) -> bool:
    """Whether ``name`` may be a file name in the cache (no separators, no hidden names)."""
    return bool(_FILENAME.match(name)) and ".." not in name


def safe_project(name: str) -> bool:
    """Whether ``name`` is a normalized project name usable as a directory."""
    return bool(_PROJECT.match(name))


class FileCache:
    """Files of projects, bounded by ``max_bytes`` with ``policy`` choosing what to evict.

    Thread-safe (the proxy does its file I/O on worker threads). ``clock``: time source given
    to the policy.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int,
        policy: EvictionPolicy | None = None,
        clock: Callable[[], float],
    ) -> None:
        if max_bytes <= 0:
            raise InvalidArgumentError(f"max_cache_bytes must be positive, not {max_bytes!r}")
        self.root = Path(root)
        self.files_dir = self.root / "files"
        self.pages_dir = self.root / "pages"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.pages_dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.policy: EvictionPolicy = policy if policy is not None else LRUEviction()
        self.clock = clock
        self._sizes: dict[str, int] = {}
        #: key -> sha256 hex its bytes were checked against in this process (dropped with it)
        self.verified: dict[str, str] = {}
        self._lock = threading.Lock()
        self.total = 0
        self.evictions = 0
        self._rebuild()

    # -- state -------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Count what is on disk (oldest first for the policy); remove leftover temporaries."""
        found: list[tuple[float, str, int]] = []
        for project_dir in self.files_dir.iterdir():
            if project_dir.name.startswith(".") or not project_dir.is_dir():
                continue
            for f in project_dir.iterdir():
                if f.name.startswith("."):
                    if f.name.endswith(".tmp"):
                        with contextlib.suppress(OSError):
                            f.unlink()
                    continue
                if not f.is_file() or not safe_filename(f.name):
                    continue
                st = f.stat()
                found.append((st.st_mtime, f"{project_dir.name}/{f.name}", st.st_size))
        for _, key, size in sorted(found):
            self._sizes[key] = size
            self.total += size
            self.policy.record_insert(key, size, self.clock())
        for tmp in self.pages_dir.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
        if self.total > self.max_bytes:
            with self._lock:
                self._evict(self.total - self.max_bytes)

    def path(self, key: str) -> Path:
        project, _, filename = key.partition("/")
        if not safe_project(project) or not safe_filename(filename):
            raise InvalidArgumentError(f"not a cache key: {key!r}")
        return self.files_dir / project / filename

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def size(self, key: str) -> int | None:
        """Bytes of the cached file at ``key`` (None when not cached)."""
        return self._sizes.get(key)

    def keys(self, project: str) -> list[str]:
        """Cached file names of ``project``."""
        prefix = project + "/"
        with self._lock:
            return [k[len(prefix) :] for k in self._sizes if k.startswith(prefix)]

    def touch(self, key: str) -> None:
        with self._lock:
            if key in self._sizes:
                self.policy.record_access(key, self.clock())

    # -- I/O (call from worker threads) ------------------------------------------------------

    def read(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The cached bytes, or None when not cached (or larger than ``max_bytes``)."""
        size = self._sizes.get(key)
        if size is None or (max_bytes is not None and size > max_bytes):
            return None
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            self.remove(key)
            return None

    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` (already verified) at ``key``, evicting to stay under the bound.

        Returns False when ``data`` alone is over the bound (nothing stored, nothing evicted).
        """
        path = self.path(key)
        if len(data) > self.max_bytes:
            return False
        with self._lock:
            if key in self._sizes:  # replaced: the old bytes go first
                self._drop(key)
            need = self.total + len(data) - self.max_bytes
            if need > 0:
                self._evict(need)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        with self._lock:
            self.total += len(data) - self._sizes.get(key, 0)
            self._sizes[key] = len(data)
            if self.total > self.max_bytes:  # concurrent inserts raced past the bound
                self._evict(self.total - self.max_bytes)
            self.policy.record_insert(key, len(data), self.clock())
        return True

    def remove(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self.verified.pop(key, None)
        size = self._sizes.pop(key, None)
        if size is not None:
            self.total -= size
        self.policy.record_remove(key)
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def _evict(self, need: int) -> None:
        """Drop the policy's victims (only keys it was told about: a file being inserted is
        registered with it after this)."""
        for key in self.policy.choose_victims(need):
            if key not in self._sizes:
                continue
            self._drop(key)
            self.evictions += 1
