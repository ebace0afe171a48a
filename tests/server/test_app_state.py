"""RegistryApp keeps its state: one aggregator, digests computed once, flags read once,
bounded per-path counters, request fields combined as RFC 9110 says."""

from __future__ import annotations

import asyncio
import hashlib

from registry_core.flags import FeatureFlags
from registry_core.server import MemoryStorage, RegistryApp
from registry_core.wire import etag_for, parse_digest

ON = {"DELTA_AGGREGATOR": True, "ZSTD_COMPRESSION": True, "QUIC_TRANSPORT": True}
W = "pkg/pkg-{}-py3-none-any.whl"


def _app(releases, **kw):
    storage = MemoryStorage({W.format(v): data for v, data in releases})
    return RegistryApp(storage, flags=FeatureFlags(overrides=ON), **kw)


def _delta(have):
    # as today's client asks (reference engines and reconstruction): the app's aggregator
    return [
        ("if-none-match", etag_for(have)),
        ("a-im", "rcdelta"),
        ("delta-engines", "zlib, miniz, recon, zstd-prefix"),
    ]


def test_one_aggregator_for_every_patch_and_its_memo_is_reused(releases, call):
    app = _app(releases)
    (v0, d0), (v1, d1), (v2, d2) = releases[:3]
    agg = app.aggregator
    status, _, _, _ = call(app, "GET", "/" + W.format(v2), _delta(d1))
    assert status == 226
    memo = agg._params_memo
    remembered = len(memo._data)
    assert remembered > 0  # the changed streams of v2 were searched and remembered
    hits_before = getattr(memo, "hits", None)
    # a client two releases behind: v2's streams changed since v0 include those just searched
    status, _, _, _ = call(app, "GET", "/" + W.format(v2), _delta(d0))
    assert status == 226
    assert app.aggregator is agg and agg._params_memo is memo
    assert app.patches_computed == 2
    if hits_before is not None:  # registry_core._util.LRU counts its hits
        assert memo.hits > hits_before


def test_patch_content_digest_is_computed_once(releases, call, monkeypatch):
    import registry_core.server._app as app_mod

    calls = []
    real = app_mod.format_digest

    def counting(data=None, **kw):
        if data is not None:
            calls.append(len(data))
        return real(data, **kw)

    monkeypatch.setattr(app_mod, "format_digest", counting)
    app = _app(releases)
    (_, d0), (v1, _) = releases[:2]
    bodies = []
    for _ in range(3):
        status, headers, body, _ = call(app, "GET", "/" + W.format(v1), _delta(d0))
        assert status == 226
        assert parse_digest(headers["content-digest"])["sha-256"] == hashlib.sha256(body).digest()
        bodies.append(body)
    assert len(calls) == 1 and calls[0] == len(bodies[0])


def test_flags_are_read_at_construction_only(releases, call, monkeypatch):
    app = _app(releases, alt_svc='h3=":1"')
    lookups = []
    real = FeatureFlags.is_enabled

    def counting(self, name, *a, **kw):
        lookups.append(name)
        return real(self, name, *a, **kw)

    monkeypatch.setattr(FeatureFlags, "is_enabled", counting)
    (_, d0), (v1, _) = releases[:2]
    status, headers, _, _ = call(app, "GET", "/" + W.format(v1), _delta(d0))
    assert status == 226 and headers["alt-svc"] == 'h3=":1"'
    status, headers, _, _ = call(app, "GET", "/" + W.format(v1), [("accept-encoding", "zstd")])
    assert status == 200 and "use-as-dictionary" in headers
    assert lookups == []
    assert (app.quic, app.deltas, app.zstd) == (True, True, True)


def test_flags_off_are_plain_switches(releases, call):
    storage = MemoryStorage({W.format(v): data for v, data in releases})
    app = RegistryApp(
        storage,
        alt_svc='h3=":1"',
        flags=FeatureFlags(overrides={"DELTA_AGGREGATOR": False, "QUIC_TRANSPORT": False}),
    )
    (_, d0), (v1, _) = releases[:2]
    status, headers, _, _ = call(app, "GET", "/" + W.format(v1), _delta(d0))
    assert status == 200 and "alt-svc" not in headers and app.patches_computed == 0


def test_hit_counter_is_bounded(call):
    storage = MemoryStorage({f"f/{i}.txt": b"x%d" % i for i in range(300)})
    app = RegistryApp(storage, flags=FeatureFlags(overrides=ON), max_hit_paths=100)

    async def run():
        for i in range(300):
            await app.handle("GET", f"/f/{i}.txt", {})
        for i in range(2000):
            await app.handle("GET", f"/missing/{i}", {})

    asyncio.run(run())
    assert len(app.hits) == 100
    assert app.hits["/f/299.txt"] == 1 and app.hits["/f/0.txt"] == 0
    assert app.hits["/missing/5"] == 0 and "/missing/5" not in app.hits


def test_repeated_fields_are_combined_not_overwritten(releases, call):
    app = _app(releases)
    v1, d1 = releases[1]
    path = "/" + W.format(v1)
    # the matching tag in the first of two If-None-Match lines still gives 304
    status, _, _, _ = call(
        app, "GET", path, [("if-none-match", etag_for(d1)), ("if-none-match", '"nope"')]
    )
    assert status == 304
    # A-IM and the base tag arrive on separate lines among others
    d0 = releases[0][1]
    status, _, _, _ = call(
        app,
        "GET",
        path,
        [
            ("a-im", "feed"),
            ("a-im", "rcdelta"),
            ("if-none-match", '"other"'),
            ("if-none-match", etag_for(d0)),
        ],
    )
    assert status == 226
    # a repeated singleton (Range) is not combined into a multi-range: it is ignored
    status, headers, body, _ = call(
        app, "GET", path, [("range", "bytes=0-9"), ("range", "bytes=10-19")]
    )
    assert status == 200 and body == d1


def test_fold_headers():
    from registry_core.server._app import fold_headers

    folded = fold_headers(
        [
            (b"Accept-Encoding", b"gzip"),
            (b"accept-encoding", b"zstd;q=0.5"),
            (b"If-Range", b'"a"'),
            (b"if-range", b'"b"'),
            (b"X", b""),
        ]
    )
    assert folded == {"accept-encoding": "gzip, zstd;q=0.5", "x": ""}


def test_patch_cache_is_the_shared_lru():
    from registry_core._util import LRU

    app = RegistryApp(MemoryStorage(), patch_cache_bytes=1 << 20)
    assert isinstance(app.cache, LRU) and app.cache.max_bytes == 1 << 20
    import registry_core.server._app as app_mod

    assert not hasattr(app_mod, "ByteLRU")


def test_server_aggregators_bound_the_expanded_form():
    app = RegistryApp(MemoryStorage(), max_expanded_bytes=8 << 20)
    assert app.aggregator.max_expanded_size == 8 << 20
    assert RegistryApp(MemoryStorage()).aggregator.max_expanded_size == 32 << 20


def test_patch_store_eviction_is_chosen_by_name(tmp_path):
    import pytest

    from registry_core.errors import InvalidArgumentError
    from registry_core.eviction import LRUEviction, S3FIFOEviction, SieveEviction

    for name, cls in (("lru", LRUEviction), ("sieve", SieveEviction), ("s3fifo", S3FIFOEviction)):
        app = RegistryApp(
            tmp_path, flags=FeatureFlags(overrides={"DELTA_STABLE": True}), eviction=name
        )
        try:
            assert isinstance(app.patch_store.policy, cls)
        finally:
            app.close()
    with pytest.raises(InvalidArgumentError, match="eviction"):
        RegistryApp(tmp_path, eviction="belady")
