"""The feature store: counters, TTLs, bounds, and no training/serving skew (online == offline,
bit for bit, on a generated trace, over the in-memory store and a real redis-server)."""

from __future__ import annotations

import functools
import math
import uuid

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _redis import RedisServer
from registry_core.errors import InvalidArgumentError
from registry_core.ml._features import (
    FEATURE_NAMES,
    FeatureExtractor,
    InMemoryFeatureStore,
    RedisFeatureStore,
    flavour,
    offline_features,
)
from registry_core.ml._predict import make_examples
from registry_core.ml.traces import Catalogue, Release, Request, Trace, generate


@functools.lru_cache(maxsize=1)
def small_trace() -> Trace:
    full = generate(seed=3, days=5, clients=40, attacks=False)
    return Trace(full.requests[:6000], full.catalogue, [], full.source + ":first=6000")


def hand_trace() -> Trace:
    day = 86400.0
    cat = Catalogue(
        {
            "demo": [
                Release(
                    "1.0", 0.0, (("demo-1.0-py3-none-any.whl", 1000), ("demo-1.0.tar.gz", 900))
                ),
                Release("1.1", 2 * day, (("demo-1.1-py3-none-any.whl", 1100),)),
            ]
        }
    )
    reqs = [
        Request(10.0, "a", "page", "demo", "", "", 10),
        Request(11.0, "a", "file", "demo", "demo-1.0-py3-none-any.whl", "1.0", 1000),
        Request(3 * day, "a", "page", "demo", "", "", 10),
        Request(3 * day + 5, "a", "file", "demo", "demo-1.1-py3-none-any.whl", "1.1", 1100),
        Request(3 * day + 9, "b", "file", "demo", "demo-1.1-py3-none-any.whl", "1.1", 1100),
    ]
    return Trace(reqs, cat, [], "hand")


def test_counters_gaps_and_release_features() -> None:
    tr = hand_trace()
    ex = FeatureExtractor(tr.catalogue)
    for r in tr.requests[:2]:
        ex.update(r)
    now = 3 * 86400.0
    f = ex.features("a", "demo", "", now)
    assert list(f) == list(FEATURE_NAMES)
    assert f["c_rate"] == pytest.approx(math.log1p(2 * 2.0**-3), rel=1e-3)  # half-life 1 day
    assert f["cp_gap_h"] == pytest.approx(math.log1p((now - 11.0) / 3600))
    assert f["held_age_d"] == pytest.approx(3.0)
    assert f["newest_age_d"] == pytest.approx(1.0)
    assert f["versions_behind"] == 1.0
    assert f["c_first_frac"] == pytest.approx(0.5)  # one first download in two requests
    assert ex.held("a", "demo", now) == ("1.0", "demo-1.0-py3-none-any.whl")
    # before 1.1 was released the client is not behind (no look-ahead into the catalogue)
    assert ex.features("a", "demo", "", 86400.0)["versions_behind"] == 0.0
    for r in tr.requests[2:]:
        ex.update(r)
    g = ex.features("a", "demo", "", now + 10)
    assert g["versions_behind"] == 0.0
    assert g["p_upgrade_frac"] == pytest.approx(0.5)  # 1 upgrade, 2 clients
    unknown = ex.features("nobody", "demo", "", now)
    assert unknown["c_gap_h"] == -1.0 and unknown["held_age_d"] == -1.0


def test_learns_releases_without_a_catalogue() -> None:
    tr = hand_trace()
    ex = FeatureExtractor(None)
    for r in tr.requests:
        ex.update(r)
    assert ex.held("a", "demo", tr.end) == ("1.1", "demo-1.1-py3-none-any.whl")
    assert [r.version for r in ex._releases("demo")] == ["1.0", "1.1"]


def test_in_memory_store_ttl_and_bound() -> None:
    s = InMemoryFeatureStore(max_entries=2, ttl_s=10.0)
    s.set_many({"a": [1.0], "b": [2.0]}, now=0.0)
    assert s.get_many(["a", "b"], now=10.0) == [(1.0,), (2.0,)]
    assert s.get_many(["a"], now=10.5) == [None]  # expired by the now given
    s.set_many({"c": [3.0]}, now=1.0)
    assert len(s) == 2 and s.get_many(["a"], now=1.0) == [None]  # a dropped (oldest write)
    with pytest.raises(InvalidArgumentError):
        InMemoryFeatureStore(max_entries=0)
    with pytest.raises(InvalidArgumentError):
        InMemoryFeatureStore(ttl_s=float("nan"))


def test_flavours() -> None:
    assert flavour("a-1.0-py3-none-any.whl") == "py3-none-any"
    assert flavour("a-1.0-cp312-cp312-win_amd64.whl") == "cp312-cp312-win_amd64"
    assert flavour("a-1.0.tar.gz") == "sdist:.tar.gz"


def _online(trace: Trace, store: object) -> np.ndarray:
    """A serving loop: features asked for as each example's request arrives, then counted."""
    data = make_examples(trace, horizon_s=3600.0, every_s=600.0)
    ex = FeatureExtractor(trace.catalogue, store)  # type: ignore[arg-type]
    by_index: dict[int, list] = {}
    for e in data.examples:
        by_index.setdefault(e.index, []).append(e)
    rows = []
    for i, r in enumerate(trace.requests):
        for e in by_index.get(i, ()):
            rows.append(ex.vector(e.client, e.project, "", e.time, held=e.held))
        ex.update(r)
    return np.asarray(rows)


def test_no_skew_in_memory() -> None:
    tr = small_trace()
    data = make_examples(tr, horizon_s=3600.0, every_s=600.0)
    assert len(data.examples) > 50
    offline = offline_features(tr, data.examples)
    assert offline.shape == (len(data.examples), len(FEATURE_NAMES))
    online = _online(tr, InMemoryFeatureStore(ttl_s=30 * 86400.0))
    assert online.tobytes() == offline.tobytes()
    assert offline.tobytes() == data.X.tobytes()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path_factory.mktemp("redis-features"))
    yield server.url
    server.stop()


def test_no_skew_redis(redis_url: str) -> None:
    full = small_trace()
    tr = Trace(full.requests[:3000], full.catalogue, [], full.source + ":first=3000")
    data = make_examples(tr, horizon_s=3600.0, every_s=600.0)
    offline = offline_features(tr, data.examples)
    store = RedisFeatureStore(redis_url, prefix=f"t:{uuid.uuid4().hex}:", ttl_s=30 * 86400.0)
    try:
        online = _online(tr, store)
        # and the offline replay over Redis too
        store.clear()
        again = offline_features(tr, data.examples, store=store)
    finally:
        store.clear()
        store.close()
    assert online.tobytes() == offline.tobytes()
    assert again.tobytes() == offline.tobytes()


def test_redis_ttl_and_shared_between_instances(redis_url: str) -> None:
    prefix = f"t:{uuid.uuid4().hex}:"
    a = RedisFeatureStore(redis_url, prefix=prefix, ttl_s=100.0)
    b = RedisFeatureStore(redis_url, prefix=prefix, ttl_s=100.0)
    try:
        a.set_many({"k": [0.1, 1e300, -0.0]}, now=5.0)
        assert b.get_many(["k", "missing"], now=105.0) == [(0.1, 1e300, -0.0), None]
        assert b.get_many(["k"], now=105.5) == [None]
    finally:
        a.clear()
        a.close()
        b.close()


@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=8), st.floats(0, 1e9))
def test_in_memory_round_trip(values: list[float], now: float) -> None:
    s = InMemoryFeatureStore(ttl_s=1.0)
    s.set_many({"k": values}, now)
    assert s.get_many(["k"], now) == [tuple(values)]


def test_example_beyond_the_trace_is_refused() -> None:
    from registry_core.ml._features import Example, replay

    tr = hand_trace()
    with pytest.raises(InvalidArgumentError):
        replay(tr, [Example(99, 0.0, "a", "demo", "1.0")], FeatureExtractor(tr.catalogue))


def test_note_release_as_uploaded() -> None:
    tr = hand_trace()
    ex = FeatureExtractor(tr.catalogue)
    ex.update(tr.requests[1])
    ex.note_release("demo", "1.2", 5 * 86400.0, (("demo-1.2-py3-none-any.whl", 1200),))
    assert ex.features("a", "demo", "", 5 * 86400.0)["versions_behind"] == 2.0
    ex.note_release("demo", "1.2", 5 * 86400.0, (("demo-1.2.tar.gz", 1000),))
    assert len(ex._releases("demo")[-1].files) == 2
    with pytest.raises(InvalidArgumentError):
        ex.note_release("demo", "0.9", 1.0)
    learned = FeatureExtractor(None)
    learned.note_release("new", "1.0", 0.0)
    assert [r.version for r in learned._releases("new")] == ["1.0"]
