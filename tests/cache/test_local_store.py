from __future__ import annotations

import hashlib
import multiprocessing
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.cache import LocalStore, cache_key
from registry_core.errors import CacheError, InvalidArgumentError, InvalidTypeError


def obj_path(root: Path, value: bytes) -> Path:
    d = hashlib.sha256(value).hexdigest()
    return root / "objects" / d[:2] / d[2:]


@settings(max_examples=50)
@given(st.dictionaries(st.text(min_size=1, max_size=20), st.binary(max_size=2048), max_size=8))
def test_round_trip(tmp_path_factory, items):
    root = tmp_path_factory.mktemp("ls")
    with LocalStore(root, fsync=False) as store:
        for k, v in items.items():
            assert store.put(k, v)
        for k, v in items.items():
            assert store.get(k) == v
            assert obj_path(root, v).read_bytes() == v  # content-addressed layout
        assert len(store) == len(items)
        assert store.get("\x00never-stored") is None


def test_reopen_sees_entries_and_dedups(tmp_path: Path):
    with LocalStore(tmp_path) as s:
        s.put("a", b"same")
        s.put("b", b"same")
        assert s.total_bytes == 4  # one object for two keys
        s.put("a", b"other")
        assert s.get("b") == b"same"
    with LocalStore(tmp_path) as s:
        assert s.get("a") == b"other" and s.get("b") == b"same"
        assert s.delete("b") and not obj_path(tmp_path, b"same").exists()
        assert list((tmp_path / "tmp").iterdir()) == []  # no temp files left behind


def test_corrupted_object_is_a_miss_and_is_removed(tmp_path: Path, caplog):
    s = LocalStore(tmp_path)
    s.put("k", b"good value")
    p = obj_path(tmp_path, b"good value")
    p.chmod(0o644)
    p.write_bytes(b"evil value")  # same size, different content
    assert s.get("k") is None
    assert not p.exists() and "k" not in s and s.corrupt == 1
    assert "corrupted" in caplog.text
    assert s.put("k", b"good value") and s.get("k") == b"good value"  # healed


def test_missing_object_is_a_miss(tmp_path: Path):
    s = LocalStore(tmp_path)
    s.put("k", b"v")
    obj_path(tmp_path, b"v").unlink()
    assert s.get("k") is None and "k" not in s and s.corrupt == 1


def test_lru_eviction_by_bytes(tmp_path: Path):
    s = LocalStore(tmp_path, max_bytes=300, fsync=False)
    for name in "abc":
        s.put(name, name.encode() * 100)
    assert s.total_bytes == 300
    assert s.get("a") is not None  # a is now the most recent: b is the oldest
    s.put("d", b"d" * 100)
    assert s.keys_lru() == ["c", "a", "d"]
    assert s.get("b") is None and not obj_path(tmp_path, b"b" * 100).exists()
    s.put("e", b"e" * 250)  # needs the room of three entries
    assert s.keys_lru() == ["e"] and s.total_bytes == 250 and s.evicted == 4
    assert s.put("huge", b"x" * 301) is False and "huge" not in s


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(InvalidArgumentError):
        LocalStore(tmp_path, max_bytes=0)
    s = LocalStore(tmp_path)
    with pytest.raises(InvalidTypeError):
        s.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        s.get(b"k")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        s.get("")


def test_unusable_root_and_broken_index_raise_cache_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(CacheError, match="cannot create"):
        LocalStore(blocker / "cache")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "index.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(CacheError, match="index"):
        LocalStore(tmp_path / "c")


def test_threads_share_one_store(tmp_path: Path):
    s = LocalStore(tmp_path, max_bytes=1 << 20, fsync=False)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(40):
                k = cache_key(i % 10)
                v = f"value {i % 10}".encode()
                s.put(k, v)
                got = s.get(k)
                assert got is None or got == v  # never a torn or foreign value
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {s.get(cache_key(i)) for i in range(10)} == {f"value {i}".encode() for i in range(10)}


def _writer(root: str, tag: int, n: int, q, go) -> None:
    s = LocalStore(root, max_bytes=4000, fsync=False)
    go.wait(30)  # both processes start writing together
    bad = 0
    for i in range(n):
        k = f"k{i % 20}"
        s.put(k, f"{k}:{i % 20}".encode() * 20)
        got = s.get(f"k{(i * 7) % 20}")
        if got is not None and not got.startswith(f"k{(i * 7) % 20}:".encode()):
            bad += 1
    q.put(bad)


def test_two_processes_write_concurrently(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    q, go = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), t, 200, q, go)) for t in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert results == [0, 0]
    s = LocalStore(tmp_path, max_bytes=4000)
    assert s.total_bytes <= 4000
    files = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    # index and directory agree: every indexed object is on disk and verifies, no orphans
    assert len(files) == len({hashlib.sha256(f.read_bytes()).hexdigest() for f in files})
    for k in s.keys_lru():
        assert s.get(k) is not None
    assert len(files) == len(s)  # values are distinct per key here
