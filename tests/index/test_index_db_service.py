"""The Index service on PostgreSQL: real setuptools builds uploaded through one instance are
seen, yanked and guarded by another (two Index objects over one storage directory, one
PostgreSQL database for the index rows and the tenant store), as two server instances do."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from _packages import Built, build_project
from _postgres import shared_server
from registry_core.auth import Scope, TenantStore
from registry_core.errors import AuthenticationError, DuplicateFileError
from registry_core.index import FileRecord, Index, PostgreSQLIndexDB
from registry_core.storage import DirectoryStorage


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    root = tmp_path_factory.mktemp("pg-builds")
    out = {v: build_project(root, "Pg_Demo", v, payload_kb=4) for v in ("1.0", "2.0")}
    out["1.0-other"] = build_project(tmp_path_factory.mktemp("pg-other"), "Pg_Demo", "1.0")
    return out


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[tuple[Index, Index]]:
    dsn = shared_server().create_database("svc")
    (tmp_path / "files").mkdir()
    made: list[Index] = []
    for i in range(2):
        store = TenantStore(dsn, tenant="acme", busy_timeout=5.0 + i)  # a pool each
        db = PostgreSQLIndexDB(dsn, namespace="acme/main", max_connections=4 + i)
        made.append(Index(DirectoryStorage(tmp_path / "files"), db, auth=store, tenant="acme"))
    yield made[0], made[1]
    for ix in made:
        ix.close()
        ix.db.close()
        ix.auth.close()


def _upload(index: Index, path: Path, token: str) -> FileRecord:
    with path.open("rb") as f:
        return index.upload(path.name, f, token=token)


def _token(index: Index) -> str:
    raw, _ = index.auth.create_token(
        owner=None, scopes=[Scope.parse("acme", "read,upload,create,yank:main")]
    )
    return raw


def test_upload_here_read_and_yank_there(
    instances: tuple[Index, Index], builds: dict[str, Built]
) -> None:
    a, b = instances
    token = _token(a)
    w = _upload(a, builds["1.0"].wheel, token)
    s = _upload(b, builds["1.0"].sdist, token)  # the token made on a works on b
    assert w.sha256 == hashlib.sha256(builds["1.0"].wheel.read_bytes()).hexdigest()
    assert {r.filename for r in b.files("pg-demo")} == {w.filename, s.filename}
    assert a.serial == b.serial == 2
    meta = b.metadata(w.filename)
    assert meta is not None and hashlib.sha256(meta).hexdigest() == w.metadata_sha256
    assert [p.display_name for p in b.projects()] == ["Pg_Demo"]
    b.yank(w.filename, "broken")
    assert a.file(w.filename).yanked == "broken"  # type: ignore[union-attr]
    with pytest.raises(DuplicateFileError):  # other bytes under a stored name, via a
        _upload(a, builds["1.0-other"].wheel, token)
    assert a.storage.read(w.path) == builds["1.0"].wheel.read_bytes()
    a.revoke_token(a.tokens()[0].token_id)
    with pytest.raises(AuthenticationError):  # revoked on a: refused on b at once
        _upload(b, builds["2.0"].wheel, token)


def test_the_same_upload_on_both_at_once(
    instances: tuple[Index, Index], builds: dict[str, Built]
) -> None:
    a, b = instances
    token = _token(a)
    barrier = threading.Barrier(4)
    results: list[FileRecord] = []
    errors: list[BaseException] = []

    def work(ix: Index) -> None:
        try:
            barrier.wait()
            results.append(_upload(ix, builds["2.0"].wheel, token))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(ix,)) for ix in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len({r.sha256 for r in results}) == 1
    assert len(a.files("pg-demo")) == 1 and a.serial == 1
