"""RegistryApp's persistent patches: precompute() on its own worker, the PatchStore consulted
before computing, a restart serving from disk, a corrupt entry recomputed, the queue bound.

Real wheel-shaped releases (tests/_servers.make_versions) in a real directory; requests go
through the ASGI entry point. Waits are events (precompute_idle, gates), never sleeps.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from registry_core.delta import DeltaAggregator
from registry_core.errors import InvalidArgumentError
from registry_core.flags import FeatureFlags
from registry_core.server import MemoryStorage, RegistryApp
from registry_core.server._patch_store import PatchStore
from registry_core.wire import etag_for

ON = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": True})
W = "pkg/pkg-{}-py3-none-any.whl"
HANG = 60.0


def _ask(have: bytes) -> list[tuple[str, str]]:
    # as today's client asks: the reference engines and reconstruction (the precomputed mode)
    return [
        ("if-none-match", etag_for(have)),
        ("a-im", "rcdelta"),
        ("delta-engines", "zlib, miniz, recon, zstd-prefix"),
    ]


@pytest.fixture
def tree(tmp_path, releases):
    (tmp_path / "pkg").mkdir()
    for version, data in releases[:3]:
        (tmp_path / W.format(version)).write_bytes(data)
    return tmp_path, releases[:3]


def _app(root, **kw) -> RegistryApp:
    return RegistryApp(root, flags=ON, **kw)


def _patch_files(root) -> list[str]:
    top = os.path.join(root, ".registry-core", "patches")
    return sorted(
        os.path.join(d, f) for d, _, files in os.walk(top) for f in files if not f.startswith(".")
    )


def test_precomputed_patch_is_served_without_diffing(tree, call):
    root, ((v0, d0), (v1, d1), _) = tree
    app = _app(root)
    try:
        app.precompute(W.format(v1), [W.format(v0)])
        assert app.precompute_idle(HANG)
        assert app.stats.precomputed == 1 and app.patches_computed == 1
        assert len(_patch_files(root)) == 1  # persisted under the hidden state dir
        status, headers, body, _ = call(app, "GET", "/" + W.format(v1), _ask(d0))
        assert status == 226 and DeltaAggregator().apply(d0, body) == d1
        assert app.patches_computed == 1  # not diffed again
        # the store itself is never served
        rel = os.path.relpath(_patch_files(root)[0], root)
        assert call(app, "GET", "/" + rel)[0] == 404
    finally:
        app.close()


def test_restart_serves_from_disk_without_recomputing(tree, call):
    root, ((v0, d0), (v1, d1), _) = tree
    first = _app(root)
    first.precompute(W.format(v1), [W.format(v0)])
    assert first.precompute_idle(HANG)
    first.close()
    second = _app(root)  # a new process on the same directory, as far as the app knows
    try:
        head = call(second, "HEAD", "/" + W.format(v1), _ask(d0))
        assert head[0] == 226 and head[2] == b""  # HEAD reads the store, computes nothing
        status, headers, body, _ = call(second, "GET", "/" + W.format(v1), _ask(d0))
        assert status == 226 and DeltaAggregator().apply(d0, body) == d1
        assert second.patches_computed == 0
        assert second.stats.patches_from_store == 1  # once: then from the memory cache
        assert second.patch_store is not None and second.patch_store.stats.hits == 1
    finally:
        second.close()


def test_request_computed_patch_is_persisted(tree, call):
    root, ((v0, d0), (v1, d1), _) = tree
    first = _app(root)
    assert call(first, "GET", "/" + W.format(v1), _ask(d0))[0] == 226
    assert first.patches_computed == 1 and len(_patch_files(root)) == 1
    first.close()
    second = _app(root)
    try:
        assert call(second, "GET", "/" + W.format(v1), _ask(d0))[0] == 226
        assert second.patches_computed == 0
    finally:
        second.close()


def test_corrupt_store_entry_is_detected_and_recomputed(tree, call):
    root, ((v0, d0), (v1, d1), _) = tree
    first = _app(root)
    first.precompute(W.format(v1), [W.format(v0)])
    assert first.precompute_idle(HANG)
    first.close()
    (entry,) = _patch_files(root)
    with open(entry, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    second = _app(root)
    try:
        status, _, body, _ = call(second, "GET", "/" + W.format(v1), _ask(d0))
        assert status == 226 and DeltaAggregator().apply(d0, body) == d1  # never the bad one
        assert second.patch_store is not None and second.patch_store.stats.corrupt == 1
        assert second.patches_computed == 1 and second.stats.patches_from_store == 0
        third = PatchStore(os.path.dirname(os.path.dirname(entry)))
        assert (
            third.get(
                *(bytes.fromhex(h) for h in os.path.basename(entry).split(".")[0].split("-")),
                "reconz",
            )
            == body
        )  # rewritten intact
    finally:
        second.close()


def test_not_worth_result_is_stored_and_not_recomputed(tmp_path, call, releases):
    import random

    from _servers import make_wheel

    (tmp_path / "pkg").mkdir()
    d0 = releases[0][1]
    rng = random.Random(7)  # a "release" sharing nothing with the last: no patch saves 10 %
    d1 = make_wheel("9.0", [(f"m{i}.bin", rng.randbytes(4000)) for i in range(8)])
    (tmp_path / W.format("1.0")).write_bytes(d0)
    (tmp_path / W.format("9.0")).write_bytes(d1)
    first = _app(tmp_path)
    first.precompute(W.format("9.0"), [W.format("1.0")])
    assert first.precompute_idle(HANG)
    assert first.patches_computed == 1 and first.stats.precomputed == 1
    first.close()
    second = _app(tmp_path)
    try:
        status, _, body, _ = call(second, "GET", "/" + W.format("9.0"), _ask(d0))
        assert status == 200 and body == d1
        assert second.patches_computed == 0 and second.stats.patches_from_store == 1
    finally:
        second.close()


def test_precompute_skips_what_would_never_be_served(tree):
    root, ((v0, _), (v1, _), (v2, _)) = tree
    app = _app(root)
    try:
        app.precompute(W.format(v0), [W.format(v1)])  # target older than base
        app.precompute(W.format(v1), ["pkg/missing-1.0-py3-none-any.whl", "../escape", ".x"])
        assert app.precompute_idle(HANG)
        assert app.stats.precompute_skipped == 4 and app.stats.precomputed == 0
        app.precompute(W.format(v2), [W.format(v1), W.format(v0)])
        app.precompute(W.format(v2), [W.format(v1)])  # already there: skipped
        assert app.precompute_idle(HANG)
        assert app.stats.precomputed == 2 and app.stats.precompute_skipped == 5
        assert app.patches_computed == 2
        with pytest.raises(InvalidArgumentError):
            app.precompute(W.format(v2), W.format(v1))  # one string is not a list of bases
    finally:
        app.close()
    off = RegistryApp(root, flags=FeatureFlags(overrides={"DELTA_AGGREGATOR": False}))
    try:
        off.precompute(W.format(v2), [W.format(v0)])
        assert off.precompute_idle(HANG)
        assert off.stats.precompute_skipped == 1 and off.patches_computed == 0
    finally:
        off.close()


class _GatedStorage(MemoryStorage):
    """Reads by the precompute worker wait for ``gate``; ``entered`` says one is waiting."""

    def __init__(self, files):
        super().__init__(files)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def read(self, path):
        if threading.current_thread().name == "registry-core-precompute":
            self.entered.set()
            assert self.gate.wait(HANG), "test never opened the gate"
        return super().read(path)


def test_full_precompute_queue_drops_without_blocking(releases):
    storage = _GatedStorage({W.format(v): d for v, d in releases})
    app = RegistryApp(storage, flags=ON, precompute_queue=2)
    assert app.patch_store is None  # not a directory: no store unless given one
    target = W.format(releases[-1][0])
    bases = [W.format(v) for v, _ in releases[:-1]]
    try:
        app.precompute(target, bases[:1])
        assert storage.entered.wait(HANG)  # the worker is busy with the first job
        app.precompute(target, bases[1:])  # 3 more: 2 fit, 1 is dropped; returns at once

        async def from_the_loop() -> None:
            app.precompute(target, bases[:1])  # the event loop may call it too: dropped

        asyncio.run(from_the_loop())
        assert app.stats.precompute_dropped == 2
        assert not app.precompute_idle(0)  # still working, and the call did not wait
        storage.gate.set()
        assert app.precompute_idle(HANG)
        assert app.stats.precomputed == 3 and app.patches_computed == 3
    finally:
        storage.gate.set()
        app.close()


def test_close_drops_queued_jobs_and_a_later_call_starts_again(releases):
    storage = _GatedStorage({W.format(v): d for v, d in releases})
    app = RegistryApp(storage, flags=ON)
    target = W.format(releases[-1][0])
    bases = [W.format(v) for v, _ in releases[:-1]]
    try:
        app.precompute(target, bases)
        assert storage.entered.wait(HANG)
        app.close()  # the running job finishes, the three queued ones are dropped
        storage.gate.set()
        assert app.precompute_idle(HANG)
        assert app.stats.precomputed <= 1
        before = app.stats.precomputed
        app.precompute(target, bases[:1])  # a new worker
        assert app.precompute_idle(HANG)
        assert app.stats.precomputed + app.stats.precompute_skipped > before
    finally:
        storage.gate.set()
        app.close()


def test_patch_store_options(tmp_path, releases):
    (tmp_path / "pkg").mkdir()
    off = _app(tmp_path, patch_store=False)
    assert off.patch_store is None
    mine = PatchStore(tmp_path / "elsewhere", max_bytes=1 << 20)
    assert _app(tmp_path, patch_store=mine).patch_store is mine
    assert _app(MemoryStorage({}), patch_store=mine).patch_store is mine
    with pytest.raises(InvalidArgumentError):
        _app(MemoryStorage({}), patch_store=True)
    with pytest.raises(InvalidArgumentError):
        _app(tmp_path, patch_store="yes")
    with pytest.raises(InvalidArgumentError):
        _app(tmp_path, precompute_queue=0)
    assert not (tmp_path / ".registry-core").exists()  # nothing created until a write


def test_request_during_precompute_shares_its_computation(releases, call):
    """A request for the pair the precompute worker is diffing waits for that diff (one
    computation), instead of diffing again."""
    from registry_core._util import ThreadSingleFlight

    class _Notifying(ThreadSingleFlight):
        joined = threading.Event()

        def do(self, key, fn):
            if key in self._calls:
                self.joined.set()  # a second caller is about to wait for the first
            return super().do(key, fn)

    (_, d0), (v1, d1) = releases[:2]
    storage = _GatedStorage({W.format("1.0"): d0, W.format(v1): d1})
    app = RegistryApp(storage, flags=ON)
    app._patch_flight = flight = _Notifying()
    try:
        app.precompute(W.format(v1), [W.format("1.0")])
        assert storage.entered.wait(HANG)  # the worker holds the pair's flight

        async def main():
            request = asyncio.ensure_future(app.handle("GET", "/" + W.format(v1), dict(_ask(d0))))
            assert await asyncio.to_thread(flight.joined.wait, HANG)
            storage.gate.set()
            return await request

        status, _, body = asyncio.run(main())
        assert status == 226 and DeltaAggregator().apply(d0, body) == d1
        assert app.precompute_idle(HANG)
        assert app.patches_computed == 1 and flight.shared == 1
    finally:
        storage.gate.set()
        app.close()


def test_index_upload_precomputes_and_a_restart_serves_from_disk(tmp_path):
    """The whole path: two setuptools-built releases uploaded to an IndexApp over plain HTTP;
    the upgrade's patch is ready before anyone asks, and a restarted server still has it."""
    import hashlib

    import httpx

    from _packages import build_project
    from registry_core.index import Index
    from registry_core.server import IndexApp, start_server

    built = {
        v: build_project(tmp_path / "src", "Pre_Pkg", v, payload_kb=64) for v in ("1.0", "1.1")
    }
    store = tmp_path / "store"
    store.mkdir()
    index = Index(store)
    raw, _ = index.create_token()
    files = RegistryApp(index.storage, flags=ON)
    try:
        with (
            start_server(IndexApp(index, files=files), tls=False) as srv,
            httpx.Client(base_url=srv.url(), timeout=HANG) as client,
        ):
            for v in ("1.0", "1.1"):
                blob = built[v].wheel.read_bytes()
                r = client.post(
                    "/legacy/",
                    data={
                        ":action": "file_upload",
                        "protocol_version": "1",
                        "sha256_digest": hashlib.sha256(blob).hexdigest(),
                    },
                    files={"content": (built[v].wheel.name, blob)},
                    auth=("__token__", raw),
                )
                assert r.status_code == 200, r.text
            assert files.precompute_idle(HANG)
            assert files.stats.precomputed == 1 and files.patches_computed == 1
            old, new = built["1.0"].wheel.read_bytes(), built["1.1"].wheel.read_bytes()
            path = "/" + index.file(built["1.1"].wheel.name).path
            r = client.get(path, headers=dict(_ask(old)))
            assert r.status_code == 226 and DeltaAggregator().apply(old, r.content) == new
            assert files.patches_computed == 1  # the request did not diff
    finally:
        files.close()
    again = RegistryApp(index.storage, flags=ON)  # restart on the same directory
    try:
        with start_server(again, tls=False) as srv, httpx.Client(timeout=HANG) as client:
            r = client.get(srv.url(path), headers=dict(_ask(old)))
            assert r.status_code == 226 and DeltaAggregator().apply(old, r.content) == new
            assert again.patches_computed == 0 and again.stats.patches_from_store == 1
    finally:
        again.close()
        index.close()


def test_stored_patch_saving_too_little_for_this_server_is_not_sent(tree, call):
    root, ((v0, d0), (v1, d1), _) = tree
    first = _app(root)
    assert call(first, "GET", "/" + W.format(v1), _ask(d0))[0] == 226
    first.close()
    strict = _app(root, min_delta_saving=0.9999)  # this server wants more than the patch saves
    try:
        status, _, body, _ = call(strict, "GET", "/" + W.format(v1), _ask(d0))
        assert status == 200 and body == d1
        assert strict.patches_computed == 0 and strict.stats.patches_from_store == 1
    finally:
        strict.close()
