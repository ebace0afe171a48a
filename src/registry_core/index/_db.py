"""The index's database: a small interface and its SQLite implementation.

:class:`IndexDB` is everything the :class:`~registry_core.index.Index` service asks of a
database, kept small so another backend (PostgreSQL for several instances) is a short class.
Every method is one transaction: a failed write leaves nothing, and each successful write
bumps :attr:`IndexDB.serial`, which the Simple API turns into ETags.

:class:`SQLiteIndexDB` is the embedded default: one file, WAL journal (readers never wait for
the writer), ``busy_timeout`` so several processes can share it, schema version in
``PRAGMA user_version``. One connection per instance, guarded by a lock, so any thread may call
it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._util._sqlite import prepare
from ..errors import DuplicateFileError, PackageIndexError
from ._model import FileRecord, Project
from ._names import version_key

__all__ = ["SCHEMA_VERSION", "IndexDB", "SQLiteIndexDB"]

SCHEMA_VERSION = 1


@runtime_checkable
class IndexDB(Protocol):
    """What the index service needs from a database. Names are normalized by the caller."""

    @property
    def serial(self) -> int:
        """A counter that increases with every change (never decreases)."""

    def add_file(self, record: FileRecord, metadata: bytes | None, display_name: str) -> FileRecord:
        """Add a file (and its project, named ``display_name``, if new) and its core
        metadata, in one transaction. An existing row of that filename with the same sha256
        is returned instead (nothing changes); with another sha256, DuplicateFileError."""

    def replace_file(self, record: FileRecord, metadata: bytes | None) -> None:
        """Overwrite the row (and metadata) of ``record.filename`` (rebuild: bytes changed)."""

    def remove_file(self, filename: str) -> bool:
        """Delete a file's row and metadata; False when there was none."""

    def file(self, filename: str) -> FileRecord | None:
        """The row of ``filename``, or None."""

    def files(self, project: str | None = None) -> list[FileRecord]:
        """Every file of ``project`` (every file when None), in no particular order."""

    def metadata(self, filename: str) -> bytes | None:
        """The core metadata stored with ``filename``, or None."""

    def project(self, name: str) -> Project | None:
        """The project ``name``, or None."""

    def projects(self) -> list[Project]:
        """Every project, sorted by name."""

    def set_yanked(self, filename: str, reason: str | None) -> bool:
        """Yank (reason a str, "" for none) or unyank (None); False when no such file."""

    def close(self) -> None:
        """Release the connection(s)."""


_SCHEMA = """
CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), serial INTEGER NOT NULL);
INSERT INTO state (id, serial) VALUES (1, 0);
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE files (
    filename TEXT PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects(name),
    version TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('wheel', 'sdist')),
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    upload_time_ns INTEGER NOT NULL,
    requires_python TEXT,
    yanked TEXT,
    metadata_sha256 TEXT,
    tags TEXT NOT NULL DEFAULT '',
    uploader TEXT
);
CREATE INDEX files_project ON files (project);
CREATE TABLE metadata (
    filename TEXT PRIMARY KEY REFERENCES files(filename) ON DELETE CASCADE,
    data BLOB NOT NULL
);
CREATE TABLE tokens (  -- legacy: tokens live in the tenant store now, this is read once
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    scope TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER,
    last_used_ns INTEGER
);
"""

_FILE_COLUMNS = (
    "project, filename, version, kind, path, size, sha256, upload_time_ns, requires_python, "
    "yanked, metadata_sha256, tags, uploader"
)
_TOKEN_COLUMNS = "token_id, secret_sha256, scope, description, created_ns, revoked_ns, last_used_ns"


def _file_row(r: FileRecord) -> tuple[object, ...]:
    return (
        r.project,
        r.filename,
        r.version,
        r.kind,
        r.path,
        r.size,
        r.sha256,
        r.upload_time_ns,
        r.requires_python,
        r.yanked,
        r.metadata_sha256,
        " ".join(sorted(r.tags)),
        r.uploader,
    )


def _file_record(row: Any) -> FileRecord:
    (project, filename, version, kind, path, size, sha, t, rp, yanked, msha, tags, up) = row
    return FileRecord(
        project=project,
        filename=filename,
        version=version,
        kind=kind,
        path=path,
        size=size,
        sha256=sha,
        upload_time_ns=t,
        requires_python=rp,
        yanked=yanked,
        metadata_sha256=msha,
        tags=frozenset(tags.split()) if tags else frozenset(),
        uploader=up,
    )


class SQLiteIndexDB:
    """:class:`IndexDB` in one SQLite file (``":memory:"`` for a throwaway database).

    ``busy_timeout``: seconds a write waits for another process's transaction before failing.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup(busy_timeout)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _setup(self, busy_timeout: float) -> None:
        prepare(
            self._c(),
            self._tx,
            path=self.path,
            busy_timeout=busy_timeout,
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            foreign_keys=True,
            newer=lambda found: PackageIndexError(
                f"{self.path}: index database schema {found} is newer than this "
                f"registry-core understands ({SCHEMA_VERSION}); upgrade registry-core"
            ),
        )

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PackageIndexError("the index database is closed")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front, so a
        read-then-write never fails half-way on another process's commit)."""
        with self._lock:
            c = self._c()
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return self._c().execute(sql, args).fetchall()

    @staticmethod
    def _bump(c: sqlite3.Connection) -> None:
        c.execute("UPDATE state SET serial = serial + 1 WHERE id = 1")

    # -- the interface -------------------------------------------------------------------------

    @property
    def serial(self) -> int:
        return int(self._read("SELECT serial FROM state WHERE id = 1")[0][0])

    def add_file(self, record: FileRecord, metadata: bytes | None, display_name: str) -> FileRecord:
        with self._tx() as c:
            row = c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE filename = ?", (record.filename,)
            ).fetchone()
            if row is not None:
                existing = _file_record(row)
                if existing.sha256 == record.sha256:
                    return existing
                raise DuplicateFileError(
                    f"{record.filename} already exists with other contents; files cannot be "
                    "replaced (upload a new version)"
                )
            c.execute(
                "INSERT OR IGNORE INTO projects (name, display_name, created_ns) VALUES (?, ?, ?)",
                (record.project, display_name, record.upload_time_ns or time.time_ns()),
            )
            try:
                c.execute(
                    f"INSERT INTO files ({_FILE_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                    _file_row(record),
                )
            except sqlite3.IntegrityError as e:  # another file already at that path
                raise DuplicateFileError(
                    f"{record.filename}: {record.path} is already indexed for another file"
                ) from e
            if metadata is not None:
                c.execute(
                    "INSERT INTO metadata (filename, data) VALUES (?, ?)",
                    (record.filename, metadata),
                )
            self._bump(c)
        return record

    def replace_file(self, record: FileRecord, metadata: bytes | None) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM metadata WHERE filename = ?", (record.filename,))
            c.execute("DELETE FROM files WHERE filename = ?", (record.filename,))
            c.execute(
                "INSERT OR IGNORE INTO projects (name, display_name, created_ns) VALUES (?, ?, ?)",
                (record.project, record.project, record.upload_time_ns or time.time_ns()),
            )
            c.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES ({', '.join('?' * 13)})",
                _file_row(record),
            )
            if metadata is not None:
                c.execute(
                    "INSERT INTO metadata (filename, data) VALUES (?, ?)",
                    (record.filename, metadata),
                )
            self._bump(c)

    def remove_file(self, filename: str) -> bool:
        with self._tx() as c:
            c.execute("DELETE FROM metadata WHERE filename = ?", (filename,))
            gone = c.execute("DELETE FROM files WHERE filename = ?", (filename,)).rowcount > 0
            if gone:
                self._bump(c)
        return gone

    def file(self, filename: str) -> FileRecord | None:
        rows = self._read(f"SELECT {_FILE_COLUMNS} FROM files WHERE filename = ?", (filename,))
        return _file_record(rows[0]) if rows else None

    def files(self, project: str | None = None) -> list[FileRecord]:
        if project is None:
            rows = self._read(f"SELECT {_FILE_COLUMNS} FROM files")
        else:
            rows = self._read(f"SELECT {_FILE_COLUMNS} FROM files WHERE project = ?", (project,))
        return [_file_record(r) for r in rows]

    def metadata(self, filename: str) -> bytes | None:
        rows = self._read("SELECT data FROM metadata WHERE filename = ?", (filename,))
        return bytes(rows[0][0]) if rows else None

    def project(self, name: str) -> Project | None:
        rows = self._read(
            "SELECT name, display_name, created_ns FROM projects WHERE name = ?", (name,)
        )
        return Project(*rows[0]) if rows else None

    def projects(self) -> list[Project]:
        rows = self._read("SELECT name, display_name, created_ns FROM projects ORDER BY name")
        return [Project(*r) for r in rows]

    def set_yanked(self, filename: str, reason: str | None) -> bool:
        with self._tx() as c:
            n = c.execute(
                "UPDATE files SET yanked = ? WHERE filename = ?", (reason, filename)
            ).rowcount
            if n:
                self._bump(c)
        return n > 0

    def legacy_tokens(self) -> list[tuple[Any, ...]]:
        """The rows of the old ``tokens`` table (``token_id, secret_sha256, scope,
        description, created_ns, revoked_ns, last_used_ns``), oldest first. Tokens now live
        in the tenant store (:class:`~registry_core.auth.TenantStore`), which imports these
        once; the table is kept, and no longer written, so an older registry-core opening
        the same directory still finds the tokens it made."""
        rows = self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_ns, token_id")
        return [tuple(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteIndexDB({self.path!r})"


def sort_files(files: list[FileRecord]) -> list[FileRecord]:
    """Files by version (PEP 440 order), then filename."""
    return sorted(files, key=lambda r: (version_key(r.version), r.filename))
