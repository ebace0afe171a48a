"""First downloads through Transport.fetch: EXPANDED patches decoded while they arrive.

A small ASGI app on a real loopback hypercorn server (TLS, the trustme CA) answers per
docs/wire.md section 3 "First downloads" -- and, under other path prefixes, the ways a server
can get it wrong: a corrupt or truncated patch, another base, no Delta-Base, a patch that is not
EXPANDED (each: dropped, one plain GET), digests contradicting the patch (DigestMismatchError,
no fallback), a 226 to the plain GET (TransportError). Then the real RegistryApp serving the
EXPANDED patch it precomputed. Synchronisation is by events, never sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _servers import RESOLVE, flags, make_versions
from registry_core.delta import DeltaAggregator
from registry_core.errors import (
    BaseMismatchError,
    DigestMismatchError,
    RegistryCoreError,
    TransportError,
)
from registry_core.flags import FeatureFlags
from registry_core.server import RegistryApp, start_server
from registry_core.transport import Transport, _firstdl
from registry_core.transport._firstdl import StreamingDecode
from registry_core.transport._policy import EMPTY_SHA256, FetchPolicy

EMPTY_TAG = f'"{EMPTY_SHA256.hex()}"'
ENGINES = frozenset({"zlib", "miniz", "recon", "zstd-prefix"})


def run(coro):
    return asyncio.run(coro)


def sf_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def tag(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()}"'


@pytest.fixture(scope="module")
def releases():
    """Two real wheels and their EXPANDED patches (DeltaAggregator.recompress)."""
    (_, old), (_, new) = make_versions(2)
    agg = DeltaAggregator()
    patches = {old: agg.recompress(old), new: agg.recompress(new)}
    assert all(p is not None and len(p) < len(d) for d, p in patches.items())
    return old, new, patches


class WireApp:
    """Answers ``/<mode>/pkg.whl`` per the wire, or breaks it the way ``mode`` says.

    Every request's headers are recorded (``seen``: (mode, headers)). ``split``: the 226 body
    goes out in two halves, the second only once ``release`` is set (the test sets it from
    the client's decoder: proof that decoding started before the body ended).
    """

    def __init__(self, data: bytes, other: bytes, patches: dict[bytes, bytes]) -> None:
        self.data, self.other, self.patches = data, other, patches
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        mode = scope["path"].strip("/").split("/")[0]
        self.seen.append((mode, headers))
        asks = "a-im" in headers
        first = asks and "expanded" in headers.get("delta-engines", "")
        if mode == "always226" or (mode == "pushy" and asks) or (mode != "plain" and first):
            return await self._patch(mode, send)
        return await self._full(send)

    async def _full(self, send):
        body = self.data
        hdrs = [
            ("etag", tag(body)),
            ("repr-digest", sf_digest(body)),
            ("content-digest", sf_digest(body)),
            ("content-type", "application/octet-stream"),
            ("content-length", str(len(body))),
        ]
        await _answer(send, 200, hdrs, [body])

    async def _patch(self, mode, send):
        data = self.data
        patch = self.patches[self.other if mode == "lie" else data]
        if mode == "notexpanded":
            patch = DeltaAggregator().full_patch(data, base=b"")
        if mode == "corrupt":  # a flipped byte inside the CONTENT frame
            mid = len(patch) // 2
            patch = patch[:mid] + bytes([patch[mid] ^ 0x40]) + patch[mid + 1 :]
        if mode == "trunc":
            patch = patch[:-100]
        hdrs = [
            ("im", "rcdelta"),
            ("etag", tag(self.other if mode == "etaglie" else data)),
            ("repr-digest", sf_digest(data)),
            ("content-digest", sf_digest(b"x" if mode == "cdlie" else patch)),
            ("content-type", "application/vnd.registry-core.patch"),
            ("cache-control", "no-transform"),
            ("vary", "a-im, if-none-match, delta-engines"),
            ("content-length", str(len(patch))),
        ]
        if mode == "otherbase":
            hdrs.append(("delta-base", tag(b"another base")))
        elif mode != "nobase":
            hdrs.append(("delta-base", EMPTY_TAG))
        if mode == "split":
            half = len(patch) // 2
            await send({"type": "http.response.start", "status": 226, "headers": _enc(hdrs)})
            await send({"type": "http.response.body", "body": patch[:half], "more_body": True})
            await asyncio.to_thread(self.release.wait, 60)
            await send({"type": "http.response.body", "body": patch[half:]})
            return
        step = 8192  # several DATA frames: the client sees the body in pieces
        await _answer(send, 226, hdrs, [patch[i : i + step] for i in range(0, len(patch), step)])


def _enc(hdrs):
    return [(k.encode(), v.encode()) for k, v in hdrs]


async def _answer(send, status, hdrs, chunks):
    await send({"type": "http.response.start", "status": status, "headers": _enc(hdrs)})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


@pytest.fixture(scope="module")
def wire(pki, releases):
    old, new, patches = releases
    app = WireApp(new, old, patches)
    handle = start_server(app, certfile=pki[1], keyfile=pki[2], quic=False)
    handle.app = app
    yield handle
    handle.stop()


def client(pki, **kw):
    kw.setdefault("flags", flags())
    kw.setdefault("first_downloads", "always")  # these tests are about the EXPANDED path
    return Transport(verify=pki[0], resolve=RESOLVE, http3=False, **kw)


def fetch(pki, handle, mode, **kw):
    handle.app.seen.clear()
    have = kw.pop("have", None)

    async def main():
        async with client(pki, **kw) as t:
            data = await t.fetch(f"https://registry.test:{handle.port}/{mode}/pkg.whl", have=have)
            return data, t.stats

    return run(main())


# -- the wire, as it should be ----------------------------------------------------------------


def test_first_download_is_an_expanded_patch_decoded_while_it_arrives(pki, wire, releases):
    _, new, patches = releases
    data, stats = fetch(pki, wire, "ok")
    assert data == new
    assert stats["fetch_expanded"] == 1 and stats["fetch_expanded_streamed"] == 1, stats
    assert stats["fetch_bytes_wire"] == len(patches[new]) < len(new)
    assert stats["fetch_delta_fallbacks"] == 0
    ((_, h),) = wire.app.seen
    assert h["a-im"] == "rcdelta" and "if-none-match" not in h
    assert h["delta-engines"].split(", ")[-1] == "expanded", h
    assert "exe" not in h["delta-engines"].split(", ")


def test_decoding_starts_before_the_body_ends(pki, wire, releases, monkeypatch):
    """The server holds the second half back until the client's decoder has consumed bytes
    of the first: the fetch completes only if decoding runs while the body arrives."""
    _, new, _ = releases
    real = _firstdl.new_decoder

    class Signalling:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def feed(self, chunk):
            self.inner.feed(chunk)
            wire.app.release.set()

        def finish(self):
            return self.inner.finish()

    monkeypatch.setattr(_firstdl, "new_decoder", lambda limit: Signalling(real(limit)))
    wire.app.release.clear()
    data, stats = fetch(pki, wire, "split")
    assert wire.app.release.is_set()
    assert data == new and stats["fetch_expanded_streamed"] == 1, stats


def test_a_held_version_never_names_expanded(pki, wire, releases):
    old, new, _ = releases
    # "pushy" answers 226 with the empty base to any A-IM: refused (another base), one GET
    data, stats = fetch(pki, wire, "pushy", have=old)
    assert data == new
    assert stats["fetch_delta_failed"] == 1 and stats["fetch_delta_fallbacks"] == 1, stats
    (_, h1), (_, h2) = wire.app.seen
    assert "expanded" not in h1["delta-engines"] and "if-none-match" in h1
    assert "a-im" not in h2 and "delta-engines" not in h2


def test_first_downloads_off_or_delta_off_send_a_plain_get(pki, wire, releases):
    _, new, _ = releases
    for kw in ({"first_downloads": False}, {"flags": flags(DELTA_AGGREGATOR=False)}):
        data, stats = fetch(pki, wire, "ok", **kw)
        assert data == new and stats["fetch_full"] == 1, (kw, stats)
        ((_, h),) = wire.app.seen
        assert "a-im" not in h and "delta-engines" not in h, (kw, h)


def test_a_plain_server_just_answers_200(pki, wire, releases):
    _, new, _ = releases
    data, stats = fetch(pki, wire, "plain")
    assert data == new and stats["fetch_full"] == 1 and stats["fetch_expanded"] == 0
    assert len(wire.app.seen) == 1


# -- the wire, broken: dropped and fetched plain once ------------------------------------------


@pytest.mark.parametrize("mode", ["corrupt", "trunc", "otherbase", "nobase", "notexpanded"])
def test_unusable_first_download_patches_fall_back_once(pki, wire, releases, mode):
    _, new, _ = releases
    data, stats = fetch(pki, wire, mode)
    assert data == new
    assert stats["fetch_delta_failed"] == 1 and stats["fetch_delta_fallbacks"] == 1, stats
    assert stats["fetch_full"] == 1 and stats["fetch_expanded"] == 0
    (_, h1), (_, h2) = wire.app.seen
    assert "expanded" in h1["delta-engines"]
    assert not {"a-im", "delta-engines", "if-none-match"} & set(h2)


def test_a_decode_past_the_deadline_falls_back(pki, wire, releases, monkeypatch):
    """A decoder that never finishes (held on an event) meets ``apply_timeout``; the worker is
    released afterwards."""
    _, new, _ = releases
    real = _firstdl.new_decoder
    hold = threading.Event()

    class Stuck:
        def __init__(self, inner):
            self.inner = inner
            self.target_sha256 = b""

        def feed(self, chunk):
            self.inner.feed(chunk)

        def finish(self):
            hold.wait(60)
            return self.inner.finish()

    monkeypatch.setattr(_firstdl, "new_decoder", lambda limit: Stuck(real(limit)))
    try:
        data, stats = fetch(pki, wire, "ok", apply_timeout=0.2)
    finally:
        hold.set()
    assert data == new
    assert stats["fetch_delta_timeout"] == 1 and stats["fetch_delta_fallbacks"] == 1, stats


@pytest.mark.parametrize("mode", ["lie", "etaglie", "cdlie"])
def test_a_server_contradicting_itself_is_refused(pki, wire, mode):
    with pytest.raises(DigestMismatchError):
        fetch(pki, wire, mode)
    assert len(wire.app.seen) == 1  # no fallback: the server lied


def test_a_226_to_the_plain_get_is_refused(pki, wire):
    with pytest.raises(TransportError, match="asked for no"):
        fetch(pki, wire, "always226", first_downloads=False)


def test_first_download_over_the_in_process_seam(wire, releases):
    """``transport=httpx.ASGITransport``: the same policy, the body fed after it is read."""
    import httpx

    _, new, _ = releases

    async def main():
        seam = httpx.ASGITransport(app=wire.app)
        async with Transport(transport=seam, flags=flags(), first_downloads=True) as t:
            return await t.fetch("https://registry.test/ok/pkg.whl"), t.stats

    data, stats = run(main())
    assert data == new and stats["fetch_expanded"] == 1, stats


# -- the real server ------------------------------------------------------------------------


def test_real_registry_app_serves_and_the_client_rebuilds(pki, tmp_path, releases):
    old, new, _ = releases
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/pkg-1.0-py3-none-any.whl").write_bytes(old)
    (tmp_path / "pkg/pkg-1.1-py3-none-any.whl").write_bytes(new)
    on = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": True})
    app = RegistryApp(tmp_path, flags=on)
    handle = start_server(app, certfile=pki[1], keyfile=pki[2], quic=False)
    base = f"https://registry.test:{handle.port}/pkg/"
    try:
        app.precompute_first("pkg/pkg-1.1-py3-none-any.whl")
        assert app.precompute_idle(timeout=120)

        async def main():
            async with client(pki) as t:
                first = await t.fetch(base + "pkg-1.1-py3-none-any.whl")
                first_stats = dict(t.stats)
                upgrade = await t.fetch(base + "pkg-1.1-py3-none-any.whl", have=old)
                return first, first_stats, upgrade, t.stats

        first, first_stats, upgrade, stats = run(main())
    finally:
        handle.stop()
        app.close()
    assert first == new and upgrade == new
    assert first_stats["fetch_expanded"] == 1, first_stats
    assert first_stats["fetch_expanded_streamed"] == 1
    assert first_stats["fetch_bytes_wire"] < len(new)
    assert app.stats.first_downloads_served == 1
    assert stats["fetch_delta"] == 1 and stats["fetch_delta_fallbacks"] == 0, stats


# -- sans-IO: the policy and the streamed decode ----------------------------------------------


def test_policy_first_download_plan():
    p = FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads=True)
    plan = p.plan(None)
    assert plan.first and plan.delta and plan.have is None and plan.have_sha256 == EMPTY_SHA256
    assert plan.headers["a-im"] == "rcdelta" and "if-none-match" not in plan.headers
    assert plan.headers["delta-engines"] == "zlib, miniz, recon, zstd-prefix, expanded"
    held = p.plan(b"old")
    assert not held.first and "expanded" not in held.headers["delta-engines"]
    for policy in (
        FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads=False),
        FetchPolicy(delta=False, dcz=False, engines=ENGINES),
        FetchPolicy(delta=True, dcz=False, engines=frozenset({"zlib", "zstd-prefix"})),
    ):
        plain = policy.plan(None)
        assert not plain.first and "a-im" not in plain.headers


def test_policy_delta_base_rules():
    p = FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads="always")
    first, held = p.plan(None), p.plan(b"old")
    p.check_delta_base(first, {"delta-base": EMPTY_TAG}, "u")
    p.check_delta_base(held, {"delta-base": tag(b"old")}, "u")
    p.check_delta_base(held, {}, "u")  # older servers: the patch header is checked instead
    for plan, headers in (
        (first, {}),
        (first, {"delta-base": tag(b"old")}),
        (first, {"delta-base": "garbage"}),
        (held, {"delta-base": EMPTY_TAG}),
    ):
        with pytest.raises(BaseMismatchError):
            p.check_delta_base(plan, headers, "u")


def test_policy_first_download_target():
    p = FetchPolicy(delta=True, dcz=False, engines=ENGINES, first_downloads="always")
    first = p.plan(None)
    good = {"delta-base": EMPTY_TAG, "repr-digest": sf_digest(b"T"), "etag": tag(b"T")}
    assert p.first_download_target(first, good, "u") == (hashlib.sha256(b"T").digest(), None)
    with pytest.raises(DigestMismatchError):
        p.first_download_target(first, {**good, "etag": tag(b"U")}, "u")
    with pytest.raises(TransportError):
        p.first_download_target(p.plan(b"old"), good, "u")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12))
def test_streamed_decode_of_any_chunking_equals_apply(releases, cuts):
    """Property: however the body is cut into chunks, the streamed decode returns exactly
    what ``apply(b"", patch)`` does."""
    _, new, patches = releases
    patch = patches[new]
    points = sorted({c % (len(patch) + 1) for c in cuts} | {0, len(patch)})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def main():
            sink = StreamingDecode(
                _firstdl.new_decoder(1 << 30), pool, expected_sha256=hashlib.sha256(new).digest()
            )
            for a, b in itertools.pairwise(points):
                sink.feed(patch[a:b])
            sink.close()
            return await sink.result(60)

        assert run(main()) == DeltaAggregator().apply(b"", patch) == new


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pos=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_streamed_decode_refuses_any_flipped_byte(releases, pos, flip):
    _, new, patches = releases
    patch = bytearray(patches[new])
    patch[pos % len(patch)] ^= flip
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def main():
            sink = StreamingDecode(_firstdl.new_decoder(1 << 30), pool)
            for i in range(0, len(patch), 4096):
                sink.feed(bytes(patch[i : i + 4096]))
            sink.close()
            return await sink.result(60)

        with pytest.raises(RegistryCoreError):
            run(main())


def test_streamed_decode_refuses_another_target_at_its_header(releases):
    old, new, patches = releases
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        async def main():
            sink = StreamingDecode(
                _firstdl.new_decoder(1 << 30), pool, expected_sha256=hashlib.sha256(old).digest()
            )
            sink.feed(patches[new])
            sink.close()
            return await sink.result(60)

        with pytest.raises(DigestMismatchError):
            run(main())


def test_an_aborted_decode_stops_and_never_finishes(releases):
    _, new, patches = releases
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sink = StreamingDecode(_firstdl.new_decoder(1 << 30), pool)
        sink.feed(patches[new][:1000])
        sink.abort()
        sink.feed(patches[new][1000:])  # ignored
        with pytest.raises(TransportError, match="abandoned"):
            sink._future.result(60)
