"""The fetch policy over the transport seam: Transport(transport=httpx.ASGITransport(RegistryApp)).

The same RegistryApp the loopback tests serve, called in-process (no sockets): delta, dcz,
304, the full fallback, off-loop application with a deadline, atomic ``dest`` writes. Plus
the hash-count pin, against the real server on loopback (its hashing happens on its own
threads, so only the client's is counted).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import stat
import sys
import threading

import httpx
import pytest

from _servers import RESOLVE, flags, url
from registry_core.errors import InvalidArgumentError
from registry_core.server import RegistryApp
from registry_core.transport import Transport

V = "/simple/pkg/pkg-{}-py3-none-any.whl"
BASE = "https://registry.test"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def app(artifacts):
    return RegistryApp(artifacts[0], flags=flags())


def seam(app, **kw):
    kw.setdefault("flags", flags())
    return Transport(transport=httpx.ASGITransport(app=app), **kw)


def test_delta_fetch_through_the_seam(app, artifacts):
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.2")]

    async def main():
        async with seam(app) as t:
            return await t.fetch(BASE + V.format("1.2"), have=old), t.stats

    data, stats = run(main())
    assert data == new
    assert stats["fetch_delta"] == 1 and stats["fetch_bytes_wire"] < len(new) // 10


def test_304_and_dcz_through_the_seam(app, artifacts):
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.1")]

    async def main():
        async with seam(app) as t:
            same = await t.fetch(BASE + V.format("1.1"), have=new)
        async with seam(app, flags=flags(DELTA_AGGREGATOR=False)) as t:
            dcz = await t.fetch(BASE + V.format("1.1"), have=old)
            return same, dcz, t.stats

    same, dcz, stats = run(main())
    assert same == new and dcz == new and stats["fetch_dcz"] == 1


def test_transport_must_be_an_httpx_transport():
    with pytest.raises(InvalidArgumentError):
        Transport(transport=object())  # type: ignore[arg-type]


def loopback(pki, **kw):
    kw.setdefault("flags", flags())
    return Transport(verify=pki[0], resolve=RESOLVE, http3=False, **kw)


@pytest.mark.network
def test_fetch_dest_gets_umask_permissions_not_0600(pki, server, artifacts, tmp_path):
    dest = tmp_path / "pkg.whl"
    old_mask = os.umask(0o022)
    try:

        async def main():
            async with loopback(pki) as t:
                return await t.fetch(url(server, V.format("1.2")), dest=dest)

        data = run(main())
    finally:
        os.umask(old_mask)
    assert dest.read_bytes() == data == artifacts[1][V.format("1.2")]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["pkg.whl"]


def test_flags_are_resolved_once_at_construction(app, artifacts):
    """Transport reads its flags once: no flag lookup per request."""
    from registry_core.flags import FeatureFlags

    class Counting(FeatureFlags):
        lookups = 0

        def is_enabled(self, name, context=None):
            Counting.lookups += 1
            return super().is_enabled(name, context)

    f = Counting(overrides={"DELTA_AGGREGATOR": True, "ZSTD_COMPRESSION": True})
    t = Transport(transport=httpx.ASGITransport(app=app), flags=f)
    at_construction = Counting.lookups
    old = artifacts[1][V.format("1.0")]

    async def main():
        async with t:
            for v in ("1.1", "1.2"):
                await t.fetch(BASE + V.format(v), have=old)
            await t.get(BASE + "/small.txt")

    run(main())
    assert at_construction == 6 and Counting.lookups == at_construction
    assert t.options.delta and t.options.zstd


# -- off the loop, with a deadline -------------------------------------------------------------


def _from_client() -> bool:
    """Whether a registry_core.transport frame is on the calling thread's stack (the server
    on loopback runs in this process too, on threads whose stacks have none)."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_globals.get("__name__", "").startswith("registry_core.transport"):
            return True
        f = f.f_back
    return False


def _gate_apply(monkeypatch, gate_wait):
    """Wrap the real DeltaAggregator.apply: when the client calls it, it first runs
    ``gate_wait()`` (on whatever thread apply is called from) and records where it ran."""
    from registry_core.delta import DeltaAggregator

    real = DeltaAggregator.apply
    seen: list = []
    finished = threading.Event()

    def apply(self, old, patch):
        if not _from_client():
            return real(self, old, patch)
        seen.append((threading.current_thread().name, gate_wait()))
        try:
            return real(self, old, patch)
        finally:
            seen.append("done")
            finished.set()

    monkeypatch.setattr(DeltaAggregator, "apply", apply)
    return seen, finished


@pytest.mark.network
def test_patch_is_applied_off_the_event_loop(pki, server, artifacts, monkeypatch):
    """A small base used to be patched inline on the loop: a ticker task could not run until
    apply returned. Here apply waits until the ticker has ticked: it only can off the loop."""
    started, ticked = threading.Event(), threading.Event()

    def gate() -> bool:
        started.set()
        return ticked.wait(10)

    seen, _ = _gate_apply(monkeypatch, gate)
    old, new = artifacts[1][V.format("1.1")], artifacts[1][V.format("1.2")]
    assert len(old) < 256 << 10  # the size that was applied inline

    async def main():
        ticks_during_apply = 0
        stop = False

        async def ticker():
            nonlocal ticks_during_apply
            while not stop:
                if started.is_set():  # count only the turns the loop gets while apply runs
                    ticks_during_apply += 1
                    if ticks_during_apply >= 20:
                        ticked.set()
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        try:
            async with loopback(pki) as t:
                return await t.fetch(url(server, V.format("1.2")), have=old), t.stats
        finally:
            stop = True
            await task

    data, stats = run(main())
    assert data == new and stats["fetch_delta"] == 1
    assert seen[-1] == "done" and seen[0][1] is True, seen
    assert seen[0][0] != threading.main_thread().name


@pytest.mark.network
def test_apply_past_its_deadline_falls_back_to_the_full_artifact(
    pki, server, artifacts, monkeypatch, tmp_path
):
    release = threading.Event()
    seen, finished = _gate_apply(monkeypatch, lambda: release.wait(30))
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.2")]
    dest = tmp_path / "out.whl"

    async def main():
        async with loopback(pki, apply_timeout=0.2) as t:
            return await t.fetch(url(server, V.format("1.2")), have=old, dest=dest), t.stats

    try:
        data, stats = run(main())
    finally:
        release.set()
        finished.wait(30)  # the abandoned worker finishes on its own: let it, then go on
    assert data == new == dest.read_bytes()
    assert stats["fetch_delta_timeout"] == 1 and stats["fetch_delta_fallbacks"] == 1, stats
    assert stats["fetch_full"] == 1 and stats["fetch_delta"] == 0
    assert seen[-1] == "done" and len(seen) == 2


@pytest.mark.parametrize("bad", [0, -1.0])
def test_apply_timeout_must_be_positive(bad):
    with pytest.raises(InvalidArgumentError):
        Transport(apply_timeout=bad)


# -- hash once ---------------------------------------------------------------------------------


def _count_client_hashes(monkeypatch, named):
    """Count SHA-2 computations over the byte strings in ``named`` made with a
    registry_core.transport frame on the stack (the server on loopback hashes on its own
    threads, whose stacks have none)."""
    counts: collections.Counter[str] = collections.Counter()
    real_sha256, real_new = hashlib.sha256, hashlib.new
    by_value = {bytes(v): k for k, v in named.items()}

    def note(data):
        if data is not None and len(data) > 64:
            label = by_value.get(bytes(data))
            if label is not None and _from_client():
                counts[label] += 1

    def sha256(data=None, **kw):
        note(data)
        return real_sha256(data, **kw) if data is not None else real_sha256(**kw)

    def new(name, data=None, **kw):
        note(data)
        return real_new(name, data, **kw) if data is not None else real_new(name, **kw)

    monkeypatch.setattr(hashlib, "sha256", sha256)
    monkeypatch.setattr(hashlib, "new", new)
    return counts


@pytest.mark.network
@pytest.mark.parametrize("zstd", [True, False], ids=["dcz-offered", "no-dcz"])
def test_have_and_result_are_hashed_once(pki, server, artifacts, monkeypatch, zstd):
    """Per delta fetch the client hashed ``have`` 3-4 times and the result 3 times. Now:
    ``have`` once on the client plus once in DeltaAggregator.apply's base check; the result
    once, in apply (its declared target is compared with Repr-Digest and the ETag)."""
    old, new = artifacts[1][V.format("1.0")], artifacts[1][V.format("1.2")]
    counts = _count_client_hashes(monkeypatch, {"have": old, "new": new})

    async def main():
        async with loopback(pki, flags=flags(ZSTD_COMPRESSION=zstd)) as t:
            return await t.fetch(url(server, V.format("1.2")), have=old), t.stats

    data, stats = run(main())
    assert data == new and stats["fetch_delta"] == 1
    assert counts == {"have": 2, "new": 1}, counts


@pytest.mark.network
def test_full_artifact_is_hashed_once(pki, server, artifacts, monkeypatch):
    """Content-Digest, Repr-Digest and the ETag cover the same bytes: one SHA-256 (of a plain
    body: first downloads off, whatever the server precomputed for earlier tests)."""
    new = artifacts[1][V.format("1.2")]
    counts = _count_client_hashes(monkeypatch, {"new": new})

    async def main():
        async with loopback(pki, first_downloads="never") as t:
            return await t.fetch(url(server, V.format("1.2"))), t.stats

    data, stats = run(main())
    assert data == new and stats["fetch_full"] == 1
    assert counts == {"new": 1}, counts


def test_large_bodies_are_verified_and_decoded_off_the_loop(app, artifacts, monkeypatch):
    """Hashing / inflating a large body on the event loop stalled every other request."""
    from registry_core.transport import _client

    real = _client.verify_body
    threads = []

    def spy(raw, headers, what, digests):
        threads.append((len(raw), threading.current_thread() is threading.main_thread()))
        return real(raw, headers, what, digests)

    monkeypatch.setattr(_client, "verify_body", spy)

    async def main():
        async with seam(app) as t:
            big = await t.get(BASE + "/blob/1mib.bin")
            small = await t.get(BASE + "/small.txt")
            return big, small

    big, small = run(main())
    assert big.content == artifacts[1]["/blob/1mib.bin"]
    assert small.content == artifacts[1]["/small.txt"]
    assert threads == [(1 << 20, False), (len(small.raw_content), True)]
