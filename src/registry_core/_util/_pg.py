"""PostgreSQL plumbing shared by the index database and the tenant store (psycopg 3, lazy).

One :class:`Pool` per DSN and settings in a process, shared (reference counted) by every
object using it: many tenants' stores and indexes need few server connections, which are what
PostgreSQL runs out of first. A connection is borrowed for one transaction, so any thread may
call; each borrower names the schema its unqualified SQL means (``search_path``, set only when
the connection last served another schema). Every connection has a ``statement_timeout`` (a
stuck query or lock wait fails instead of hanging a request) and an
``idle_in_transaction_session_timeout``.

:meth:`Pool.run` is one transaction with a retry: a connection found dropped (server restart,
idle kill) before the transaction's COMMIT was sent is replaced and the transaction run again
(nothing of it was committed); a serialization failure or deadlock is retried too. A drop
during COMMIT is not retried (it may have committed): the caller gets the error.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import DatabaseUnavailableError, InvalidArgumentError, PackageIndexError

__all__ = ["Pool", "acquire_pool", "is_dsn", "migrate", "redact", "require_psycopg"]

T = TypeVar("T")

_MIGRATIONS_LOCK = 0x72636D67  # "rcmg": one migrator at a time per database


def require_psycopg() -> Any:
    """The psycopg module, or ImportError naming the extra."""
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - the extra is installed in the test env
        raise ImportError(
            "PostgreSQL support needs psycopg 3: pip install 'registry-core[postgres]'"
        ) from e
    return psycopg


def is_dsn(value: object) -> bool:
    """Whether ``value`` is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def redact(dsn: str) -> str:
    """``user@host:port/dbname`` of a DSN: never its password (for reprs, logs, errors)."""
    psycopg = require_psycopg()
    try:
        d = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    user = d.get("user")
    where = f"{d.get('host') or 'localhost'}:{d.get('port') or 5432}/{d.get('dbname') or ''}"
    return f"{user}@{where}" if user else where


def unavailable(message: str) -> DatabaseUnavailableError:
    """The database cannot answer now (unreachable, timed out, overloaded): HTTP 503."""
    return DatabaseUnavailableError(message)


class Pool:
    """Connections to one database (see the module docstring). Use :func:`acquire_pool`."""

    def __init__(
        self,
        dsn: str,
        *,
        max_connections: int,
        connect_timeout: float,
        statement_timeout: float,
    ) -> None:
        self._psycopg = require_psycopg()
        if not is_dsn(dsn):
            raise InvalidArgumentError("a PostgreSQL DSN starts with postgresql://")
        if max_connections < 1 or connect_timeout <= 0 or statement_timeout <= 0:
            raise InvalidArgumentError("pool sizes and timeouts must be positive")
        self.where = redact(dsn)
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._statement_ms = max(1, int(statement_timeout * 1000))
        self._wait_s = connect_timeout + statement_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: list[tuple[Any, str | None]] = []  # (connection, its search_path)
        self._max_idle = max_connections
        self.users = 0
        self.key: tuple[object, ...] = ()

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            return psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=max(1, math.ceil(self._connect_timeout)),
                application_name="registry-core",
                options=(
                    f"-c statement_timeout={self._statement_ms} "
                    f"-c idle_in_transaction_session_timeout={self._statement_ms * 2}"
                ),
            )
        except psycopg.Error as e:
            raise unavailable(f"cannot connect to the database {self.where}: {_first(e)}") from e

    @contextmanager
    def _borrow(self) -> Iterator[list[Any]]:
        """A slot holding ``[connection or None, its search_path]``; returned to the idle
        list afterwards unless the holder set the connection to None (dropped)."""
        if not self._slots.acquire(timeout=self._wait_s):
            raise unavailable(f"every connection to {self.where} is busy")
        try:
            with self._lock:
                slot = list(self._idle.pop()) if self._idle else [None, None]
            try:
                yield slot
            finally:
                conn = slot[0]
                if conn is not None:
                    if conn.closed or conn.broken or conn.info.transaction_status != 0:
                        _close_quietly(conn)  # not idle (0): never hand it out again
                    else:
                        with self._lock:
                            if self.users > 0 and len(self._idle) < self._max_idle:
                                self._idle.append((conn, slot[1]))
                                conn = None
                        if conn is not None:
                            _close_quietly(conn)
        finally:
            self._slots.release()

    def _ready(self, slot: list[Any], schema: str) -> Any:
        """The slot's connection (a new one if none), its ``search_path`` set to ``schema``."""
        psycopg = self._psycopg
        if slot[0] is None:
            slot[0], slot[1] = self._connect(), None
        conn: Any = slot[0]
        if slot[1] != schema:
            conn.execute(
                psycopg.sql.SQL("SET search_path TO {}").format(psycopg.sql.Identifier(schema))
            )
            slot[1] = schema
        return conn

    def _error(self, e: Exception) -> Exception:
        """The registry-core error for a psycopg one."""
        psycopg = self._psycopg
        errors = psycopg.errors
        if isinstance(e, errors.QueryCanceled):
            return unavailable(
                f"a statement on {self.where} timed out after {self._statement_ms / 1000:g} s"
            )
        if isinstance(e, psycopg.OperationalError):
            return unavailable(f"the database {self.where} failed: {_first(e)}")
        if isinstance(e, psycopg.DataError):
            return InvalidArgumentError(f"a value cannot be stored: {_first(e)}")
        return PackageIndexError(f"database error on {self.where}: {_first(e)}")

    def _retryable(self, e: Exception, slot: list[Any], committing: bool) -> bool:
        """Whether a failed transaction may run again: dropped before COMMIT (the dead
        connection is discarded), or a serialization failure / deadlock."""
        psycopg = self._psycopg
        errors = psycopg.errors
        if isinstance(e, (errors.SerializationFailure, errors.DeadlockDetected)):
            return True
        if isinstance(e, errors.QueryCanceled) or not isinstance(e, psycopg.OperationalError):
            return False
        conn = slot[0]
        if conn is None or not (conn.closed or conn.broken):
            return False
        _close_quietly(conn)
        slot[0] = None
        return not committing

    def run(
        self, schema: str, fn: Callable[[Any], T], *, attempts: int = 3, single: bool = False
    ) -> T:
        """``fn(connection)`` inside one transaction with ``search_path`` = ``schema``;
        retried as the module docstring says. psycopg errors become registry-core ones.
        ``single``: ``fn`` runs one statement, its own transaction (autocommit: one round
        trip instead of three, for reads)."""
        psycopg = self._psycopg
        for attempt in range(attempts):
            with self._borrow() as slot:
                committing = False
                try:
                    conn = self._ready(slot, schema)
                    if single:
                        return fn(conn)
                    with conn.transaction():
                        result = fn(conn)
                        committing = True  # the COMMIT goes out when this block exits
                    return result
                except psycopg.Error as e:
                    if attempt == attempts - 1 or not self._retryable(e, slot, committing):
                        raise self._error(e) from e
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def transaction(
        self, schema: str, first: str, args: tuple[object, ...] = (), *, attempts: int = 3
    ) -> Iterator[tuple[Any, Any]]:
        """A transaction as a ``with`` block: ``(connection, first row of ``first``)``. Only
        the start (BEGIN and ``first``) is retried on a dropped connection: the block itself
        runs once. psycopg errors raised in it become registry-core ones."""
        psycopg = self._psycopg
        for attempt in range(attempts):
            with self._borrow() as slot:
                started = False
                committing = False
                try:
                    conn = self._ready(slot, schema)
                    with conn.transaction():
                        cur = conn.execute(first, args)
                        row = cur.fetchone() if cur.description else None
                        started = True
                        yield conn, row
                        committing = True
                    return
                except psycopg.Error as e:
                    retry = not started and attempt < attempts - 1
                    if not (self._retryable(e, slot, committing) and retry):
                        raise self._error(e) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close_quietly(conn)


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a dead connection may fail to close: gone anyway
        conn.close()


_pools: dict[tuple[object, ...], Pool] = {}
_pools_lock = threading.Lock()


def acquire_pool(
    dsn: str,
    *,
    max_connections: int = 10,
    connect_timeout: float = 10.0,
    statement_timeout: float = 30.0,
) -> Pool:
    """The process's pool for ``dsn`` with these settings (created on first use); call
    :func:`release_pool` once per acquire."""
    key = (dsn, max_connections, connect_timeout, statement_timeout)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = Pool(
                dsn,
                max_connections=max_connections,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
            )
            pool.key = key
            _pools[key] = pool
        pool.users += 1
        return pool


def release_pool(pool: Pool) -> None:
    """Drop one user of ``pool``; the last one closes its idle connections."""
    with _pools_lock:
        pool.users -= 1
        if pool.users > 0:
            return
        _pools.pop(pool.key, None)
    pool.close_idle()


def migrate(
    pool: Pool,
    schema: str,
    component: str,
    migrations: Sequence[str],
    *,
    newer: Callable[[int, int], Exception],
) -> int:
    """Bring ``component``'s tables in ``schema`` to ``len(migrations)`` (migration ``i`` is
    version ``i + 1``, recorded in ``schema.schema_migrations``), in one transaction under a
    session advisory lock (two instances starting at once migrate once). ``newer(found, known)`` is
    raised when the database is ahead of this code. Returns the version."""
    psycopg = pool._psycopg
    ident = psycopg.sql.Identifier(schema)

    def migrate_tx(conn: Any) -> int:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "component TEXT NOT NULL, version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL "
            "DEFAULT now(), PRIMARY KEY (component, version))"
        )
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = %s",
            (component,),
        ).fetchone()
        current = int(row[0])
        if current > len(migrations):
            raise newer(current, len(migrations))
        for version in range(current + 1, len(migrations) + 1):
            conn.execute(migrations[version - 1])  # no parameters: several statements at once
            conn.execute(
                "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                (component, version),
            )
        return len(migrations)

    def work(conn: Any) -> int:
        # a session lock taken BEFORE the transaction: a transaction starting after the
        # wait reads the catalog afresh, so it sees the schema another instance just made
        # (inside one transaction, a wait on an advisory lock does not refresh PostgreSQL's
        # catalog cache, and CREATE SCHEMA IF NOT EXISTS then fails on a duplicate)
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATIONS_LOCK,))
        try:
            with conn.transaction():
                return migrate_tx(conn)
        finally:
            if not (conn.closed or conn.broken):
                conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATIONS_LOCK,))

    for attempt in range(3):
        try:
            return pool.run(schema, work, single=True)
        except PackageIndexError as e:
            # another instance created the same object at the same moment: run again, in a
            # new transaction that sees it (belt and braces: the lock should prevent it)
            dup = isinstance(
                e.__cause__,
                (
                    psycopg.errors.UniqueViolation,
                    psycopg.errors.DuplicateObject,
                    psycopg.errors.DuplicateTable,
                    psycopg.errors.DuplicateSchema,
                ),
            )
            if not dup or attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
