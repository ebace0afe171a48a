"""Hostile cache state and hostile Redis replies (issue 10, R13 to R17).

Every test builds its hostile input itself: garbage written over the SQLite index, a writer
killed in the middle of a put (a real subprocess that ``os._exit``s from a hook), keys of the
wrong Redis type on a real ``redis-server``, and a tiny RESP server on a loopback socket that
answers with garbage or with a bulk reply far larger than the store's limit. The expected
outcome is always a ``registry_core.errors.CacheError`` (or, with ``fail_open=True``, a counted
miss), bounded memory where a reply could be large, and nothing left behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _redis import RedisServer
from registry_core.cache import BuildCache, LocalStore, RedisStore
from registry_core.errors import CacheError
from registry_core.flags import FeatureFlags

MIB = 1 << 20
PAGE = 4096


def _objects(root: Path) -> set[str]:
    return {p.parent.name + p.name for p in (root / "objects").glob("*/*")}


def _filled_store(root: Path, n: int = 2000) -> None:
    with LocalStore(root, fsync=False) as s:
        for i in range(n):
            s.put(f"key-{i:05d}", f"value {i}".encode())


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    """A store of 2,000 entries (an index of a few hundred pages), built once and copied."""
    root = tmp_path_factory.mktemp("filled") / "cache"
    _filled_store(root)
    return root


def _copy(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    shutil.copytree(template, root)
    return root


def _in_thread(fn: Callable[[], object], timeout: float = 120.0) -> object:
    """Run ``fn`` in a thread, bounded by ``timeout`` (an upper bound for a hang, not a
    duration assertion); returns its result or re-raises its exception."""
    out: list[object] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            err.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "cache operation hung"
    if err:
        raise err[0]
    return out[0]


def _ops(store: LocalStore) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("get", lambda: store.get("key-00010")),
        ("put", lambda: store.put("new-key", b"new value")),
        ("contains", lambda: "key-00020" in store),
        ("len", lambda: len(store)),
        ("keys_lru", store.keys_lru),
        ("delete", lambda: store.delete("key-00030")),
        ("total_bytes", lambda: store.total_bytes),
    ]


def _corrupt(index: Path, mode: str, seed: int) -> None:
    size = index.stat().st_size
    rng = random.Random(seed)
    with open(index, "r+b") as f:
        if mode == "all-but-header-page":
            f.seek(PAGE)
            f.write(rng.randbytes(size - PAGE))
        elif mode == "schema-page":  # page 1 after the 100-byte file header
            f.seek(100)
            f.write(rng.randbytes(PAGE - 100))
        elif mode == "random-pages":
            for _ in range(20):
                f.seek(rng.randrange(1, size // PAGE) * PAGE)
                f.write(rng.randbytes(PAGE))
        else:  # whole file
            f.write(rng.randbytes(size))


MODES = ["all-but-header-page", "schema-page", "random-pages", "whole-file"]


# -- R13: garbage over the index ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_garbage_over_index_pages_is_a_cache_error(tmp_path, filled, mode, seed):
    root = _copy(filled, tmp_path)
    before = _objects(root)
    _corrupt(root / "index.sqlite", mode, seed)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            store = LocalStore(root, fsync=False)
        except Exception as exc:
            errors.append(exc)
            return
        with store:
            for _, op in _ops(store):
                try:
                    op()
                except Exception as exc:
                    errors.append(exc)

    _in_thread(attempt)
    assert errors, "a corrupt index went unnoticed"
    assert all(isinstance(e, CacheError) for e in errors), [type(e) for e in errors]
    assert "corrupt" in str(errors[0]) and str(root) in str(errors[0])
    assert _objects(root) == before  # a corrupt index never costs the objects


@pytest.mark.parametrize("seed", [1, 2])
def test_index_corrupted_while_open_is_a_cache_error(tmp_path, filled, seed):
    root = _copy(filled, tmp_path)
    store = LocalStore(root, fsync=False)
    assert len(store) == 2000
    store.close()  # the next operation reconnects and reads the damaged file
    _corrupt(root / "index.sqlite", "random-pages", seed)
    raised: list[BaseException] = []
    for name, op in _ops(store):
        try:
            _in_thread(op)
        except Exception as exc:
            raised.append(exc)
            assert isinstance(exc, CacheError), (name, type(exc), exc)
    assert raised


# -- R14: a failed open keeps nothing open ---------------------------------------------------


def _fds_on(path: Path) -> int:
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(target):
                count += 1
        except OSError:
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds through /proc")
@pytest.mark.parametrize("mode", MODES)
def test_failed_open_closes_its_connection_and_leaves_no_lock(tmp_path, filled, mode):
    root = _copy(filled, tmp_path)
    index = root / "index.sqlite"
    _corrupt(index, mode, 7)
    with pytest.raises(CacheError) as first:
        _in_thread(lambda: LocalStore(root, fsync=False))
    # the exception (and its traceback, which a caller may keep) holds no connection
    assert first.value is not None
    assert _fds_on(index) == 0
    # nothing holds the write lock: a connection that never waits gets it at once
    probe = sqlite3.connect(index, timeout=0, isolation_level=None)
    try:
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            assert "locked" not in str(exc) and "busy" not in str(exc), exc
    finally:
        probe.close()
    # and a second open fails the same way, not on a lock (lock_timeout=0: it never waits)
    with pytest.raises(CacheError) as second:
        _in_thread(lambda: LocalStore(root, fsync=False, lock_timeout=0))
    assert "locked" not in str(second.value)
    assert _fds_on(index) == 0


# -- R15: killed writers, orphans, missing objects -------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, sys
    import registry_core.cache._local as local
    from registry_core.cache import LocalStore

    root, where = sys.argv[1], sys.argv[2]
    store = LocalStore(root, fsync=True)
    store.put("kept", b"kept value")
    if where == "before-rename":        # temp file written, not yet moved into objects/
        local.os.replace = lambda *a: os._exit(17)
    else:                               # object moved in and inserted, not committed
        local.LocalStore._touch = staticmethod(lambda *a: os._exit(17))
    store.put("victim", b"victim value " * 1000)
    os._exit(0)                         # not reached
    """
)


@pytest.mark.parametrize("where", ["before-rename", "before-commit"])
def test_killed_writer_leaves_nothing_after_the_next_open(tmp_path, where):
    root = tmp_path / "cache"
    out = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), where],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 17, out.stderr
    victim = hashlib.sha256(b"victim value " * 1000).hexdigest()
    if where == "before-rename":
        assert list((root / "tmp").iterdir()), "the killed writer left no temp file"
    else:
        assert victim in _objects(root), "the killed writer left no unindexed object"
    store = LocalStore(root)
    assert list((root / "tmp").iterdir()) == []
    assert _objects(root) == {hashlib.sha256(b"kept value").hexdigest()}
    assert "victim" not in store and store.get("kept") == b"kept value"
    assert (store.swept, store.orphans) == ((1, 0) if where == "before-rename" else (0, 1))
    assert store.total_bytes == len(b"kept value")
    assert store.put("victim", b"victim value " * 1000)  # and the store works on


def test_index_deleted_by_hand_does_not_keep_orphans(tmp_path, caplog):
    root = tmp_path / "cache"
    _filled_store(root, n=50)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (root / name).unlink(missing_ok=True)
    store = LocalStore(root)
    assert len(store) == 0 and store.total_bytes == 0
    assert _objects(root) == set() and store.orphans == 50
    assert "reconciled" in caplog.text


def test_indexed_objects_missing_or_truncated_are_dropped_at_open(tmp_path):
    root = tmp_path / "cache"
    with LocalStore(root) as s:
        for name in ("gone", "short", "fine"):
            s.put(name, name.encode() * 100)
    objects = root / "objects"
    gone = hashlib.sha256(b"gone" * 100).hexdigest()
    short = hashlib.sha256(b"short" * 100).hexdigest()
    (objects / gone[:2] / gone[2:]).unlink()
    (objects / short[:2] / short[2:]).write_bytes(b"short")
    store = LocalStore(root)
    assert "gone" not in store and "short" not in store and "fine" in store
    assert store.dropped == 2 and len(store) == 1
    assert store.total_bytes == len(b"fine" * 100)
    assert _objects(root) == {hashlib.sha256(b"fine" * 100).hexdigest()}


def test_a_live_writers_temp_file_is_not_swept(tmp_path):
    """The sweep takes tmp.lock exclusively; a writer holds it shared while it writes."""
    root = tmp_path / "cache"
    LocalStore(root).close()
    written, go = threading.Event(), threading.Event()

    class Paused(LocalStore):
        def _write_tmp(self, value: bytes) -> str:
            tmp = super()._write_tmp(value)
            written.set()
            assert go.wait(60)
            return tmp

    writer = Paused(root)
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(writer.put("live", b"live value")))
    t.start()
    try:
        assert written.wait(60)
        other = LocalStore(root)  # opens (and reconciles) while the put is in flight
        assert len(list((root / "tmp").iterdir())) == 1 and other.swept == 0
    finally:
        go.set()
        t.join(60)
    assert result == [True] and other.get("live") == b"live value"


# -- Redis: a real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis-hostile"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.network
@pytest.mark.parametrize("kind", ["list", "hash", "set", "zset", "stream"])
def test_wrong_type_key_is_a_corrupt_entry_and_is_rebuilt(redis_url, kind, caplog):
    import redis

    prefix = f"hostile-{uuid.uuid4().hex}:"
    raw = redis.Redis.from_url(redis_url)
    name = prefix + "k"
    {
        "list": lambda: raw.rpush(name, b"x"),
        "hash": lambda: raw.hset(name, "f", b"x"),
        "set": lambda: raw.sadd(name, b"x"),
        "zset": lambda: raw.zadd(name, {"x": 1}),
        "stream": lambda: raw.xadd(name, {"f": b"x"}),
    }[kind]()
    store = RedisStore(redis_url, prefix=prefix)  # strict: no fail_open
    assert store.get("k") is None  # a miss, not a CacheError, and not forever
    assert store.corrupt == 1 and store.errors == 0 and raw.exists(name) == 0
    assert "WRONGTYPE" in caplog.text
    raw.rpush(name, b"again")
    cache = BuildCache(remote=store, flags=FeatureFlags({"INCREMENTAL_CACHE": True}))
    builds: list[int] = []
    assert cache.get_or_build("k", lambda: builds.append(1) or b"built") == b"built"
    assert cache.get_or_build("k", lambda: builds.append(1) or b"built") == b"built"
    assert builds == [1] and raw.type(name) == b"string"


@pytest.mark.network
def test_huge_foreign_value_is_read_bounded(redis_url):
    import redis

    prefix = f"hostile-{uuid.uuid4().hex}:"
    raw = redis.Redis.from_url(redis_url)
    raw.set(prefix + "big", b"RC1" + bytes(32) + bytes(32 * MIB))
    store = RedisStore(redis_url, prefix=prefix, max_value_bytes=MIB)
    tracemalloc.start()
    try:
        assert store.get("big") is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.too_large == 1
    # measured 3.1 MiB (GETRANGE of limit + 1 bytes: socket buffer and reply copies); the
    # value is 32 MiB, so 8 MiB allows for noise and still fails a whole read
    assert peak < 8 * MIB, peak
    raw.delete(prefix + "big")


# -- Redis: a hostile server on a loopback socket ---------------------------------------------


class FakeRESP:
    """A loopback server speaking just enough RESP2 to take commands, answering the store's
    data commands (GETRANGE, SET, DEL, PEXPIRE, PING) with ``reply(connection)``."""

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.commands: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            while True:
                head = f.readline()
                if not head.startswith(b"*"):
                    return
                args = []
                for _ in range(int(head[1:])):
                    size = int(f.readline()[1:])
                    args.append(f.read(size + 2)[:-2])
                cmd = args[0].upper()
                self.commands.append(cmd)
                if cmd in (b"CLIENT", b"SELECT", b"HELLO", b"AUTH"):
                    conn.sendall(b"+OK\r\n")
                else:
                    self.reply(conn)
        except OSError:
            pass
        finally:
            f.close()
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _send(payload: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(payload)


HOSTILE_REPLIES = {
    "integer-not-a-number": b":notanumber\r\n",  # ValueError from int() before
    "bulk-length-not-a-number": b"$abc\r\n",
    "array-length-not-a-number": b"*abc\r\n",
    "integer-instead-of-bulk": b":5\r\n",  # TypeError from len(5) before
    "array-instead-of-bulk": b"*1\r\n$1\r\nx\r\n",
    "negative-bulk-length": b"$-5\r\n",
    "resp3-map": b"%1\r\n+a\r\n+b\r\n",
    "unknown-type-byte": b"?what\r\n",
    "bulk-shorter-than-declared": b"$100\r\nshort\r\n",
    "array-of-a-million": b"*1000000\r\n",
    "nested-arrays": b"*1\r\n" * 50 + b":1\r\n",
    "closes-at-once": b"",
}


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail_open", "strict"])
@pytest.mark.parametrize("payload", list(HOSTILE_REPLIES.values()), ids=list(HOSTILE_REPLIES))
def test_hostile_reply_is_a_cache_error_or_a_counted_miss(payload, fail_open):
    def reply(conn: socket.socket) -> None:
        if payload:
            conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)  # and nothing more: the client must not wait forever

    server = FakeRESP(reply)
    try:
        store = RedisStore(server.url, timeout=5, retries=0, fail_open=fail_open)
        for op in (lambda: store.get("k"), lambda: store.put("k", b"v"), store.ping):
            if fail_open:
                assert op() in (None, False)
            else:
                with pytest.raises(CacheError):
                    op()
        assert store.errors == 3
        cache = BuildCache(remote=store, flags=FeatureFlags({"INCREMENTAL_CACHE": True}))
        if fail_open:  # the build goes on without the remote tier
            assert cache.get_or_build("k", lambda: b"built") == b"built"
        else:
            with pytest.raises(CacheError):
                cache.get_or_build("k", lambda: b"built")
        store.close()
    finally:
        server.close()


def _stream_bulk(declared: int, sent_at_most: int) -> Callable[[socket.socket], None]:
    zeros = bytes(MIB)  # allocated before the test traces memory

    def reply(conn: socket.socket) -> None:
        conn.sendall(b"$%d\r\n" % declared)
        try:
            for _ in range(sent_at_most // MIB):
                conn.sendall(zeros)
        except OSError:
            return  # the client hung up: what a bounded client does
        conn.shutdown(socket.SHUT_WR)

    return reply


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail_open", "strict"])
def test_512_mib_bulk_reply_is_refused_before_it_is_read(fail_open):
    """The server declares 512 MiB (and would stream 64 MiB of it): the client refuses the
    header against max_value_bytes and hangs up, holding at most a socket buffer."""
    server = FakeRESP(_stream_bulk(512 * MIB, 64 * MIB))
    try:
        store = RedisStore(
            server.url, timeout=10, retries=0, max_value_bytes=MIB, fail_open=fail_open
        )
        tracemalloc.start()
        try:
            if fail_open:
                assert store.get("k") is None
            else:
                with pytest.raises(CacheError, match="refused"):
                    store.get("k")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * MIB, peak  # measured 0.35 MiB; before the fix 64 MiB and more
        assert store.errors == 1
    finally:
        server.close()


def test_endless_reply_line_is_refused_with_bounded_memory():
    """8 MiB without a line end: refused after 64 KiB, never buffered whole."""
    endless = b"+" + b"x" * (8 * MIB)  # built before tracing: the server's bytes, not ours

    def reply(conn: socket.socket) -> None:
        try:
            conn.sendall(endless)
        except OSError:
            return
        conn.shutdown(socket.SHUT_WR)

    server = FakeRESP(reply)
    try:
        store = RedisStore(server.url, timeout=10, retries=0, fail_open=True)
        tracemalloc.start()
        try:
            assert store.get("k") is None
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert store.errors == 1
        assert peak < 2 * MIB, peak  # measured 0.24 MiB; before the fix 8 MiB and more
    finally:
        server.close()


def test_fake_server_is_a_real_socket_round_trip():
    """The fake server itself: an honest reply of a stored value is a hit (so a hostile
    reply's failure above is the reply's doing, not the harness's)."""
    value = b"honest"
    blob = b"RC1" + hashlib.sha256(value).digest() + value
    server = FakeRESP(_send(b"$%d\r\n%s\r\n" % (len(blob), blob)))
    try:
        store = RedisStore(server.url, timeout=5, retries=0)
        assert store.get("k") == value and server.commands[-1] == b"GETRANGE"
    finally:
        server.close()
