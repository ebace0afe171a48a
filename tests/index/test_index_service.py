"""The Index service over a real directory store, with real setuptools builds."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from _dists import core_metadata, make_wheel
from _packages import Built, build_project
from registry_core.errors import (
    AuthenticationError,
    DuplicateFileError,
    InvalidArgumentError,
    PermissionDeniedError,
    ProjectNotFoundError,
    UploadRejectedError,
)
from registry_core.index import FileRecord, Index, SQLiteIndexDB
from registry_core.storage import DirectoryStorage, MemoryStorage, validate_path


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    root = tmp_path_factory.mktemp("builds")
    out = {
        v: build_project(root, "Svc_Demo", v, requires_python=">=3.8", payload_kb=8)
        for v in ("1.0", "1.1", "2.0")
    }
    # the same filenames as 1.0 with other bytes (a rebuild with a different payload)
    other = tmp_path_factory.mktemp("other")
    out["1.0-other"] = build_project(other, "Svc_Demo", "1.0", payload_kb=9)
    return out


@pytest.fixture
def index(tmp_path: Path) -> Index:
    ix = Index(tmp_path)
    yield ix  # type: ignore[misc]
    ix.close()


@pytest.fixture
def token(index: Index) -> str:
    return index.create_token(description="test")[0]


def _upload(index: Index, path: Path, token: str | None, **kw: str) -> FileRecord:
    with path.open("rb") as f:
        return index.upload(path.name, f, token=token, **kw)


def _tree(root: Path) -> list[str]:
    """Every file under root, relative, hidden state included."""
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_upload_wheel_and_sdist(index: Index, token: str, builds: dict[str, Built]) -> None:
    b = builds["1.0"]
    serial = index.serial
    w = _upload(index, b.wheel, token, name="svc-demo", version="1.0")
    s = _upload(index, b.sdist, token)
    assert index.serial > serial
    assert w.project == "svc-demo" and w.kind == "wheel" and w.tags == {"py3-none-any"}
    assert w.path == f"svc-demo/{b.wheel.name}"
    assert w.sha256 == hashlib.sha256(b.wheel.read_bytes()).hexdigest()
    assert w.size == b.wheel.stat().st_size
    assert w.requires_python == ">=3.8"
    assert w.uploader == f"token:{index.tokens()[0].token_id}"  # a standalone token
    assert s.kind == "sdist" and s.path == f"svc-demo/{b.sdist.name}"
    stored = index.storage.stat(w.path)
    assert stored is not None and stored.sha256.hex() == w.sha256
    assert index.storage.read(w.path) == b.wheel.read_bytes()
    meta = index.metadata(w.filename)
    assert meta is not None and b"Name: Svc_Demo" in meta
    assert hashlib.sha256(meta).hexdigest() == w.metadata_sha256
    assert index.file(w.filename) == w
    assert index.project("SVC.demo").display_name == "Svc_Demo"  # type: ignore[union-attr]
    assert [p.name for p in index.projects()] == ["svc-demo"]
    assert {r.filename for r in index.files("Svc_Demo")} == {w.filename, s.filename}


def test_files_sorted_and_previous(index: Index, token: str, builds: dict[str, Built]) -> None:
    for v in ("2.0", "1.0", "1.1"):  # out of order on purpose
        _upload(index, builds[v].wheel, token)
        _upload(index, builds[v].sdist, token)
    files = index.files("svc-demo")
    assert [f.version for f in files] == ["1.0", "1.0", "1.1", "1.1", "2.0", "2.0"]
    newest_wheel = index.file(builds["2.0"].wheel.name)
    assert newest_wheel is not None
    prev = index.previous(newest_wheel)
    assert [p.filename for p in prev] == [builds["1.1"].wheel.name, builds["1.0"].wheel.name]
    assert [p.filename for p in index.previous(newest_wheel, n=1)] == [builds["1.1"].wheel.name]
    sdist = index.file(builds["1.1"].sdist.name)
    assert sdist is not None
    assert [p.filename for p in index.previous(sdist)] == [builds["1.0"].sdist.name]
    oldest = index.file(builds["1.0"].wheel.name)
    assert oldest is not None and index.previous(oldest) == []


def test_previous_matches_wheel_tags(index: Index, token: str) -> None:
    def up(filename: str) -> FileRecord:
        name, version = filename.split("-")[:2]
        data = make_wheel(name, version)
        return index.upload(filename, io.BytesIO(data), token=token)

    up("tagged-1.0-cp311-cp311-linux_x86_64.whl")
    up("tagged-1.0-py3-none-any.whl")
    target = up("tagged-2.0-cp311-cp311-linux_x86_64.whl")
    assert [p.filename for p in index.previous(target)] == [
        "tagged-1.0-cp311-cp311-linux_x86_64.whl"
    ]


def test_same_bytes_again_returns_the_record(
    index: Index, token: str, builds: dict[str, Built]
) -> None:
    calls: list[FileRecord] = []
    index.on_upload = calls.append
    first = _upload(index, builds["1.0"].wheel, token)
    serial = index.serial
    again = _upload(index, builds["1.0"].wheel, token)
    assert again == first
    assert index.serial == serial
    assert calls == [first]  # the callback runs for new files only


def test_other_bytes_same_filename_409(index: Index, token: str, builds: dict[str, Built]) -> None:
    first = _upload(index, builds["1.0"].wheel, token)
    other = builds["1.0-other"].wheel
    assert other.name == first.filename and other.read_bytes() != builds["1.0"].wheel.read_bytes()
    with pytest.raises(DuplicateFileError) as info:
        _upload(index, other, token)
    assert info.value.status == 409
    assert index.storage.read(first.path) == builds["1.0"].wheel.read_bytes()
    assert index.file(first.filename) == first


def test_digests(index: Index, token: str, builds: dict[str, Built]) -> None:
    data = builds["1.0"].sdist.read_bytes()
    good = dict(
        sha256=hashlib.sha256(data).hexdigest().upper(),
        md5=hashlib.md5(data).hexdigest(),
        blake2_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
    )
    for algo in good:
        bad = dict(good, **{algo: "0" * len(good[algo])})
        with pytest.raises(UploadRejectedError, match=f"{algo} digest sent") as info:
            _upload(index, builds["1.0"].sdist, token, **bad)
        assert info.value.status == 400
    with pytest.raises(UploadRejectedError, match="hex digits"):
        _upload(index, builds["1.0"].sdist, token, sha256="xyz")
    assert list(index.storage.walk()) == [] and index.files("svc-demo") == []
    rec = _upload(index, builds["1.0"].sdist, token, **good)
    assert rec.sha256 == good["sha256"].lower()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "other"}, "form's name"),
        ({"version": "1.1"}, "form's version"),
        ({"version": "one"}, "not a PEP 440"),
    ],
)
def test_form_fields_must_match(
    index: Index, token: str, builds: dict[str, Built], fields: dict[str, str], message: str
) -> None:
    with pytest.raises(UploadRejectedError, match=message):
        _upload(index, builds["1.0"].wheel, token, **fields)
    assert list(index.storage.walk()) == []
    # spelled differently but equal: accepted
    _upload(index, builds["1.0"].wheel, token, name="SVC.Demo", version="1.0.0")


def test_auth(index: Index, builds: dict[str, Built]) -> None:
    with pytest.raises(AuthenticationError) as info:
        _upload(index, builds["1.0"].wheel, None)
    assert info.value.status == 401
    with pytest.raises(AuthenticationError):
        _upload(index, builds["1.0"].wheel, "rc-0123456789abcdef-" + "A" * 43)
    scoped, _ = index.create_token(scope="someone-else")
    with pytest.raises(PermissionDeniedError) as info2:
        _upload(index, builds["1.0"].wheel, scoped)
    assert info2.value.status == 403
    assert list(index.storage.walk()) == [] and index.projects() == []
    mine, _ = index.create_token(scope="svc-demo")
    _upload(index, builds["1.0"].wheel, mine)


def test_oversize_413(tmp_path: Path, builds: dict[str, Built]) -> None:
    wheel = builds["1.0"].wheel
    with Index(tmp_path, max_file_bytes=wheel.stat().st_size - 1) as index:
        raw, _ = index.create_token()
        with pytest.raises(UploadRejectedError) as info:
            _upload(index, wheel, raw)
        assert info.value.status == 413
        assert list(index.storage.walk()) == []
    with Index(tmp_path, max_file_bytes=wheel.stat().st_size) as index:
        _upload(index, wheel, raw)


def test_on_upload_failure_does_not_fail_the_upload(
    index: Index, token: str, builds: dict[str, Built], caplog: pytest.LogCaptureFixture
) -> None:
    def boom(record: FileRecord) -> None:
        raise RuntimeError("callback broke")

    index.on_upload = boom
    rec = _upload(index, builds["1.0"].wheel, token)
    assert index.file(rec.filename) == rec
    assert "on_upload callback failed" in caplog.text


class _FailingDB(SQLiteIndexDB):
    """Fails add_file after the bytes were stored; records what a reader saw meanwhile."""

    def __init__(self, path: str, root: Path) -> None:
        super().__init__(path)
        self.root = root
        self.seen: list[str] = []

    def add_file(self, record, metadata, display_name):  # type: ignore[no-untyped-def]
        self.seen = _tree(self.root)
        raise RuntimeError("database went away")


def test_crash_after_store_leaves_nothing(tmp_path: Path, builds: dict[str, Built]) -> None:
    storage = DirectoryStorage(tmp_path)
    db = _FailingDB(":memory:", tmp_path)
    index = Index(storage, db)
    raw, _ = index.create_token()
    wheel = builds["1.0"].wheel
    with pytest.raises(RuntimeError, match="went away"):
        _upload(index, wheel, raw)
    # while the row was being written the file was at its final path and nothing else of
    # the upload was at a servable path
    final = f"svc-demo/{wheel.name}"
    assert final in db.seen
    servable = [p for p in db.seen if validate_path(p) is not None]
    assert servable == [final]
    # afterwards: no file, no row, no staging leftovers
    assert list(storage.walk()) == []
    assert db.files() == [] and db.projects() == []
    assert [p for p in _tree(tmp_path) if ".sqlite3" not in p] == []  # only the databases
    db.close()


def test_storage_with_a_foreign_file_at_the_path(tmp_path: Path, builds: dict[str, Built]) -> None:
    """A file someone put at the upload's path behind the index's back: other bytes are a
    409, and a failed insert never deletes a file the upload did not create."""
    wheel = builds["1.0"].wheel
    (tmp_path / "svc-demo").mkdir()
    (tmp_path / "svc-demo" / wheel.name).write_bytes(b"not the wheel")
    with Index(tmp_path) as index:
        raw, _ = index.create_token()
        with pytest.raises(DuplicateFileError):
            _upload(index, wheel, raw)
    (tmp_path / "svc-demo" / wheel.name).write_bytes(wheel.read_bytes())
    storage = DirectoryStorage(tmp_path)
    db = _FailingDB(":memory:", tmp_path)
    index = Index(storage, db)
    raw, _ = index.create_token()
    with pytest.raises(RuntimeError):
        _upload(index, wheel, raw)
    assert (tmp_path / "svc-demo" / wheel.name).read_bytes() == wheel.read_bytes()
    db.close()


def test_concurrent_uploads(index: Index, token: str, builds: dict[str, Built]) -> None:
    paths = [builds[v].wheel for v in ("1.0", "1.1", "2.0")] * 3 + [builds["1.0"].sdist] * 3
    barrier = threading.Barrier(len(paths))
    results: list[FileRecord] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(p: Path) -> None:
        try:
            barrier.wait()
            r = _upload(index, p, token)
            with lock:
                results.append(r)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == len(paths)
    assert len({r.filename for r in results}) == 4
    by_name = {}
    for r in results:
        assert by_name.setdefault(r.filename, r) == r  # every caller got the same record
    assert len(index.files("svc-demo")) == 4
    assert sorted(index.storage.walk()) == sorted(r.path for r in by_name.values())


def test_yank(index: Index, token: str, builds: dict[str, Built]) -> None:
    rec = _upload(index, builds["1.0"].wheel, token)
    s = index.serial
    index.yank(rec.filename, "broken build")
    assert index.file(rec.filename).yanked == "broken build"  # type: ignore[union-attr]
    index.yank(rec.filename)
    assert index.file(rec.filename).yanked == ""  # type: ignore[union-attr]
    index.unyank(rec.filename)
    assert index.file(rec.filename).yanked is None  # type: ignore[union-attr]
    assert index.serial == s + 3
    with pytest.raises(ProjectNotFoundError) as info:
        index.yank("nope-1.0.tar.gz")
    assert info.value.status == 404
    with pytest.raises(ProjectNotFoundError):
        index.unyank("nope-1.0.tar.gz")


def test_memory_storage_and_persistence(tmp_path: Path, builds: dict[str, Built]) -> None:
    with Index(MemoryStorage()) as mem:
        raw, _ = mem.create_token()
        rec = _upload(mem, builds["1.0"].sdist, raw)
        assert mem.storage.read(rec.path) == builds["1.0"].sdist.read_bytes()
    with Index(str(tmp_path)) as disk:
        raw, _ = disk.create_token()
        rec = _upload(disk, builds["1.0"].sdist, raw)
    assert (tmp_path / ".registry-core" / "index.sqlite3").is_file()
    with Index(tmp_path) as again:
        assert again.file(rec.filename) == rec
        assert again.authenticate(raw, "svc-demo")


def test_repr_and_arguments(tmp_path: Path) -> None:
    with Index(tmp_path) as index:
        raw, _ = index.create_token()
        assert raw not in repr(index)
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidArgumentError):
            Index(MemoryStorage(), max_file_bytes=bad)  # type: ignore[arg-type]


def test_metadata_and_filename_checks_at_upload(index: Index, token: str) -> None:
    data = make_wheel("pkg", "1.0", metadata=core_metadata("other", "1.0"))
    with pytest.raises(UploadRejectedError, match="names project"):
        index.upload("pkg-1.0-py3-none-any.whl", io.BytesIO(data), token=token)
    with pytest.raises(UploadRejectedError, match="not a distribution filename"):
        index.upload("pkg-1.0.exe", io.BytesIO(data), token=token)
    assert list(index.storage.walk()) == []
