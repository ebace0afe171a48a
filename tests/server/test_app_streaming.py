"""Full bodies are streamed from storage in pieces; storage never runs on the event loop."""

from __future__ import annotations

import asyncio
import threading

from registry_core.flags import FeatureFlags
from registry_core.server import DirectoryStorage, MemoryStorage, RegistryApp
from registry_core.wire import etag_for


def test_full_body_is_sent_in_chunks_with_more_body(tmp_path, call):
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4
    (tmp_path / "blob.bin").write_bytes(data)
    app = RegistryApp(tmp_path, chunk_size=64 << 10)
    status, headers, body, messages = call(app, "GET", "/blob.bin")
    pieces = [m for m in messages[1:]]
    assert status == 200 and body == data and int(headers["content-length"]) == len(data)
    assert len(pieces) == 17
    assert all(len(m["body"]) == 64 << 10 for m in pieces[:-1]) and pieces[-1]["body"] == b"tail"
    assert all(m["more_body"] for m in pieces[:-1]) and not pieces[-1]["more_body"]


def test_empty_file_and_head(tmp_path, call):
    (tmp_path / "empty.bin").write_bytes(b"")
    app = RegistryApp(tmp_path)
    status, headers, body, messages = call(app, "GET", "/empty.bin")
    assert status == 200 and body == b"" and headers["content-length"] == "0"
    assert messages[-1].get("more_body", False) is False
    status, headers, body, messages = call(app, "HEAD", "/empty.bin")
    assert status == 200 and len(messages) == 2


class LoopWatchingStorage(DirectoryStorage):
    """Each storage call waits until the event loop runs a callback it scheduled: on the loop
    thread that can never happen (the call holds the loop), so ``on_loop`` records it."""

    def __init__(self, root, loop_box):
        super().__init__(root)
        self.loop_box = loop_box
        self.calls: list[tuple[str, bool]] = []

    def _check(self, what):
        loop = self.loop_box[0]
        ran = threading.Event()
        loop.call_soon_threadsafe(ran.set)
        self.calls.append((what, ran.wait(5)))  # upper bound for the blocked case only

    def stat(self, path):
        self._check("stat")
        return super().stat(path)

    def open(self, path):
        self._check("open")
        return super().open(path)

    def find_by_sha256(self, sha256):
        self._check("find")
        return super().find_by_sha256(sha256)


def test_storage_never_blocks_the_event_loop(tmp_path, asgi):
    big = b"\x01" * (8 << 20)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pkg-1.0.bin").write_bytes(big)
    box = []
    storage = LoopWatchingStorage(tmp_path, box)
    app = RegistryApp(storage, flags=FeatureFlags(overrides={"DELTA_AGGREGATOR": True}))

    async def main():
        box.append(asyncio.get_running_loop())
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        status, _, body, _ = await asgi(
            app,
            "GET",
            "/p/pkg-1.0.bin",
            [("if-none-match", etag_for(b"unknown")), ("a-im", "rcdelta")],
        )
        stop.set()
        await t
        return status, body, ticks

    status, body, ticks = asyncio.run(main())
    assert status == 200 and body == big
    assert all(off_loop for _, off_loop in storage.calls), storage.calls
    assert {w for w, _ in storage.calls} == {"stat", "open", "find"}
    assert ticks > 1  # the loop ran other work while the 8 MiB file was hashed and read


def test_unread_clients_hold_one_chunk_each(tmp_path, asgi):
    """N clients that never read: each holds what one ``send`` took, not the file."""
    import tracemalloc

    size = 16 << 20
    (tmp_path / "big.bin").write_bytes(b"\x02" * size)
    app = RegistryApp(tmp_path, chunk_size=64 << 10)
    assert app.storage.stat("big.bin") is not None  # hashed before measuring
    clients = 8

    async def main():
        started = asyncio.Event()
        stuck = asyncio.Event()  # never set: the client never reads
        got_first = 0

        async def slow_send(message):
            nonlocal got_first
            if message["type"] == "http.response.body":
                got_first += 1
                if got_first == clients:
                    started.set()
                await stuck.wait()

        tasks = [
            asyncio.ensure_future(asgi(app, "GET", "/big.bin", send=slow_send))
            for _ in range(clients)
        ]
        await asyncio.wait_for(started.wait(), 30)
        peak = tracemalloc.get_traced_memory()[1]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return peak

    tracemalloc.start()
    try:
        peak = asyncio.run(main())
    finally:
        tracemalloc.stop()
    # measured: ~1.2 MiB (8 x 64 KiB pieces, threads, loop); whole-file reads: 8 x 16 MiB
    assert peak < 4 << 20, peak


def test_store_without_open_still_serves(call):
    class ThreeMethods:
        def __init__(self):
            self.inner = MemoryStorage({"a.txt": b"hello"})

        def stat(self, path):
            return self.inner.stat(path)

        def read(self, path):
            return self.inner.read(path)

        def find_by_sha256(self, sha256):
            return self.inner.find_by_sha256(sha256)

    app = RegistryApp(ThreeMethods())
    status, headers, body, _ = call(app, "GET", "/a.txt", [("range", "bytes=1-3")])
    assert status == 206 and body == b"ell"
    assert call(app, "GET", "/a.txt")[2] == b"hello"


def test_file_replaced_after_stat_is_stat_again(tmp_path, call):
    """Between the stat (ETag, digests) and the open, the file was replaced: the answer
    describes the bytes actually sent."""
    (tmp_path / "a.txt").write_bytes(b"old content")

    class Racy(DirectoryStorage):
        swapped = False

        def open(self, path):
            if not self.swapped:
                self.swapped = True
                (tmp_path / "a.txt").write_bytes(b"new content, longer")
            return super().open(path)

    app = RegistryApp(Racy(tmp_path))
    status, headers, body, _ = call(app, "GET", "/a.txt")
    assert status == 200 and body == b"new content, longer"
    assert headers["etag"] == etag_for(body) and headers["content-length"] == str(len(body))


def test_file_removed_after_stat_is_404(tmp_path, call):
    (tmp_path / "a.txt").write_bytes(b"soon gone")

    class Vanishing(DirectoryStorage):
        def open(self, path):
            (tmp_path / "a.txt").unlink(missing_ok=True)
            return super().open(path)

    status, _, _, _ = call(RegistryApp(Vanishing(tmp_path)), "GET", "/a.txt")
    assert status == 404
