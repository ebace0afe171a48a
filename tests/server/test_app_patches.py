"""Patch work: one shared computation per pair (cancellation-safe), bounded waits, engines."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from registry_core.delta import DeltaAggregator
from registry_core.flags import FeatureFlags
from registry_core.server import MemoryStorage, RegistryApp
from registry_core.wire import etag_for

ON = {"DELTA_AGGREGATOR": True, "DELTA_STABLE": True}
W = "pkg/pkg-{}-py3-none-any.whl"


class GatedStorage(MemoryStorage):
    """Reads of ``gated`` paths by patch workers wait until ``gate`` is set."""

    def __init__(self, files, gated=()):
        super().__init__(files)
        self.gated = set(gated)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def read(self, path):
        if path in self.gated and threading.current_thread().name.startswith("registry-core-patch"):
            self.entered.set()
            assert self.gate.wait(30), "test never opened the gate"
        return super().read(path)


def _storage(releases, gated=()):
    return GatedStorage({W.format(v): d for v, d in releases}, gated=gated)


def _ask(have, *more):
    return {"if-none-match": ", ".join(etag_for(h) for h in (have, *more)), "a-im": "rcdelta"}


async def _until(predicate):
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def test_cancelled_first_requester_does_not_fail_the_second(releases):
    (_, d0), (v1, d1) = releases[:2]
    storage = _storage(releases, gated=[W.format(v1)])
    app = RegistryApp(storage, flags=FeatureFlags(overrides=ON))
    path = "/" + W.format(v1)

    async def main():
        first = asyncio.ensure_future(app.handle("GET", path, _ask(d0), client="a"))
        await asyncio.to_thread(storage.entered.wait, 10)
        second = asyncio.ensure_future(app.handle("GET", path, _ask(d0), client="b"))
        await _until(lambda: app.queue._flight.shared == 1)  # the second joined the flight
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        storage.gate.set()
        return await second

    status, headers, body = asyncio.run(main())
    assert status == 226 and DeltaAggregator().apply(d0, body) == d1
    assert app.patches_computed == 1


def test_slow_patch_answers_full_file_then_serves_the_cached_patch(releases):
    (_, d0), (v1, d1) = releases[:2]
    storage = _storage(releases, gated=[W.format(v1)])
    app = RegistryApp(storage, flags=FeatureFlags(overrides=ON), patch_timeout=0.05)
    path = "/" + W.format(v1)

    async def main():
        status, _, body = await app.handle("GET", path, _ask(d0))
        assert (status, body) == (200, d1) and app.stats.patch_timeouts == 1
        storage.gate.set()  # the job finishes in its worker and caches the patch
        await _until(lambda: app.queue.pending == 0)
        return await app.handle("GET", path, _ask(d0))

    status, _, body = asyncio.run(main())
    assert status == 226 and DeltaAggregator().apply(d0, body) == d1
    assert app.patches_computed == 1


def test_head_never_computes_but_reports_a_cached_patch(releases):
    (_, d0), (v1, d1) = releases[:2]
    app = RegistryApp(_storage(releases), flags=FeatureFlags(overrides=ON))
    path = "/" + W.format(v1)

    async def main():
        head = await app.handle("HEAD", path, _ask(d0))
        assert head[0] == 200 and dict(head[1])["content-length"] == str(len(d1))
        assert app.patches_computed == 0
        get = await app.handle("GET", path, _ask(d0))
        head = await app.handle("HEAD", path, _ask(d0))
        return get, head

    get, head = asyncio.run(main())
    assert get[0] == head[0] == 226 and head[2] == b""
    assert dict(head[1])["content-length"] == str(len(get[2]))
    assert app.patches_computed == 1


def test_client_without_the_reference_engines_gets_a_binary_patch(releases):
    from registry_core.wire._delta import parse_delta_request

    if not hasattr(parse_delta_request({}), "engines"):
        pytest.skip("wire/ does not parse Delta-Engines yet")
    (_, d0), (v1, d1) = releases[:2]
    app = RegistryApp(_storage(releases), flags=FeatureFlags(overrides=ON))
    path = "/" + W.format(v1)

    async def main():
        plain = await app.handle("GET", path, {**_ask(d0), "delta-engines": "zlib"})
        full = await app.handle("GET", path, {**_ask(d0), "delta-engines": "zlib, miniz"})
        return plain, full

    plain, full = asyncio.run(main())
    assert plain[0] == full[0] == 226
    assert DeltaAggregator.inspect(plain[2]).method == "BINARY"
    assert DeltaAggregator.inspect(full[2]).method == "ARCHIVE"
    for _, _, body in (plain, full):
        assert DeltaAggregator().apply(d0, body) == d1
    assert app.patches_computed == 2


def test_consecutive_updates_and_client_two_behind(releases):
    app = RegistryApp(_storage(releases), flags=FeatureFlags(overrides=ON))

    async def main():
        out = []
        for (_, old), (v, new) in itertools.pairwise(releases):
            status, _, body = await app.handle("GET", "/" + W.format(v), _ask(old))
            out.append((status, DeltaAggregator().apply(old, body) == new))
        return out

    assert asyncio.run(main()) == [(226, True)] * (len(releases) - 1)


def test_options_are_checked():
    from registry_core.errors import InvalidArgumentError

    for bad in (
        {"patch_workers": 0},
        {"patch_queue": -1},
        {"patch_timeout": 0},
        {"max_diff_bytes": True},
        {"min_delta_saving": 1.0},
        {"chunk_size": 0},
    ):
        with pytest.raises(InvalidArgumentError):
            RegistryApp(MemoryStorage(), **bad)


def test_content_codings_do_not_wait_behind_diffs(releases):
    (_, d0), (v1, _) = releases[:2]
    doc = b'{"name": "pkg", "files": []}\n' * 3000
    storage = _storage(releases, gated=[W.format(v1)])
    storage.put("pkg/index.json", doc)
    app = RegistryApp(
        storage,
        flags=FeatureFlags(overrides={**ON, "ZSTD_COMPRESSION": True}),
        patch_workers=1,
    )

    async def main():
        diff = asyncio.ensure_future(app.handle("GET", "/" + W.format(v1), _ask(d0), client="a"))
        await asyncio.to_thread(storage.entered.wait, 10)  # the only patch worker is busy
        got = await app.handle("GET", "/pkg/index.json", {"accept-encoding": "zstd"}, client="b")
        storage.gate.set()
        await diff
        return got

    status, headers, _ = asyncio.run(main())
    assert status == 200 and dict(headers)["content-encoding"] == "zstd"


def _gnu_gzip(data: bytes) -> bytes:
    import shutil
    import subprocess

    gzip = shutil.which("gzip")
    if gzip is None:
        pytest.skip("GNU gzip is not installed")
    return subprocess.run(
        [gzip, "-9", "-n", "-c"], input=data, capture_output=True, check=True
    ).stdout


def _wheel_with_gnu_gzip_member(version: str, head: int) -> bytes:
    """A wheel holding a ``.json.gz`` written by GNU gzip that no zlib setting reproduces (the
    way botocore ships its service models); ``head`` changes the first record's length, so the
    compressed bytes after it all move."""
    import io
    import json
    import random
    import zipfile

    rng = random.Random(1)
    items = [{"id": -1, "name": "new" * head}] + [
        {"id": i, "name": "".join(rng.choice("abcdefghijklmnop") for _ in range(12))}
        for i in range(3000)
    ]
    doc = json.dumps({"version": version, "items": items})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("pkg/data.json.gz", (2024, 1, 1, 0, 0, 0))
        zf.writestr(info, _gnu_gzip(doc.encode()), zipfile.ZIP_STORED)
        meta = zipfile.ZipInfo(f"pkg-{version}.dist-info/METADATA", (2024, 1, 1, 0, 0, 0))
        zf.writestr(meta, f"Name: pkg\nVersion: {version}\n", zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def test_reconstructed_streams_go_only_to_clients_that_name_recon():
    """A client naming ``recon`` gets the GNU gzip member rebuilt from its content (small
    patch); for one naming only the reference engines (or nothing: an earlier client) the
    member stays compressed in a version 1 layout, so no patch pays and the plain file is sent.
    Each mode is computed and cached apart."""
    d0 = _wheel_with_gnu_gzip_member("1.0", 1)
    d1 = _wheel_with_gnu_gzip_member("1.1", 7)
    storage = MemoryStorage({W.format("1.0"): d0, W.format("1.1"): d1})
    app = RegistryApp(storage, flags=FeatureFlags(overrides=ON))
    path = "/" + W.format("1.1")

    async def main():
        new = await app.handle(
            "GET", path, {**_ask(d0), "delta-engines": "zlib, miniz, recon, zstd-prefix"}
        )
        ref = await app.handle("GET", path, {**_ask(d0), "delta-engines": "zlib, miniz"})
        old = await app.handle("GET", path, _ask(d0))  # no Delta-Engines: predates the field
        return new, ref, old

    new, ref, old = asyncio.run(main())
    assert new[0] == 226 and DeltaAggregator.inspect(new[2]).method == "ARCHIVE"
    assert DeltaAggregator().apply(d0, new[2]) == d1
    assert len(new[2]) * 20 < len(d1)  # the member diffed expanded, not compressed
    # without reconstruction the member stays compressed and a patch does not pay: both
    # clients get the plain file, and that mode's result was computed once, apart from recon
    assert ref[0] == old[0] == 200 and ref[2] == old[2] == d1
    assert app.patches_computed == 2


def test_zstd_prefix_patches_go_only_to_clients_that_name_it():
    """A plain (non-archive) pair where ZSTD_PREFIX wins: a client naming ``zstd-prefix`` may
    get one; a client that does not (every earlier one) never does."""
    import json

    def page(n: int) -> bytes:
        files = [{"filename": f"pkg-1.{i}.tar.gz", "sha256": f"{i:064x}"} for i in range(n)]
        return json.dumps({"name": "pkg", "files": files}, indent=1).encode()

    d0, d1 = page(400), page(401)
    storage = MemoryStorage({"pkg/pkg-1.0.json": d0, "pkg/pkg-1.1.json": d1})
    app = RegistryApp(storage, flags=FeatureFlags(overrides=ON))
    path = "/pkg/pkg-1.1.json"

    async def main():
        new_engines = "zlib, miniz, recon, zstd-prefix"
        new = await app.handle("GET", path, {**_ask(d0), "delta-engines": new_engines})
        old = await app.handle("GET", path, {**_ask(d0), "delta-engines": "zlib, miniz, recon"})
        return new, old

    new, old = asyncio.run(main())
    assert new[0] == old[0] == 226
    assert DeltaAggregator.inspect(new[2]).method == "ZSTD_PREFIX"
    assert DeltaAggregator.inspect(old[2]).method != "ZSTD_PREFIX"
    for _, _, body in (new, old):
        assert DeltaAggregator().apply(d0, body) == d1
