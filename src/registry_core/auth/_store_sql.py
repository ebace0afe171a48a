"""Where a :class:`~registry_core.auth.TenantStore` keeps its rows: SQLite or PostgreSQL.

The store's SQL is written once, in the dialect both understand (``?`` placeholders, ``INSERT
... ON CONFLICT``, ``RETURNING``); a backend gives it transactions, reads and a change counter:

- :class:`SQLiteBackend`: one file (or memory), one connection, WAL journal, ``busy_timeout``,
  ``PRAGMA user_version``; the change counter is ``PRAGMA data_version`` (changes when another
  connection committed; never waits for a writer).
- :class:`PostgresBackend`: the tenant's tables in its own schema (``tenant_<name>``) of a
  shared database, migrations in its ``schema_migrations``, connections from the process's
  pool for the DSN. Every write transaction first bumps a counter row (which also serializes
  the tenant's writers, like SQLite's BEGIN IMMEDIATE); the change counter is that row minus
  this object's own commits, so it moves exactly when another connection committed -- the
  same meaning as ``data_version``, read per check, so a revocation anywhere is seen at once.
  It cannot be read without a round trip: the never-blocking check answers "unknown".

A schema per tenant (rather than the index's rows keyed by namespace) keeps this SQL
identical on both backends: the SQLite file is already per tenant.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._util._pg import acquire_pool, is_dsn, migrate, redact, release_pool
from .._util._sqlite import prepare
from ..errors import AuthenticationError, InvalidArgumentError

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "SQLiteBackend", "open_backend"]

SCHEMA_VERSION = 1

# the tables, in SQLite's spelling; PostgreSQL's migration is derived from it (BIGINT for
# every INTEGER: nanosecond times)
SCHEMA = """
CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    owner TEXT,
    scopes TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER,
    revoked_ns INTEGER,
    last_used_ns INTEGER
);
CREATE INDEX tokens_owner ON tokens (owner);
CREATE TABLE bindings (
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    resource TEXT NOT NULL,
    granted_by TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    PRIMARY KEY (subject, role, resource)
);
CREATE TABLE users (
    subject TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    method TEXT NOT NULL,
    email TEXT,
    name TEXT,
    groups TEXT NOT NULL DEFAULT '[]',
    first_login_ns INTEGER NOT NULL,
    last_login_ns INTEGER NOT NULL
);
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    issuer TEXT NOT NULL,
    method TEXT NOT NULL,
    email TEXT,
    name TEXT,
    groups TEXT NOT NULL DEFAULT '[]',
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_ns);
CREATE TABLE pending (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL
);
CREATE INDEX pending_expiry ON pending (expires_ns);
CREATE TABLE replay (
    kind TEXT NOT NULL,
    ident TEXT NOT NULL,
    expires_ns INTEGER NOT NULL,
    PRIMARY KEY (kind, ident)
);
CREATE INDEX replay_expiry ON replay (expires_ns);
"""

PG_MIGRATIONS: tuple[str, ...] = (
    SCHEMA.replace("INTEGER", "BIGINT")
    + "CREATE TABLE store_state (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);"
    + "INSERT INTO store_state (id, version) VALUES (1, 0);",
)
assert len(PG_MIGRATIONS) == SCHEMA_VERSION


def _newer(where: str, found: int, known: int) -> AuthenticationError:
    return AuthenticationError(
        f"{where}: tenant store schema {found} is newer than this registry-core understands "
        f"({known}); upgrade registry-core"
    )


class SQLiteBackend:
    """The tenant's rows in one SQLite file (None or ``":memory:"``: in memory)."""

    def __init__(self, path: str | os.PathLike[str] | None, *, busy_timeout: float) -> None:
        self.where = ":memory:" if path is None else str(path)
        if self.where != ":memory:":
            p = Path(self.where)
            p.parent.mkdir(parents=True, exist_ok=True)
            # created private: it holds e-mail addresses and the hashes of live credentials
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600))
        self.conn: sqlite3.Connection | None = sqlite3.connect(
            self.where, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup(busy_timeout)
        except BaseException:
            self.close()
            raise

    def _setup(self, busy_timeout: float) -> None:
        prepare(
            self._c(),
            self.tx,
            path=self.where,
            busy_timeout=busy_timeout,
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            newer=lambda found: _newer(self.where, found, SCHEMA_VERSION),
        )

    @property
    def closed(self) -> bool:
        return self.conn is None

    def _c(self) -> sqlite3.Connection:
        if self.conn is None:
            raise InvalidArgumentError("the tenant store is closed")
        return self.conn

    @contextmanager
    def tx(self) -> Iterator[Any]:
        """One write transaction (BEGIN IMMEDIATE: the write lock up front, so a
        read-then-write never fails half-way on another process's commit). The caller holds
        the store's lock."""
        c = self._c()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        return self._c().execute(sql, args).fetchall()

    def version(self, *, block: bool = True) -> int | None:
        """Changes when another connection committed (``PRAGMA data_version`` reads no
        table: in WAL mode it never waits for a writer)."""
        return int(self._c().execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _sql(text: str) -> str:
    """The store's SQL for psycopg: ``?`` placeholders become ``%s``."""
    return text.replace("%", "%%").replace("?", "%s")


class _PgCursor:
    """What the store's code calls on a transaction: ``execute(sql, args)`` -> a cursor."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> Any:
        return self._conn.execute(_sql(sql), args)


def schema_name(tenant: str) -> str:
    """The PostgreSQL schema of ``tenant`` (identifiers end at 63 bytes: a long name is
    shortened with a digest, never truncated into another tenant's)."""
    name = f"tenant_{tenant}"
    if len(name) <= 63:
        return name
    return f"tenant_{tenant[:36]}_{hashlib.sha256(tenant.encode()).hexdigest()[:16]}"


class PostgresBackend:
    """The tenant's rows in schema :func:`schema_name` of the PostgreSQL database ``dsn``."""

    def __init__(
        self,
        dsn: str,
        *,
        tenant: str,
        statement_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_connections: int = 10,
    ) -> None:
        self.where = f"{redact(dsn)} (schema {schema_name(tenant)})"
        self.schema = schema_name(tenant)
        self._own = 0  # commits of this object: not "another connection's"
        self._pool: Any = acquire_pool(
            dsn,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        try:
            migrate(
                self._pool,
                self.schema,
                "tenant_store",
                PG_MIGRATIONS,
                newer=lambda found, known: _newer(self.where, found, known),
            )
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return self._pool is None

    def _p(self) -> Any:
        if self._pool is None:
            raise InvalidArgumentError("the tenant store is closed")
        return self._pool

    @contextmanager
    def tx(self) -> Iterator[Any]:
        """One write transaction; the caller holds the store's lock (so ``_own`` counts)."""
        with self._p().transaction(
            self.schema, "UPDATE store_state SET version = version + 1 WHERE id = 1"
        ) as (conn, _):
            yield _PgCursor(conn)
        self._own += 1

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        return list(
            self._p().run(self.schema, lambda c: c.execute(_sql(sql), args).fetchall(), single=True)
        )

    def version(self, *, block: bool = True) -> int | None:
        """Commits by other connections (None when ``block`` is False: a round trip)."""
        if not block:
            return None
        (total,) = self.read("SELECT version FROM store_state WHERE id = 1")[0]
        return int(total) - self._own

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            release_pool(pool)


def open_backend(
    path_or_dsn: str | os.PathLike[str] | None, *, tenant: str, busy_timeout: float
) -> SQLiteBackend | PostgresBackend:
    """A PostgreSQL backend for a ``postgresql://`` DSN, else SQLite at the path."""
    if is_dsn(path_or_dsn):
        assert isinstance(path_or_dsn, str)
        return PostgresBackend(path_or_dsn, tenant=tenant, statement_timeout=busy_timeout * 3)
    return SQLiteBackend(path_or_dsn, busy_timeout=busy_timeout)
