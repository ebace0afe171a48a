"""Patches shared by two RegistryApp instances through one real redis-server (RedisPatchCache):
each pair computed once across the instances, answers byte-identical and verified, a dead lease
holder taken over after its lease expires, corrupt or wrong values dropped and recomputed
(never served), Redis down -> each instance computes locally and requests still succeed."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

import httpx
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from _redis import RedisServer, free_port
from registry_core.cache import RedisStore
from registry_core.cache._lock import RedisLock
from registry_core.delta import DeltaAggregator
from registry_core.errors import InvalidArgumentError
from registry_core.flags import FeatureFlags
from registry_core.server import DirectoryStorage, RegistryApp, start_server
from registry_core.server._patch_store import RedisPatchCache, decode_shared, encode_shared
from registry_core.wire import etag_for

pytestmark = pytest.mark.network

ON = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": True})
W = "pkg/pkg-{}-py3-none-any.whl"
HANG = 30  # generous bound for waits that take milliseconds


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ask(have: bytes) -> dict[str, str]:
    return {
        "if-none-match": etag_for(have),
        "a-im": "rcdelta",
        "delta-engines": "zlib, miniz, recon, zstd-prefix",  # today's client: the precomputed mode
    }


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def prefix():
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture
def raw(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def _copy(tmp_path, name, releases):
    """One instance's own directory holding the releases (as on its own machine)."""
    root = tmp_path / name
    for version, data in releases:
        path = root / W.format(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


class _Instances:
    """Two RegistryApps over their own copies of the files, each with its own RedisPatchCache
    (its own client) on the same Redis and prefix; no PatchStore, so only Redis is shared."""

    def __init__(self, tmp_path, releases, url, prefix, **cache_kw):
        self.caches = [RedisPatchCache(url, prefix=prefix, **cache_kw) for _ in range(2)]
        self.apps = [
            RegistryApp(
                DirectoryStorage(_copy(tmp_path, f"instance{i}", releases)),
                flags=ON,
                patch_store=False,
                shared_cache=cache,
            )
            for i, cache in enumerate(self.caches)
        ]
        for app in self.apps:
            # a server that has run: its digest index is built (lookups made during the first
            # walk answer from the part indexed so far: a base not reached yet is "unknown")
            app.storage.find_by_sha256(b"\0" * 32)

    def close(self):
        for app in self.apps:
            app.close()
        for cache in self.caches:
            cache.close()

    def total(self, name):
        return sum(getattr(c.stats, name) for c in self.caches)


@pytest.fixture
def instances(tmp_path, releases, redis_server, prefix):
    made = []

    def make(url=None, **kw):
        inst = _Instances(
            tmp_path / f"set{len(made)}", releases, url or redis_server.url, prefix, **kw
        )
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.close()


def _get_all(urls, old, per_url):
    """GET ``per_url`` concurrent requests on each URL, all released at once; the responses."""
    jobs = [u for u in urls for _ in range(per_url)]
    barrier = threading.Barrier(len(jobs))
    out: list[httpx.Response | BaseException | None] = [None] * len(jobs)

    def run(i):
        try:
            with httpx.Client(timeout=HANG) as client:
                barrier.wait(HANG)
                out[i] = client.get(jobs[i], headers=_ask(old))
        except BaseException as exc:  # reported by the assertion below
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG * 2)
    assert all(isinstance(r, httpx.Response) for r in out), out
    return out


def _verified(responses, old, new):
    bodies = {r.content for r in responses}
    assert [r.status_code for r in responses] == [226] * len(responses)
    assert len(bodies) == 1  # byte-identical answers from both instances
    body = bodies.pop()
    assert sha(DeltaAggregator().apply(old, body)) == sha(new)
    for r in responses:
        assert r.headers["etag"] == etag_for(new)
    return body


def test_two_instances_compute_each_patch_once(instances, releases, raw, prefix):
    inst = instances()
    (_, d0), (v1, d1), (v2, d2) = releases[:3]
    with start_server(inst.apps[0], tls=False) as a, start_server(inst.apps[1], tls=False) as b:
        for old, version, new in ((d0, v1, d1), (d1, v2, d2)):
            urls = [srv.url("/" + W.format(version)) for srv in (a, b)]
            _verified(_get_all(urls, old, per_url=4), old, new)
    # two pairs, each diffed once across both instances; the other instance read it from Redis
    assert sum(app.patches_computed for app in inst.apps) == 2
    assert inst.total("computed") == 2 and inst.total("shared_hits") == 2
    assert sum(app.stats.patches_from_shared for app in inst.apps) == 2
    assert inst.total("local_fallbacks") == 0 and inst.total("rejected") == 0
    key = f"{prefix}{sha(d0).hex()}-{sha(d1).hex()}.reconz"
    assert raw.exists(key) == 1 and raw.pttl(key) > 0  # shared values expire (ttl)
    assert raw.exists(f"{prefix}lock:patch:{sha(d0).hex()}-{sha(d1).hex()}.reconz") == 0


def test_precomputed_on_one_instance_is_served_by_the_other(instances, releases, call):
    inst = instances()
    (v0, d0), (v1, d1) = releases[:2]
    inst.apps[0].precompute(W.format(v1), [W.format(v0)])
    assert inst.apps[0].precompute_idle(HANG)
    status, _, body, _ = call(inst.apps[1], "GET", "/" + W.format(v1), _ask(d0).items())
    assert status == 226 and DeltaAggregator().apply(d0, body) == d1
    assert inst.apps[1].patches_computed == 0 and inst.caches[1].stats.shared_hits == 1


def _until(predicate, what):
    deadline = time.monotonic() + HANG
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def test_a_dead_lease_holder_is_taken_over_after_its_lease_expires(
    instances, releases, redis_server, prefix
):
    inst = instances()
    (_, d0), (v1, d1) = releases[:2]
    name = f"patch:{sha(d0).hex()}-{sha(d1).hex()}.reconz"
    # a third instance took the pair's lease and died: it never renews, releases or shares
    dead_store = RedisStore(redis_server.url, prefix=prefix)
    dead = RedisLock(dead_store, name, ttl_s=1.0)
    assert dead.acquire() is not None
    with start_server(inst.apps[0], tls=False) as a, start_server(inst.apps[1], tls=False) as b:
        urls = [srv.url("/" + W.format(v1)) for srv in (a, b)]
        result: list = []
        runner = threading.Thread(target=lambda: result.append(_get_all(urls, d0, per_url=2)))
        runner.start()
        _until(lambda: inst.total("waited") == 2, "both instances wait for the holder")
        assert inst.total("computed") == 0  # nobody computes while the lease is held
        runner.join(HANG * 2)
    _verified(result[0], d0, d1)
    assert inst.total("computed") == 1 and inst.total("shared_hits") == 1
    assert sum(app.patches_computed for app in inst.apps) == 1
    assert inst.total("wait_timeouts") == 0
    assert not dead.release()  # its lease had expired: the late release deletes nothing
    dead_store.close()


def test_a_hung_lease_holder_is_waited_for_at_most_wait_s(
    instances, releases, redis_server, prefix, call, caplog
):
    inst = instances(wait_s=0.2)
    (_, d0), (v1, d1) = releases[:2]
    name = f"patch:{sha(d0).hex()}-{sha(d1).hex()}.reconz"
    hung_store = RedisStore(redis_server.url, prefix=prefix)
    hung = RedisLock(hung_store, name, ttl_s=60)  # alive (its lease does not expire), stuck
    assert hung.acquire() is not None
    with caplog.at_level(logging.WARNING, "registry_core.server"):
        status, _, body, _ = call(inst.apps[0], "GET", "/" + W.format(v1), _ask(d0).items())
    assert status == 226 and DeltaAggregator().apply(d0, body) == d1
    stats = inst.caches[0].stats
    assert stats.waited == 1 and stats.wait_timeouts == 1 and stats.computed == 1
    assert "still computed elsewhere" in caplog.text
    # computed without the lease, and still shared: the other instance does not diff
    status, _, again, _ = call(inst.apps[1], "GET", "/" + W.format(v1), _ask(d0).items())
    assert status == 226 and again == body and inst.apps[1].patches_computed == 0
    assert hung.release()  # the hung holder's lease was never taken from it
    hung_store.close()


def _put_raw(raw, prefix, d_old, d_new, value):
    raw.set(f"{prefix}{sha(d_old).hex()}-{sha(d_new).hex()}.reconz", value)


@pytest.mark.parametrize(
    "damage",
    [
        "garbage",  # not RedisStore's envelope at all
        "flipped",  # the envelope's digest no longer matches
        "other_pair",  # a whole, verified value for another pair put under this key
        "wrong_patch",  # a verified, bound value whose patch does not produce the target
    ],
)
def test_a_corrupt_or_wrong_shared_value_is_dropped_and_recomputed(
    instances, releases, raw, prefix, call, damage, redis_server
):
    inst = instances()
    (_, d0), (v1, d1), (_, d2) = releases[:3]
    agg = DeltaAggregator(archive_aware=True)
    writer = RedisStore(redis_server.url, prefix=prefix)  # another process writing Redis
    key = f"{sha(d0).hex()}-{sha(d1).hex()}.reconz"
    if damage == "garbage":
        _put_raw(raw, prefix, d0, d1, b"\x00not a value")
    elif damage == "flipped":
        writer.put(key, encode_shared(sha(d0), sha(d1), "reconz", agg.diff(d0, d1)))
        blob = raw.get(prefix + key)
        raw.set(prefix + key, blob[:-1] + bytes([blob[-1] ^ 1]))
    elif damage == "other_pair":
        writer.put(key, encode_shared(sha(d1), sha(d2), "reconz", agg.diff(d1, d2)))
    else:  # a patch of another pair, bound to this one: only applying it tells
        writer.put(key, encode_shared(sha(d0), sha(d1), "reconz", agg.diff(d1, d2)))
    status, _, body, _ = call(inst.apps[0], "GET", "/" + W.format(v1), _ask(d0).items())
    assert status == 226 and sha(DeltaAggregator().apply(d0, body)) == sha(d1)
    assert inst.apps[0].patches_computed == 1  # recomputed, the bad value never served
    cache = inst.caches[0]
    dropped = cache.store.corrupt if damage in ("garbage", "flipped") else cache.stats.rejected
    assert dropped == 1 and cache.stats.shared_hits == 0
    # the recomputed patch replaced it: the other instance is served it, checked
    status, _, again, _ = call(inst.apps[1], "GET", "/" + W.format(v1), _ask(d0).items())
    assert status == 226 and again == body and inst.apps[1].patches_computed == 0
    writer.close()


def test_redis_down_each_instance_computes_locally(instances, releases, caplog, call):
    port = free_port()  # nothing listens there
    inst = instances(f"redis://:hunter2@127.0.0.1:{port}/0", timeout=1)
    (_, d0), (v1, d1), (v2, d2) = releases[:3]
    with caplog.at_level(logging.DEBUG, "registry_core"):
        for app in inst.apps:
            for old, version, new in ((d0, v1, d1), (d1, v2, d2)):
                status, _, body, _ = call(app, "GET", "/" + W.format(version), _ask(old).items())
                assert status == 226 and DeltaAggregator().apply(old, body) == new
    assert [app.patches_computed for app in inst.apps] == [2, 2]
    assert inst.total("local_fallbacks") == 4 and inst.total("shared_hits") == 0
    warnings = [r for r in caplog.records if "computing patches locally" in r.getMessage()]
    assert [r.levelno for r in warnings[:2]] == [logging.WARNING] * 2  # said once per instance
    assert all(r.levelno == logging.DEBUG for r in warnings[2:])  # then quietly
    assert "hunter2" not in caplog.text and all("hunter2" not in repr(c) for c in inst.caches)


def test_redis_stopping_midway_falls_back_to_local(tmp_path, releases, prefix, call):
    (tmp_path / "redis-private").mkdir()
    server = RedisServer(tmp_path / "redis-private")
    try:
        inst = _Instances(tmp_path / "set", releases, server.url, prefix, timeout=1)
        (_, d0), (v1, d1), (v2, d2) = releases[:3]
        status, _, _, _ = call(inst.apps[0], "GET", "/" + W.format(v1), _ask(d0).items())
        assert status == 226 and inst.caches[0].stats.computed == 1
        server.stop()
        for app in inst.apps:
            status, _, body, _ = call(app, "GET", "/" + W.format(v2), _ask(d1).items())
            assert status == 226 and DeltaAggregator().apply(d1, body) == d2
        assert inst.total("local_fallbacks") == 2
        inst.close()
    finally:
        server.stop()


def test_patch_compute_span_under_the_request(instances, releases, call):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from registry_core.telemetry._context import set_tracer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    inst = instances()
    (_, d0), (v1, _) = releases[:2]
    token = set_tracer(tracer)
    try:
        with tracer.start_as_current_span("request"):
            status = call(inst.apps[0], "GET", "/" + W.format(v1), _ask(d0).items())[0]
    finally:
        from registry_core.telemetry._context import _TRACER

        _TRACER.reset(token)
    assert status == 226
    spans = {s.name: s for s in exporter.get_finished_spans()}
    compute = spans["patch.compute"]
    assert compute.parent is not None and compute.parent.span_id == spans["request"].context.span_id
    assert compute.attributes["patch.mode"] == "reconz"
    assert compute.attributes["patch.outcome"] == "patch"
    provider.shutdown()


@settings(max_examples=80, deadline=None)
@given(
    base=st.binary(min_size=32, max_size=32),
    target=st.binary(min_size=32, max_size=32),
    mode=st.sampled_from(["archive", "binary", "x1"]),
    patch=st.binary(max_size=512),
)
def test_shared_value_round_trip_and_binding(base, target, mode, patch):
    value = encode_shared(base, target, mode, patch)
    assert decode_shared(value, base, target, mode) == patch
    assert decode_shared(value, bytes([base[0] ^ 1]) + base[1:], target, mode) is None
    assert decode_shared(value, base, target[:-1] + bytes([target[-1] ^ 1]), mode) is None
    assert decode_shared(value, base, target, "zz") is None
    for cut in range(len(value) - len(patch)):  # any truncation of the header or kind byte
        assert decode_shared(value[:cut], base, target, mode) is None


@settings(max_examples=80, deadline=None)
@given(raw=st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_raises(raw):
    got = decode_shared(raw, b"\x01" * 32, b"\x02" * 32, "archive")
    assert got is None or raw.endswith(got)


def test_options_are_checked():
    for bad in (
        {"wait_s": -1},
        {"lock_ttl_s": 0},
        {"down_retry_s": "5"},
        {"prefix": ""},
        {"max_value_bytes": 0},
        {"ttl": 0},
    ):
        with pytest.raises(InvalidArgumentError):
            RedisPatchCache("redis://127.0.0.1:6379/0", **bad)
    with pytest.raises(InvalidArgumentError, match="shared_cache"):
        RegistryApp(DirectoryStorage("."), shared_cache="redis://127.0.0.1:6379/0")
