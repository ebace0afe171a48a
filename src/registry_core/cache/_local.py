"""LocalStore: a content-addressed directory with a SQLite index and LRU eviction by bytes.

Layout under ``root``::

    objects/ab/cdef...   the value whose SHA-256 is abcdef... (written once, never modified)
    tmp/                 values being written (same filesystem, so os.replace is atomic)
    tmp.lock             writers hold a shared flock on it while they have a temp file
    index.sqlite         keys(key -> digest), objects(digest, size, seq)

``seq`` is a logical access clock kept in the index (the last access gets max(seq)+1), so LRU
order is exact across threads and processes, whatever the wall clock resolution. Every object
file is moved into place, and every object is unlinked, only while the SQLite write lock is
held, so a writer and an evictor in two processes cannot leave the index naming a file that
another process just removed. Reads verify the SHA-256; a corrupted or missing object is a
miss, its file and index rows are removed, and the ``corrupt`` counter is raised.

Opening reconciles the directory with the index, under the write lock: the index is checked
(``PRAGMA quick_check``), temp files of writers that died are removed (only when no writer holds
``tmp.lock``), object files the index does not name (a writer killed between moving the
file in and committing, or an index deleted by hand) are removed, and index rows whose file is
gone or has the wrong size are dropped. Every SQLite error, at open or later, is a
:class:`~registry_core.errors.CacheError`; a failed open closes its connection, so it never
leaves a lock behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .._util._atomic import default_file_mode
from ..errors import CacheError, InvalidArgumentError, InvalidTypeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: temp files are not swept there
    fcntl = None  # type: ignore[assignment]

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
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WRITERS = "tmp.lock"


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
    """Content-addressed local cache of at most ``max_bytes`` of values; thread and process safe.

    ``lock_timeout`` bounds how long an operation waits for another process's index lock
    before raising :class:`CacheError` (SQLite's busy timeout).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        fsync: bool = True,
        lock_timeout: float = 30.0,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise InvalidArgumentError(f"max_bytes must be a positive int, got {max_bytes!r}")
        if (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, (int, float))
            or not 0 <= lock_timeout < float("inf")
        ):
            raise InvalidArgumentError(
                f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}"
            )
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._fsync = fsync
        self._lock_timeout = float(lock_timeout)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._index = self.root / "index.sqlite"
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
        self.swept = 0  # temp files of dead writers removed at open
        self.orphans = 0  # object files the index did not name, removed at open
        self.dropped = 0  # index rows whose object was missing or truncated, dropped at open
        try:
            self._reconcile()
        except BaseException:
            self.close()  # a failed open keeps no connection (and so no lock) behind
            raise

    # -- index --------------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error, doing: str) -> CacheError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "malformed" in text or "not a database" in text or "corrupt" in text
        ):
            return CacheError(
                f"the cache index {self._index} is corrupt ({text}) while {doing}; delete "
                f"the cache directory {self.root} to start afresh (a cache holds nothing "
                "that cannot be rebuilt)"
            )
        if "locked" in text or "busy" in text:
            return CacheError(
                f"the cache index {self._index} stayed locked by another process for "
                f"{self._lock_timeout:g} s while {doing} ({text}); retry, or raise lock_timeout"
            )
        return CacheError(f"cache index {self._index}: {doing} failed: {text}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(
                    self._index,
                    timeout=self._lock_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                if conn is not None:
                    with suppress(sqlite3.Error):
                        conn.close()
                raise self._error(exc, "opening it") from exc
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The index for a read, with every SQLite error turned into a CacheError."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc

    @contextmanager
    def _write(self, doing: str = "writing") -> Iterator[sqlite3.Connection]:
        """The index under its cross-process write lock (BEGIN IMMEDIATE) and the thread lock."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc, f"locking it for {doing}") from exc
            try:
                yield conn
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, doing) from exc
                if isinstance(exc, OSError):
                    raise CacheError(f"cache directory {self.root}: {doing} failed: {exc}") from exc
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._error(exc, f"committing {doing}") from exc

    def _rollback(self, conn: sqlite3.Connection) -> None:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if conn.in_transaction:  # could not roll back: drop the connection, and its lock
            with suppress(sqlite3.Error):
                conn.close()
            self._conn = None

    def _path(self, digest: str) -> Path:
        return self._objects / digest[:2] / digest[2:]

    # -- reconciliation at open -----------------------------------------------------------------

    def _reconcile(self) -> None:
        with self._write("reconciling it with the objects directory") as conn:
            check = conn.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise CacheError(
                    f"the cache index {self._index} is corrupt ({check[0][0]!s:.200}); delete "
                    f"the cache directory {self.root} to start afresh"
                )
            swept = self._sweep_tmp()
            rows = dict(conn.execute("SELECT digest, size FROM objects").fetchall())
            orphans = 0
            dropped = 0
            seen: set[str] = set()
            for sub in list(os.scandir(self._objects)):
                if not sub.is_dir(follow_symlinks=False):
                    _unlink(sub.path)
                    orphans += 1
                    continue
                for entry in list(os.scandir(sub.path)):
                    digest = sub.name + entry.name
                    size = rows.get(digest) if _HEX64.fullmatch(digest) else None
                    if size is None:  # not named by the index: a killed writer's, or junk
                        _unlink(entry.path)
                        orphans += 1
                        continue
                    try:
                        actual = entry.stat(follow_symlinks=False).st_size
                        regular = entry.is_file(follow_symlinks=False)
                    except OSError:
                        actual, regular = -1, False
                    seen.add(digest)
                    if not regular or actual != size:  # truncated or replaced: drop it
                        self._drop_object(conn, digest)
                        dropped += 1
            for digest in rows.keys() - seen:  # indexed, but the file is gone
                self._drop_object(conn, digest)
                dropped += 1
            cur = conn.execute("DELETE FROM keys WHERE digest NOT IN (SELECT digest FROM objects)")
            dropped += max(cur.rowcount, 0)
        self.swept, self.orphans, self.dropped = swept, orphans, dropped
        if swept or orphans or dropped:
            log.warning(
                "cache %s reconciled at open: %d temp file(s) of dead writers removed, %d "
                "unindexed object(s) removed, %d index entr(y/ies) without a valid object dropped",
                self.root,
                swept,
                orphans,
                dropped,
            )

    def _sweep_tmp(self) -> int:
        """Remove temp files, only when no writer (in any process) holds ``tmp.lock``."""
        if fcntl is None:  # pragma: no cover - Windows
            return 0
        fd = os.open(self.root / _WRITERS, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.debug("cache %s: a writer is active; temp files not swept", self.root)
                return 0
            swept = 0
            for entry in os.scandir(self._tmp):
                _unlink(entry.path)
                swept += 1
            return swept
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Held while this thread has a temp file: a shared lock the sweep cannot take."""
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        try:
            fd = os.open(self.root / _WRITERS, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as exc:
            raise CacheError(f"cannot write to the cache directory {self._tmp}: {exc}") from exc
        try:
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _touch(conn: sqlite3.Connection, digest: str) -> None:
        conn.execute(
            "UPDATE objects SET seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM objects) "
            "WHERE digest = ?",
            (digest,),
        )

    def _drop_object(self, conn: sqlite3.Connection, digest: str) -> None:
        conn.execute("DELETE FROM keys WHERE digest = ?", (digest,))
        conn.execute("DELETE FROM objects WHERE digest = ?", (digest,))
        with suppress(FileNotFoundError):
            os.unlink(self._path(digest))

    # -- public -------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, verified against its SHA-256, or None."""
        found = self.get_verified(key)
        return None if found is None else found[0]

    def get_verified(self, key: str) -> tuple[bytes, str] | None:
        """(value, its SHA-256 hex, just checked) under ``key``, or None: :meth:`get` with the
        digest, so a caller that needs it does not hash the value a second time."""
        check_key(key)
        with self._read("reading it") as conn:
            row = conn.execute("SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
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
        with self._write("recording an access") as conn:
            self._touch(conn, digest)
        return data, digest

    def _heal(self, key: str, digest: str, *, missing: bool) -> None:
        with self._write("removing a corrupt object") as conn:
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
            log.warning(
                "cache object %s for key %s was %s; removed (treated as a miss)",
                digest,
                key,
                "missing" if missing else "corrupted",
            )

    def put(self, key: str, value: bytes) -> bool:
        """Store ``value`` under ``key``; False when it is larger than ``max_bytes``."""
        return self.put_known(key, value)

    def put_known(
        self, key: str, value: bytes, *, sha256: str | None = None, fsync: bool | None = None
    ) -> bool:
        """:meth:`put`, for a caller that has just checked ``value`` against ``sha256`` (its
        lowercase hex SHA-256: not computed again) and may skip the fsyncs (``fsync=False``:
        a back-fill of what another tier also holds; a torn object is caught by the check on
        every read, dropped and fetched again). ``fsync=None``: the store's setting."""
        check_key(key)
        value = check_value(value)
        if len(value) > self.max_bytes:
            return False
        if sha256 is None:
            digest = hashlib.sha256(value).hexdigest()
        elif isinstance(sha256, str) and _HEX64.fullmatch(sha256):
            digest = sha256
        else:
            raise InvalidArgumentError(f"sha256 must be 64 lowercase hex characters: {sha256!r}")
        sync = self._fsync if fsync is None else bool(fsync)
        path = self._path(digest)
        with self._writing():
            # the slow part, outside the lock (the one-argument call when the store's own
            # fsync setting applies: subclasses in tests override _write_tmp(value))
            tmp: str | None = (
                self._write_tmp(value) if sync == self._fsync else self._write_tmp(value, sync)
            )
            try:
                with self._write("storing a value") as conn:
                    present = conn.execute(
                        "SELECT 1 FROM objects WHERE digest = ?", (digest,)
                    ).fetchone()
                    if present is None or not path.exists():
                        path.parent.mkdir(exist_ok=True)
                        os.replace(tmp, path)  # type: ignore[arg-type]
                        tmp = None
                        if sync:
                            _fsync_dir(path.parent)
                        conn.execute(
                            "INSERT OR REPLACE INTO objects(digest, size, seq) VALUES (?, ?, 0)",
                            (digest, len(value)),
                        )
                    self._touch(conn, digest)
                    old = conn.execute("SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
                    conn.execute(
                        "INSERT OR REPLACE INTO keys(key, digest) VALUES (?, ?)", (key, digest)
                    )
                    if old is not None and old[0] != digest:
                        self._drop_if_unreferenced(conn, old[0])
                    self._evict(conn, keep=digest)
            finally:
                if tmp is not None:
                    with suppress(FileNotFoundError):
                        os.unlink(tmp)
        return True

    def _write_tmp(self, value: bytes, sync: bool | None = None) -> str:
        sync = self._fsync if sync is None else sync
        try:
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        except OSError as exc:
            raise CacheError(f"cannot write to the cache directory {self._tmp}: {exc}") from exc
        try:
            os.fchmod(fd, default_file_mode())  # what a plain open() gives, not 0600
            with os.fdopen(fd, "wb") as f:
                f.write(value)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            with suppress(OSError):
                os.unlink(tmp)
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

    def gc(self, max_bytes: int | None = None) -> int:
        """Evict least recently used objects (and their keys) until at most ``max_bytes``
        (default: the store's ``max_bytes``) remain; the number of objects removed."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidArgumentError(f"max_bytes must be an int >= 0, got {limit!r}")
        removed = 0
        with self._write("collecting garbage") as conn:
            total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM objects").fetchone()[0]
            for digest, size in conn.execute(
                "SELECT digest, size FROM objects ORDER BY seq"
            ).fetchall():
                if total <= limit:
                    break
                self._drop_object(conn, digest)
                removed += 1
                total -= size
        self.evicted += removed
        return removed

    def clear(self) -> int:
        """Remove every key and object; the number of keys removed."""
        with self._write("clearing it") as conn:
            (keys,) = conn.execute("SELECT COUNT(*) FROM keys").fetchone()
            for (digest,) in conn.execute("SELECT digest FROM objects").fetchall():
                self._drop_object(conn, digest)
            conn.execute("DELETE FROM keys")
        return int(keys)

    def delete(self, key: str) -> bool:
        """Remove ``key``; its object goes too when no other key names it."""
        check_key(key)
        with self._write("deleting a key") as conn:
            row = conn.execute("SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM keys WHERE key = ?", (key,))
            self._drop_if_unreferenced(conn, row[0])
        return True

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._read("looking up a key") as conn:
            return conn.execute("SELECT 1 FROM keys WHERE key = ?", (key,)).fetchone() is not None

    def keys_lru(self) -> list[str]:
        """Keys from least to most recently used (the eviction order)."""
        with self._read("listing keys") as conn:
            rows = conn.execute(
                "SELECT k.key FROM keys k JOIN objects o ON o.digest = k.digest "
                "ORDER BY o.seq, k.key"
            ).fetchall()
        return [r[0] for r in rows]

    @property
    def total_bytes(self) -> int:
        """Bytes of the stored objects (each distinct value counted once)."""
        with self._read("summing sizes") as conn:
            total: int = conn.execute("SELECT COALESCE(SUM(size), 0) FROM objects").fetchone()[0]
        return total

    def __len__(self) -> int:
        with self._read("counting keys") as conn:
            count: int = conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
        return count

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with suppress(sqlite3.Error):
                    self._conn.close()
            self._conn = None

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, max_bytes={self.max_bytes})"


def _unlink(path: str | os.PathLike[str]) -> None:
    with suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(path)


def _fsync_dir(directory: Path) -> None:
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
