"""LocalStore: a content-addressed directory with a SQLite index and LRU eviction by bytes.

Layout under ``root``::

    objects/ab/cdef...   the value whose SHA-256 is abcdef... (written once, never modified)
    tmp/                 values being written (same filesystem, so os.replace is atomic)
    index.sqlite         keys(key -> digest), objects(digest, size, seq)

``seq`` is a logical access clock kept in the index (the last access gets max(seq)+1), so LRU
order is exact across threads and processes, whatever the wall clock resolution. Every object
file is moved into place, and every object is unlinked, only while the SQLite write lock is
held, so a writer and an evictor in two processes cannot leave the index naming a file that
another process just removed. Reads verify the SHA-256; a corrupted or missing object is a
miss, its file and index rows are removed, and the ``corrupt`` counter is raised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..errors import CacheError, InvalidArgumentError, InvalidTypeError

__all__ = ["LocalStore"]

log = logging.getLogger("registry_core.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    digest TEXT PRIMARY KEY, size INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS objects_seq ON objects(seq);
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL REFERENCES objects(digest));
CREATE INDEX IF NOT EXISTS keys_digest ON keys(digest);
"""
_MAX_KEY = 512


def check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidTypeError(f"cache keys are str (see cache_key), got {type(key).__name__}")
    if not key or len(key) > _MAX_KEY:
        raise InvalidArgumentError(f"cache keys are 1 to {_MAX_KEY} characters, got {len(key)}")
    return key


def check_value(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidTypeError(f"cache values are bytes, got {type(value).__name__}")
    return bytes(value)


class LocalStore:
    """Content-addressed local cache of at most ``max_bytes`` of values; thread and process safe."""

    def __init__(
        self, root: str | os.PathLike[str], *, max_bytes: int = 1 << 30, fsync: bool = True
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise InvalidArgumentError(f"max_bytes must be a positive int, got {max_bytes!r}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the cache directory {self.root}: {exc}") from exc
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.corrupt = 0  # objects found corrupted or missing and removed
        self.evicted = 0  # objects removed by LRU eviction
        with self._write():
            pass  # create the schema now, so a bad root fails at construction

    # -- index --------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            try:
                conn = sqlite3.connect(
                    self.root / "index.sqlite", timeout=30.0, isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise CacheError(
                    f"cannot open the cache index {self.root / 'index.sqlite'}: {exc}; "
                    "delete the cache directory to start afresh"
                ) from exc
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The index under its cross-process write lock (BEGIN IMMEDIATE) and the thread lock."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise CacheError(f"cannot lock the cache index in {self.root}: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise CacheError(f"cannot commit to the cache index: {exc}") from exc

    def _path(self, digest: str) -> Path:
        return self._objects / digest[:2] / digest[2:]

    @staticmethod
    def _touch(conn: sqlite3.Connection, digest: str) -> None:
        conn.execute(
            "UPDATE objects SET seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM objects) "
            "WHERE digest = ?", (digest,),
        )

    def _drop_object(self, conn: sqlite3.Connection, digest: str) -> None:
        conn.execute("DELETE FROM keys WHERE digest = ?", (digest,))
        conn.execute("DELETE FROM objects WHERE digest = ?", (digest,))
        with suppress(FileNotFoundError):
            os.unlink(self._path(digest))

    # -- public -------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, verified against its SHA-256, or None."""
        check_key(key)
        with self._lock:
            try:
                row = self._connection().execute(
                    "SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise CacheError(f"cannot read the cache index: {exc}") from exc
        if row is None:
            return None
        digest = row[0]
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise CacheError(f"cannot read cache object {self._path(digest)}: {exc}") from exc
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            self._heal(key, digest, missing=data is None)
            return None
        with self._write() as conn:
            self._touch(conn, digest)
        return data

    def _heal(self, key: str, digest: str, *, missing: bool) -> None:
        with self._write() as conn:
            # Re-check under the lock: another process may have healed and rewritten it.
            path = self._path(digest)
            try:
                ok = hashlib.sha256(path.read_bytes()).hexdigest() == digest
            except FileNotFoundError:
                ok = False
            if not ok:
                self._drop_object(conn, digest)
                self.corrupt += 1
        if not ok:
            log.warning("cache object %s for key %s was %s; removed (treated as a miss)",
                        digest, key, "missing" if missing else "corrupted")

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value`` under ``key``; False when it is larger than ``max_bytes``."""
        check_key(key)
        value = check_value(value)
        if len(value) > self.max_bytes:
            return False
        digest = hashlib.sha256(value).hexdigest()
        path = self._path(digest)
        tmp = self._write_tmp(value)  # the slow part, outside the lock
        try:
            with self._write() as conn:
                present = conn.execute(
                    "SELECT 1 FROM objects WHERE digest = ?", (digest,)).fetchone()
                if present is None or not path.exists():
                    path.parent.mkdir(exist_ok=True)
                    os.replace(tmp, path)
                    tmp = None
                    conn.execute(
                        "INSERT OR REPLACE INTO objects(digest, size, seq) VALUES (?, ?, 0)",
                        (digest, len(value)))
                self._touch(conn, digest)
                old = conn.execute("SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
                conn.execute("INSERT OR REPLACE INTO keys(key, digest) VALUES (?, ?)",
                             (key, digest))
                if old is not None and old[0] != digest:
                    self._drop_if_unreferenced(conn, old[0])
                self._evict(conn, keep=digest)
        except OSError as exc:
            raise CacheError(f"cannot write cache object {path}: {exc}") from exc
        finally:
            if tmp is not None:
                with _suppress_missing():
                    os.unlink(tmp)
        return True

    def _write_tmp(self, value: bytes) -> str:
        try:
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            with os.fdopen(fd, "wb") as f:
                f.write(value)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            raise CacheError(f"cannot write to the cache directory {self._tmp}: {exc}") from exc
        return tmp

    def _drop_if_unreferenced(self, conn: sqlite3.Connection, digest: str) -> None:
        if conn.execute("SELECT 1 FROM keys WHERE digest = ?", (digest,)).fetchone() is None:
            self._drop_object(conn, digest)

    def _evict(self, conn: sqlite3.Connection, keep: str) -> None:
        total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM objects").fetchone()[0]
        if total <= self.max_bytes:
            return
        for digest, size in conn.execute(
                "SELECT digest, size FROM objects WHERE digest != ? ORDER BY seq", (keep,)
        ).fetchall():
            self._drop_object(conn, digest)
            self.evicted += 1
            total -= size
            if total <= self.max_bytes:
                break

    def delete(self, key: str) -> bool:
        """Remove ``key``; its object goes too when no other key names it."""
        check_key(key)
        with self._write() as conn:
            row = conn.execute("SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM keys WHERE key = ?", (key,))
            self._drop_if_unreferenced(conn, row[0])
        return True

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._connection().execute(
                "SELECT 1 FROM keys WHERE key = ?", (key,)).fetchone() is not None

    def keys_lru(self) -> list[str]:
        """Keys from least to most recently used (the eviction order)."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT k.key FROM keys k JOIN objects o ON o.digest = k.digest "
                "ORDER BY o.seq, k.key").fetchall()
        return [r[0] for r in rows]

    @property
    def total_bytes(self) -> int:
        """Bytes of the stored objects (each distinct value counted once)."""
        with self._lock:
            return self._connection().execute(
                "SELECT COALESCE(SUM(size), 0) FROM objects").fetchone()[0]

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, max_bytes={self.max_bytes})"


@contextmanager
def _suppress_missing() -> Iterator[None]:
    with suppress(FileNotFoundError):
        yield
