"""The writable storage API the index publishes through: atomic, immutable, digest-checked."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from registry_core.errors import DigestMismatchError, DuplicateFileError, InvalidArgumentError
from registry_core.storage import (
    STATE_DIR,
    DirectoryStorage,
    MemoryStorage,
    Storage,
    WritableStorage,
    validate_path,
)


@pytest.fixture(params=["directory", "memory"])
def store(request: pytest.FixtureRequest, tmp_path):
    if request.param == "directory":
        return DirectoryStorage(tmp_path)
    return MemoryStorage()


def test_both_stores_implement_the_protocols(store) -> None:
    assert isinstance(store, Storage)
    assert isinstance(store, WritableStorage)


def test_put_stores_bytes_and_file_objects(store) -> None:
    a = store.put("pkg/a-1.0.tar.gz", b"alpha")
    b = store.put("pkg/b-1.0.tar.gz", io.BytesIO(b"beta" * 100_000))
    assert a.sha256 == hashlib.sha256(b"alpha").digest() and a.size == 5
    assert store.read("pkg/b-1.0.tar.gz") == b"beta" * 100_000 and b.size == 400_000
    assert store.find_by_sha256(a.sha256) == "pkg/a-1.0.tar.gz"
    assert sorted(store.walk()) == ["pkg/a-1.0.tar.gz", "pkg/b-1.0.tar.gz"]


def test_same_bytes_again_is_idempotent_other_bytes_refused(store) -> None:
    first = store.put("p/x.whl", b"one")
    assert store.put("p/x.whl", io.BytesIO(b"one")).sha256 == first.sha256
    with pytest.raises(DuplicateFileError):
        store.put("p/x.whl", b"two")
    assert store.read("p/x.whl") == b"one"


def test_digest_mismatch_stores_nothing(store, tmp_path) -> None:
    with pytest.raises(DigestMismatchError):
        store.put("p/y.whl", io.BytesIO(b"payload"), sha256=hashlib.sha256(b"other").digest())
    assert store.stat("p/y.whl") is None
    assert list(store.walk()) == []
    if isinstance(store, DirectoryStorage):  # no temporary file left behind either
        leftovers = [f for _, _, files in os.walk(tmp_path) for f in files]
        assert leftovers == []


def test_put_checks_a_matching_digest(store) -> None:
    info = store.put("p/z.whl", b"zz", sha256=hashlib.sha256(b"zz").digest())
    assert info.size == 2


@pytest.mark.parametrize(
    "bad", ["../x", "/abs/../../x", "a/./b", ".hidden", "a/.registry-core/x", "", "a\\b", "a//b"]
)
def test_bad_paths_refused(store, bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        store.put(bad, b"x")


def test_delete(store) -> None:
    store.put("p/d.whl", b"d")
    assert store.delete("p/d.whl") is True
    assert store.stat("p/d.whl") is None and store.delete("p/d.whl") is False


def test_state_dir_is_hidden_and_never_walked(tmp_path) -> None:
    store = DirectoryStorage(tmp_path)
    state = store.state_dir
    assert state == tmp_path.resolve() / STATE_DIR and state.is_dir()
    (state / "index.sqlite3").write_bytes(b"private")
    store.put("p/a.whl", b"a")
    assert list(store.walk()) == ["p/a.whl"]
    assert validate_path(f"{STATE_DIR}/index.sqlite3") is None
    assert store.stat(f"{STATE_DIR}/index.sqlite3") is None


def test_racing_writers_of_one_name_cannot_both_win(tmp_path) -> None:
    store = DirectoryStorage(tmp_path)
    results: list[object] = []
    barrier = threading.Barrier(4)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            results.append(store.put("p/race.whl", bytes([i]) * 300_000))
        except DuplicateFileError as exc:
            results.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if not isinstance(r, DuplicateFileError)]
    assert len(winners) == 1
    data = store.read("p/race.whl")
    assert len(set(data)) == 1 and len(data) == 300_000  # whole, from one writer


def test_put_refuses_a_symlinked_directory_leaving_the_root(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    store = DirectoryStorage(root)
    with pytest.raises(InvalidArgumentError):
        store.put("evil/x.whl", b"x")
    assert list(outside.iterdir()) == []
