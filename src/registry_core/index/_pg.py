"""The index database on PostgreSQL: :class:`PostgreSQLIndexDB` (psycopg 3, ``[postgres]``).

Every tenant's indexes share one database and one set of tables (schema ``registry_index``),
each row keyed by its ``namespace`` ("tenant/index"). Chosen over a schema per namespace:
migrations run once for all tenants, creating a tenant or index is one INSERT (the runtime
role needs no DDL rights), and every namespace's objects can share the process's connections
(:mod:`registry_core._util._pg`), which is the scarce resource in PostgreSQL. The price, a
predicate on every statement, is paid here once and tested (two namespaces never see each
other's rows).

Semantics match :class:`~registry_core.index.SQLiteIndexDB` exactly (the same test suite runs
on both): each method is one transaction; a write first locks its namespace's row (writers of
one namespace are serialized, like SQLite's BEGIN IMMEDIATE) and bumps its ``serial`` in the
same transaction when it changed something. Projects sort by code point (``COLLATE "C"``, as
SQLite's BINARY), whatever the database's collation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from .._util._pg import Pool, acquire_pool, migrate, redact, release_pool
from ..errors import DuplicateFileError, InvalidArgumentError, PackageIndexError
from ._db import _FILE_COLUMNS, _file_record, _file_row
from ._model import FileRecord, Project

__all__ = ["PG_SCHEMA", "PG_SCHEMA_VERSION", "PostgreSQLIndexDB"]

T = TypeVar("T")

PG_SCHEMA = "registry_index"
MAX_NAMESPACE = 255

# migration i is schema version i + 1; append, never edit a released one
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE namespaces (
    namespace TEXT PRIMARY KEY,
    serial BIGINT NOT NULL DEFAULT 0,
    created_ns BIGINT NOT NULL
);
CREATE TABLE projects (
    namespace TEXT NOT NULL REFERENCES namespaces (namespace),
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE files (
    namespace TEXT NOT NULL,
    filename TEXT NOT NULL,
    project TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('wheel', 'sdist')),
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    upload_time_ns BIGINT NOT NULL,
    requires_python TEXT,
    yanked TEXT,
    metadata_sha256 TEXT,
    tags TEXT NOT NULL DEFAULT '',
    uploader TEXT,
    PRIMARY KEY (namespace, filename),
    CONSTRAINT files_path UNIQUE (namespace, path),
    FOREIGN KEY (namespace, project) REFERENCES projects (namespace, name)
);
CREATE INDEX files_project ON files (namespace, project);
CREATE TABLE metadata (
    namespace TEXT NOT NULL,
    filename TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (namespace, filename),
    FOREIGN KEY (namespace, filename) REFERENCES files (namespace, filename) ON DELETE CASCADE
);
""",
)
PG_SCHEMA_VERSION = len(MIGRATIONS)

_INSERT_FILE = (
    f"INSERT INTO files (namespace, {_FILE_COLUMNS}) VALUES (%s, {', '.join(['%s'] * 13)})"
)
_INSERT_PROJECT = (
    "INSERT INTO projects (namespace, name, display_name, created_ns) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)


def _check_namespace(namespace: object) -> str:
    if (
        not isinstance(namespace, str)
        or not namespace
        or len(namespace) > MAX_NAMESPACE
        or not namespace.isprintable()
    ):
        raise InvalidArgumentError(
            f"namespace must be a printable str of 1 to {MAX_NAMESPACE} characters "
            '("tenant/index")'
        )
    return namespace


class PostgreSQLIndexDB:
    """:class:`~registry_core.index.IndexDB` for namespace ``namespace`` ("tenant/index") in
    the PostgreSQL database ``dsn`` (``postgresql://user@host:port/dbname``; the password
    from the DSN, ``PGPASSWORD`` or ``~/.pgpass``; TLS by libpq's ``sslmode``).

    Creates or migrates the tables on first use; refuses a database migrated by a newer
    registry-core. ``statement_timeout``: seconds any statement (lock waits included) may
    take; ``max_connections``: the process's connections to ``dsn`` (shared by every object
    with the same DSN and settings).
    """

    def __init__(
        self,
        dsn: str,
        *,
        namespace: str,
        statement_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 10,
    ) -> None:
        self.namespace = _check_namespace(namespace)
        self.where = redact(dsn) if isinstance(dsn, str) else "<invalid DSN>"
        pool = acquire_pool(
            dsn,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self._pool: Pool | None = pool
        try:
            migrate(pool, PG_SCHEMA, "index", MIGRATIONS, newer=self._newer)
            self._run(
                lambda c: c.execute(
                    "INSERT INTO namespaces (namespace, created_ns) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (self.namespace, time.time_ns()),
                )
            )
        except BaseException:
            self.close()
            raise

    def _newer(self, found: int, known: int) -> Exception:
        return PackageIndexError(
            f"{self.where}: index database schema {found} is newer than this registry-core "
            f"understands ({known}); upgrade registry-core"
        )

    def _run(self, fn: Callable[[Any], T], *, single: bool = False) -> T:
        pool = self._pool
        if pool is None:
            raise PackageIndexError("the index database is closed")
        return pool.run(PG_SCHEMA, fn, single=single)

    def _write(self, fn: Callable[[Any], tuple[T, bool]]) -> T:
        """``fn(conn) -> (result, changed)`` with the namespace's row locked; the serial is
        bumped in the same transaction when ``changed``."""
        ns = self.namespace

        def tx(c: Any) -> T:
            c.execute("SELECT serial FROM namespaces WHERE namespace = %s FOR UPDATE", (ns,))
            result, changed = fn(c)
            if changed:
                c.execute("UPDATE namespaces SET serial = serial + 1 WHERE namespace = %s", (ns,))
            return result

        return self._run(tx)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        # one statement: its own transaction, a consistent snapshot
        return self._run(lambda c: c.execute(sql, (self.namespace, *args)).fetchall(), single=True)

    def _insert(self, c: Any, record: FileRecord, metadata: bytes | None) -> None:
        ns = self.namespace
        c.execute(_INSERT_FILE, (ns, *_file_row(record)))
        if metadata is not None:
            c.execute(
                "INSERT INTO metadata (namespace, filename, data) VALUES (%s, %s, %s)",
                (ns, record.filename, bytes(metadata)),
            )

    # -- the interface -------------------------------------------------------------------------

    @property
    def serial(self) -> int:
        return int(self._read("SELECT serial FROM namespaces WHERE namespace = %s")[0][0])

    def add_file(self, record: FileRecord, metadata: bytes | None, display_name: str) -> FileRecord:
        import psycopg

        ns = self.namespace

        def fn(c: Any) -> tuple[FileRecord, bool]:
            row = c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE namespace = %s AND filename = %s",
                (ns, record.filename),
            ).fetchone()
            if row is not None:
                existing = _file_record(row)
                if existing.sha256 == record.sha256:
                    return existing, False
                raise DuplicateFileError(
                    f"{record.filename} already exists with other contents; files cannot be "
                    "replaced (upload a new version)"
                )
            c.execute(
                _INSERT_PROJECT,
                (ns, record.project, display_name, record.upload_time_ns or time.time_ns()),
            )
            try:
                self._insert(c, record, metadata)
            except psycopg.errors.UniqueViolation as e:  # another file already at that path
                raise DuplicateFileError(
                    f"{record.filename}: {record.path} is already indexed for another file"
                ) from e
            return record, True

        return self._write(fn)

    def replace_file(self, record: FileRecord, metadata: bytes | None) -> None:
        ns = self.namespace

        def fn(c: Any) -> tuple[None, bool]:
            c.execute(
                "DELETE FROM files WHERE namespace = %s AND filename = %s", (ns, record.filename)
            )  # its metadata row goes with it (ON DELETE CASCADE)
            c.execute(
                _INSERT_PROJECT,
                (ns, record.project, record.project, record.upload_time_ns or time.time_ns()),
            )
            self._insert(c, record, metadata)
            return None, True

        self._write(fn)

    def remove_file(self, filename: str) -> bool:
        ns = self.namespace

        def fn(c: Any) -> tuple[bool, bool]:
            gone = (
                c.execute(
                    "DELETE FROM files WHERE namespace = %s AND filename = %s", (ns, filename)
                ).rowcount
                > 0
            )
            return gone, gone

        return self._write(fn)

    def file(self, filename: str) -> FileRecord | None:
        rows = self._read(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE namespace = %s AND filename = %s",
            (filename,),
        )
        return _file_record(rows[0]) if rows else None

    def files(self, project: str | None = None) -> list[FileRecord]:
        if project is None:
            rows = self._read(f"SELECT {_FILE_COLUMNS} FROM files WHERE namespace = %s")
        else:
            rows = self._read(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE namespace = %s AND project = %s",
                (project,),
            )
        return [_file_record(r) for r in rows]

    def metadata(self, filename: str) -> bytes | None:
        rows = self._read(
            "SELECT data FROM metadata WHERE namespace = %s AND filename = %s", (filename,)
        )
        return bytes(rows[0][0]) if rows else None

    def project(self, name: str) -> Project | None:
        rows = self._read(
            "SELECT name, display_name, created_ns FROM projects "
            "WHERE namespace = %s AND name = %s",
            (name,),
        )
        return Project(*rows[0]) if rows else None

    def projects(self) -> list[Project]:
        rows = self._read(
            "SELECT name, display_name, created_ns FROM projects WHERE namespace = %s "
            'ORDER BY name COLLATE "C"'
        )
        return [Project(*r) for r in rows]

    def set_yanked(self, filename: str, reason: str | None) -> bool:
        ns = self.namespace

        def fn(c: Any) -> tuple[bool, bool]:
            n = c.execute(
                "UPDATE files SET yanked = %s WHERE namespace = %s AND filename = %s",
                (reason, ns, filename),
            ).rowcount
            return n > 0, n > 0

        return self._write(fn)

    def ping(self) -> None:
        """Raise (PackageIndexError, status 503) unless the database answers now: for a
        readiness check."""
        self._run(lambda c: c.execute("SELECT 1").fetchone())

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            release_pool(pool)

    def __repr__(self) -> str:
        return f"PostgreSQLIndexDB({self.where!r}, namespace={self.namespace!r})"
