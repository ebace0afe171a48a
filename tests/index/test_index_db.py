"""SQLiteIndexDB: schema, transactions, serial, duplicates, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from registry_core.errors import DuplicateFileError, PackageIndexError
from registry_core.index import FileRecord, IndexDB, SQLiteIndexDB
from registry_core.index._db import SCHEMA_VERSION


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


@pytest.fixture
def db(tmp_path: Path) -> SQLiteIndexDB:
    d = SQLiteIndexDB(tmp_path / "state" / "index.sqlite3")
    yield d  # type: ignore[misc]
    d.close()


def test_protocol_and_pragmas(db: SQLiteIndexDB, tmp_path: Path) -> None:
    assert isinstance(db, IndexDB)
    conn = sqlite3.connect(tmp_path / "state" / "index.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_add_and_read(db: SQLiteIndexDB) -> None:
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


def test_identical_readd_and_duplicate(db: SQLiteIndexDB) -> None:
    first = db.add_file(_rec(), b"m", "pkg")
    serial = db.serial
    # same bytes again: the stored record (with its original upload time), nothing changes
    assert db.add_file(_rec(upload_time_ns=5000), b"m", "pkg") == first
    assert db.serial == serial
    with pytest.raises(DuplicateFileError) as info:
        db.add_file(_rec(sha256="c" * 64), b"m", "pkg")
    assert info.value.status == 409
    assert db.file(first.filename) == first and db.serial == serial


def test_failed_insert_leaves_nothing(db: SQLiteIndexDB) -> None:
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


def test_replace_remove_yank(db: SQLiteIndexDB) -> None:
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


def test_persistence_and_two_handles(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    a = SQLiteIndexDB(path)
    b = SQLiteIndexDB(path)
    try:
        a.add_file(_rec(), b"m", "pkg")
        assert b.file(_rec().filename) == _rec()  # another connection sees the commit
        assert b.serial == a.serial == 1
        with pytest.raises(DuplicateFileError):
            b.add_file(_rec(sha256="f" * 64), None, "pkg")
    finally:
        a.close()
        b.close()
    c = SQLiteIndexDB(path)
    try:
        assert c.file(_rec().filename) == _rec() and c.serial == 1
    finally:
        c.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    SQLiteIndexDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(PackageIndexError, match="newer"):
        SQLiteIndexDB(path)


def test_closed_database(tmp_path: Path) -> None:
    d = SQLiteIndexDB(":memory:")
    d.close()
    d.close()  # idempotent
    with pytest.raises(PackageIndexError, match="closed"):
        d.file("x")


def test_concurrent_writers(db: SQLiteIndexDB) -> None:
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
