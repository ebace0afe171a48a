"""The index database on SQLite and PostgreSQL: schema, transactions, serial, duplicates,
concurrency. Every behaviour test runs on both backends (``db_backend``); PostgreSQL runs on a
real server started by the test (tests/_postgres.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.errors import DuplicateFileError, PackageIndexError
from registry_core.index import FileRecord, IndexDB, PostgreSQLIndexDB, SQLiteIndexDB
from registry_core.index._db import SCHEMA_VERSION


class Backend:
    """One place the tests' databases live: ``open()`` a handle on it (several handles see
    the same rows), ``newer_schema()`` pretend a newer registry-core migrated it."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = tmp_path / "state" / "index.sqlite3"
        self.dsn = ""
        if kind == "postgres":
            from _postgres import shared_server

            self.server = shared_server()
            self.dsn = self.server.create_database("idx")

    def open(self, namespace: str = "acme/main", **kw: object) -> IndexDB:
        if self.kind == "sqlite":
            return SQLiteIndexDB(self.path)
        return PostgreSQLIndexDB(self.dsn, namespace=namespace, **kw)  # type: ignore[arg-type]

    def newer_schema(self) -> None:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.path)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            conn.close()
        else:
            self.server.execute(
                self.dsn,
                "INSERT INTO registry_index.schema_migrations (component, version) "
                "SELECT 'index', MAX(version) + 1 FROM registry_index.schema_migrations "
                "WHERE component = 'index'",
            )


@pytest.fixture(params=["sqlite", "postgres"])
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture
def db(db_backend: Backend) -> Iterator[IndexDB]:
    d = db_backend.open()
    yield d
    d.close()


def _rec(filename: str = "pkg-1.0.tar.gz", project: str = "pkg", **kw: object) -> FileRecord:
    fields: dict[str, object] = dict(
        project=project,
        filename=filename,
        version="1.0",
        kind="sdist",
        path=f"{project}/{filename}",
        size=10,
        sha256="a" * 64,
        upload_time_ns=1000,
    )
    fields.update(kw)
    return FileRecord(**fields)  # type: ignore[arg-type]


def test_protocol_and_pragmas(tmp_path: Path) -> None:
    db = SQLiteIndexDB(tmp_path / "state" / "index.sqlite3")
    assert isinstance(db, IndexDB)
    conn = sqlite3.connect(tmp_path / "state" / "index.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
        db.close()


def test_add_and_read(db: IndexDB) -> None:
    assert db.serial == 0
    wheel = _rec(
        "pkg-1.0-py3-none-any.whl",
        kind="wheel",
        tags=frozenset({"py3-none-any", "py2-none-any"}),
        requires_python=">=3.8",
        metadata_sha256="b" * 64,
        uploader="tok",
    )
    assert db.add_file(wheel, b"Metadata-Version: 2.1\n", "Pkg") == wheel
    assert db.add_file(_rec(), None, "ignored: project exists") == _rec()
    assert db.serial == 2
    assert db.file(wheel.filename) == wheel
    assert db.file("nope") is None
    assert sorted(db.files("pkg"), key=lambda r: r.filename) == [wheel, _rec()]
    assert db.files("other") == []
    assert len(db.files()) == 2
    assert db.metadata(wheel.filename) == b"Metadata-Version: 2.1\n"
    assert db.metadata(_rec().filename) is None
    project = db.project("pkg")
    assert project is not None and project.display_name == "Pkg"
    assert [p.name for p in db.projects()] == ["pkg"]


def test_identical_readd_and_duplicate(db: IndexDB) -> None:
    first = db.add_file(_rec(), b"m", "pkg")
    serial = db.serial
    # same bytes again: the stored record (with its original upload time), nothing changes
    assert db.add_file(_rec(upload_time_ns=5000), b"m", "pkg") == first
    assert db.serial == serial
    with pytest.raises(DuplicateFileError) as info:
        db.add_file(_rec(sha256="c" * 64), b"m", "pkg")
    assert info.value.status == 409
    assert db.file(first.filename) == first and db.serial == serial


def test_failed_insert_leaves_nothing(db: IndexDB) -> None:
    db.add_file(_rec(), None, "pkg")
    serial = db.serial
    # another filename at the same storage path: refused, and the new project row rolled back
    clash = _rec("other-2.0.tar.gz", project="other", path="pkg/pkg-1.0.tar.gz")
    with pytest.raises(DuplicateFileError):
        db.add_file(clash, b"meta", "Other")
    assert db.project("other") is None
    assert db.file("other-2.0.tar.gz") is None
    assert db.metadata("other-2.0.tar.gz") is None
    assert db.serial == serial


def test_replace_remove_yank(db: IndexDB) -> None:
    db.add_file(_rec(), b"old", "pkg")
    db.replace_file(_rec(sha256="d" * 64, size=20), b"new")
    assert db.file(_rec().filename).sha256 == "d" * 64  # type: ignore[union-attr]
    assert db.metadata(_rec().filename) == b"new"
    s = db.serial
    assert db.set_yanked(_rec().filename, "broken")
    assert db.file(_rec().filename).yanked == "broken"  # type: ignore[union-attr]
    assert db.set_yanked(_rec().filename, "")
    assert db.file(_rec().filename).yanked == ""  # type: ignore[union-attr]
    assert db.set_yanked(_rec().filename, None)
    assert db.file(_rec().filename).yanked is None  # type: ignore[union-attr]
    assert not db.set_yanked("nope", "x")
    assert db.serial == s + 3
    assert db.remove_file(_rec().filename)
    assert not db.remove_file(_rec().filename)
    assert db.file(_rec().filename) is None and db.metadata(_rec().filename) is None
    assert db.serial == s + 4


def test_legacy_tokens(tmp_path: Path) -> None:
    """The old tokens table stays readable (the tenant store imports it) and is not written:
    the token methods left the IndexDB interface."""
    path = tmp_path / "index.sqlite3"
    SQLiteIndexDB(path).close()
    with sqlite3.connect(path) as c:  # rows as an earlier registry-core wrote them
        c.execute(
            "INSERT INTO tokens VALUES ('0123456789abcdef', ?, 'pkg', 'ci', 10, NULL, 20)",
            ("e" * 64,),
        )
        c.execute(
            "INSERT INTO tokens VALUES ('1123456789abcdef', ?, NULL, '', 5, 30, NULL)", ("f" * 64,)
        )
    c.close()
    db = SQLiteIndexDB(path)
    assert db.legacy_tokens() == [
        ("1123456789abcdef", "f" * 64, None, "", 5, 30, None),
        ("0123456789abcdef", "e" * 64, "pkg", "ci", 10, None, 20),
    ]
    assert not hasattr(db, "add_token") and not hasattr(db, "token")
    db.close()


def test_persistence_and_two_handles(db_backend: Backend) -> None:
    a = db_backend.open()
    b = db_backend.open()
    try:
        assert isinstance(a, IndexDB)
        a.add_file(_rec(), b"m", "pkg")
        assert b.file(_rec().filename) == _rec()  # another connection sees the commit
        assert b.serial == a.serial == 1
        with pytest.raises(DuplicateFileError):
            b.add_file(_rec(sha256="f" * 64), None, "pkg")
    finally:
        a.close()
        b.close()
    c = db_backend.open()
    try:
        assert c.file(_rec().filename) == _rec() and c.serial == 1
    finally:
        c.close()


def test_newer_schema_is_refused(db_backend: Backend) -> None:
    db_backend.open().close()
    db_backend.newer_schema()
    with pytest.raises(PackageIndexError, match="newer"):
        db_backend.open()


def test_closed_database(db_backend: Backend) -> None:
    d = db_backend.open()
    d.close()
    d.close()  # idempotent
    with pytest.raises(PackageIndexError, match="closed"):
        d.file("x")
    with pytest.raises(PackageIndexError, match="closed"):
        d.add_file(_rec(), None, "pkg")


def test_concurrent_writers(db: IndexDB) -> None:
    n = 8
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            for j in range(10):
                db.add_file(_rec(f"p{i}-{j}.0.tar.gz", project=f"p{i}", version=f"{j}.0"), None, "")
                # the same file from every thread: one row, no error
                db.add_file(_rec(), None, "pkg")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(db.files()) == n * 10 + 1
    assert db.serial == n * 10 + 1


_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
_tags = st.frozensets(
    st.from_regex(r"[a-z0-9_.]{1,8}-[a-z0-9_]{1,8}-[a-z0-9_]{1,8}", fullmatch=True)
)


@given(
    filename=_text.filter(bool),
    version=_text,
    path=_text.filter(bool),
    size=st.integers(0, 2**62),
    t=st.integers(0, 2**62),
    requires_python=st.none() | _text,
    yanked=st.none() | _text,
    msha=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    tags=_tags,
    uploader=st.none() | _text,
    metadata=st.none() | st.binary(max_size=200),
)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_records_round_trip(
    db_backend: Backend,
    filename: str,
    version: str,
    path: str,
    size: int,
    t: int,
    requires_python: str | None,
    yanked: str | None,
    msha: str | None,
    tags: frozenset[str],
    uploader: str | None,
    metadata: bytes | None,
) -> None:
    """Whatever a record holds comes back equal (encode: row; decode: FileRecord). The
    fixture is shared by the examples: each leaves the database as it found it."""
    record = FileRecord(
        project="pkg",
        filename=filename,
        version=version,
        kind="wheel",
        path=path,
        size=size,
        sha256="a" * 64,
        upload_time_ns=t,
        requires_python=requires_python,
        yanked=yanked,
        metadata_sha256=msha,
        tags=tags,
        uploader=uploader,
    )
    db = db_backend.open()
    try:
        db.replace_file(record, metadata)
        assert db.file(filename) == record
        assert db.metadata(filename) == metadata
        assert db.remove_file(filename)
    finally:
        db.close()


# -- PostgreSQL only ---------------------------------------------------------------------------


@pytest.fixture
def pg() -> Backend:
    return Backend("postgres", Path("/nonexistent"))


def test_pg_namespaces_are_isolated(pg: Backend) -> None:
    a = pg.open("acme/main")
    b = pg.open("globex/main")
    try:
        a.add_file(_rec(), b"meta", "Pkg")
        assert b.file(_rec().filename) is None and b.files() == [] and b.projects() == []
        assert b.metadata(_rec().filename) is None and b.serial == 0
        assert not b.set_yanked(_rec().filename, "x") and not b.remove_file(_rec().filename)
        # the same filename and path in another namespace is another file, not a duplicate
        b.add_file(_rec(sha256="b" * 64), None, "pkg")
        assert a.file(_rec().filename).sha256 == "a" * 64  # type: ignore[union-attr]
        assert a.serial == b.serial == 1
        b.replace_file(_rec(sha256="c" * 64), b"other")
        assert a.metadata(_rec().filename) == b"meta"
    finally:
        a.close()
        b.close()


def test_pg_projects_sort_by_code_point(pg: Backend) -> None:
    db = pg.open()
    try:
        for name in ("b", "B", "a-b", "a_b", "ab", "é"):
            db.add_file(_rec(f"{name}-1.0.tar.gz", project=name, path=f"{name}/x"), None, name)
        assert [p.name for p in db.projects()] == sorted(["b", "B", "a-b", "a_b", "ab", "é"])
    finally:
        db.close()


def test_pg_migrations_table(pg: Backend) -> None:
    from registry_core.index._pg import PG_SCHEMA_VERSION

    pg.open().close()
    pg.open().close()  # a second open migrates nothing
    rows = pg.server.execute(
        pg.dsn, "SELECT component, version FROM registry_index.schema_migrations ORDER BY version"
    )
    assert rows == [("index", v) for v in range(1, PG_SCHEMA_VERSION + 1)]


def test_pg_concurrent_first_open(pg: Backend) -> None:
    """Instances starting at once migrate once (advisory lock), none fails."""
    n = 4
    barrier = threading.Barrier(n)
    dbs: list[IndexDB] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            dbs.append(pg.open(f"t{i}/main", max_connections=2 + i))  # a pool each
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for d in dbs:
        d.close()
    assert errors == [] and len(dbs) == n


def test_pg_reconnects_after_dropped_connections(pg: Backend) -> None:
    db = pg.open()
    try:
        db.add_file(_rec(), None, "pkg")
        assert pg.server.terminate_backends(pg.dsn) >= 1  # the pooled connection is dead now
        assert db.file(_rec().filename) == _rec()
        assert pg.server.terminate_backends(pg.dsn) >= 1
        assert db.set_yanked(_rec().filename, "r")  # a write on a dead connection: retried
        assert db.serial == 2
    finally:
        db.close()


def test_pg_statement_timeout(pg: Backend) -> None:
    """A write waiting on a lock held elsewhere fails with 503 instead of hanging."""
    import psycopg

    db = pg.open(statement_timeout=0.3, max_connections=3)
    try:
        db.add_file(_rec(), None, "pkg")
        with psycopg.connect(pg.dsn) as other:  # holds the namespace's row lock
            other.execute(
                "SELECT 1 FROM registry_index.namespaces WHERE namespace = 'acme/main' FOR UPDATE"
            )
            with pytest.raises(PackageIndexError, match="timed out") as info:
                db.set_yanked(_rec().filename, "x")
            assert info.value.status == 503
            assert db.file(_rec().filename).yanked is None  # type: ignore[union-attr]
        assert db.set_yanked(_rec().filename, "x")
    finally:
        db.close()


def test_pg_unreachable_and_secrets(pg: Backend) -> None:
    from _postgres import free_port

    dsn = f"postgresql://registry:hunter2-secret@127.0.0.1:{free_port()}/none"
    with pytest.raises(PackageIndexError) as info:
        PostgreSQLIndexDB(dsn, namespace="acme/main", connect_timeout=2)
    assert info.value.status == 503 and "hunter2" not in str(info.value)
    db = pg.open()
    try:
        db.ping()  # type: ignore[attr-defined]
        assert pg.server.password not in repr(db) and "acme/main" in repr(db)
    finally:
        db.close()
    with pytest.raises(PackageIndexError) as wrong:  # a wrong password: refused, not shown
        PostgreSQLIndexDB(pg.dsn.replace(pg.server.password, "hunter2"), namespace="x/y")
    assert "hunter2" not in str(wrong.value)


@pytest.mark.parametrize("namespace", ["", "a\x00b", "x" * 256, 7])
def test_pg_bad_namespace(pg: Backend, namespace: object) -> None:
    with pytest.raises(ValueError, match="namespace"):
        PostgreSQLIndexDB(pg.dsn, namespace=namespace)  # type: ignore[arg-type]


def test_pg_nul_in_a_value_is_a_clear_error(pg: Backend) -> None:
    db = pg.open()
    try:
        with pytest.raises(ValueError, match="cannot be stored"):
            db.add_file(_rec("bad\x00-1.0.tar.gz"), None, "pkg")
        assert db.files() == [] and db.serial == 0
    finally:
        db.close()


def test_pg_server_restart_and_outage(tmp_path: Path) -> None:
    """A private server restarted under open objects (every pooled connection dropped): the
    next calls reconnect; while it is down, calls fail at once with 503, nothing hangs."""
    from _postgres import PostgresServer
    from registry_core.auth import Resource, TenantStore

    server = PostgresServer(tmp_path)
    try:
        dsn = server.create_database("restart")
        db = PostgreSQLIndexDB(dsn, namespace="acme/main", connect_timeout=2)
        store = TenantStore(dsn, tenant="acme")
        try:
            db.add_file(_rec(), b"m", "pkg")
            store.grant("user:a", "reader", Resource("acme"))
            server.restart()
            assert db.file(_rec().filename) == _rec() and db.serial == 1
            assert len(store.bindings()) == 1 and len(store.policy()) == 1
            server.stop(remove=False)
            with pytest.raises(PackageIndexError) as info:
                db.set_yanked(_rec().filename, "x")
            assert info.value.status == 503
            with pytest.raises(PackageIndexError) as info:
                store.policy()
            assert info.value.status == 503
            server._start()
            assert db.set_yanked(_rec().filename, "x") and db.serial == 2
        finally:
            db.close()
            store.close()
    finally:
        server.stop()


def test_pg_first_opens_waiting_on_the_migration_lock(pg: Backend) -> None:
    """Instances that all wait for the migration lock while another migrates (what two
    servers starting together do): each then sees the schemas made meanwhile, none fails."""
    import time

    import psycopg

    from registry_core._util._pg import _MIGRATIONS_LOCK
    from registry_core.auth import TenantStore

    n = 4
    opened: list[object] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            if i % 2:
                opened.append(TenantStore(pg.dsn, tenant="acme", busy_timeout=1.0 + i))
            else:
                opened.append(pg.open("acme/main", max_connections=2 + i))
        except BaseException as e:
            errors.append(e)

    with psycopg.connect(pg.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_MIGRATIONS_LOCK,))
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 60
        while True:  # until every opener waits for the lock (a bounded poll: no event exists)
            (waiting,) = holder.execute(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if waiting == n or time.monotonic() > deadline or errors:
                break
            time.sleep(0.01)
        holder.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATIONS_LOCK,))
    for th in threads:
        th.join()
    for o in opened:
        o.close()  # type: ignore[attr-defined]
    assert errors == [] and waiting == n and len(opened) == n
