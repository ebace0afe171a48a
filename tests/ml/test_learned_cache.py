"""LearnedEviction: the policy invariants for any event sequence (with and without a model),
training deterministic for a seed, the artifact round trip, registry features from the
catalogue, online retraining, and the learned policy against LRU on a small generated
release-driven trace (held-out time)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numpy", reason="the ml extra: pip install 'registry-core[ml]'")
pytest.importorskip("lightgbm", reason="the ml-train extra: pip install 'registry-core[ml-train]'")

from registry_core.errors import InvalidArgumentError, ModelError  # noqa: E402
from registry_core.eviction import make_policy, replay  # noqa: E402
from registry_core.ml._artifact import ModelArtifact  # noqa: E402
from registry_core.ml._learned_cache import (  # noqa: E402
    FEATURE_NAMES,
    KIND,
    LearnedEviction,
    catalogue_meta,
    file_requests,
    train,
)
from registry_core.ml.traces import Catalogue, Release, generate  # noqa: E402


@pytest.fixture(scope="module")
def small():
    """A small release-driven trace, split at 70 % of its file downloads, and a cache of 2 %
    of its unique bytes (where the learned policy wins; at 5 % it ties LRU: docs/ml.md)."""
    trace = generate(seed=1, days=3, clients=100, attacks=False)
    reqs = file_requests(trace.requests)
    cut = int(len(reqs) * 0.7)
    unique = {k: s for k, s, _ in reqs}
    cap = int(sum(unique.values()) * 0.02)
    head = [r for r in trace.requests if r.time < reqs[cut][2]]
    return trace, reqs, cut, cap, head


@pytest.fixture(scope="module")
def artifact(small):
    trace, _reqs, _cut, cap, head = small
    return train(head, capacity_bytes=cap, seed=0, meta=catalogue_meta(trace.catalogue), rounds=30)


events = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 12), st.integers(1, 100)),
        st.tuples(st.just("access"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("remove"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("choose"), st.just(0), st.integers(0, 400)),
    ),
    max_size=80,
)


def _check_invariants(policy, ops):
    held: dict[str, int] = {}
    gone: set[str] = set()
    for t, (op, i, n) in enumerate(ops):
        key = f"p/f{i}"
        if op == "insert" and key not in held:
            policy.record_insert(key, n, float(t))
            held[key] = n
            gone.discard(key)
        elif op == "access":
            policy.record_access(key, float(t))
        elif op == "remove":
            policy.record_remove(key)
            held.pop(key, None)
            gone.add(key)
        elif op == "choose":
            victims = policy.choose_victims(n)
            assert len(victims) == len(set(victims))
            assert set(victims) <= set(held) and not set(victims) & gone
            assert sum(held[v] for v in victims) >= n or set(victims) == set(held)
            for v in victims:
                policy.record_remove(v)
                del held[v]
                gone.add(v)
        assert len(policy) == len(held)


@settings(max_examples=60, deadline=None)
@given(ops=events)
def test_invariants_without_a_model(ops):
    _check_invariants(LearnedEviction(candidates=4, seed=3), ops)


@settings(max_examples=30, deadline=None)
@given(ops=events)
def test_invariants_with_a_model(artifact, ops):
    _check_invariants(LearnedEviction.from_artifact(artifact, candidates=4), ops)


def test_training_is_deterministic_for_a_seed(small, artifact):
    trace, _reqs, _cut, cap, head = small
    again = train(head, capacity_bytes=cap, seed=0, meta=catalogue_meta(trace.catalogue), rounds=30)
    assert again.payload == artifact.payload
    assert again.metrics == artifact.metrics
    assert artifact.kind == KIND and artifact.feature_names == FEATURE_NAMES
    assert (
        artifact.metrics["rmse_log_next_request_holdout"]
        < artifact.metrics["rmse_mean_baseline_holdout"]
    )
    assert len(artifact.payload) < 2_000_000  # the roadmap's model budget


def test_learned_beats_lru_on_held_out_release_traffic(small, artifact):
    """Trained on the first 70 % of the downloads; measured on the rest (the first 70 % only
    warms the cache), for LRU and the learned policy alike."""
    trace, reqs, cut, cap, _head = small
    policy = LearnedEviction.from_artifact(artifact, meta=catalogue_meta(trace.catalogue))
    learned = replay(policy, reqs, cap, warmup=cut).byte_miss_ratio
    lru = replay(make_policy("lru"), reqs, cap, warmup=cut).byte_miss_ratio
    assert policy.decisions > 0
    assert learned < lru


def test_artifact_round_trip_and_refusals(artifact):
    back = ModelArtifact.from_bytes(artifact.to_bytes())
    policy = LearnedEviction.from_artifact(back)
    assert policy.boundary_s == artifact.params["boundary_s"]
    wrong = ModelArtifact(kind="next-download", payload=artifact.payload)
    with pytest.raises(ModelError, match="learned-eviction"):
        LearnedEviction.from_artifact(wrong)
    with pytest.raises(ModelError, match="retrain"):
        LearnedEviction.from_artifact(
            ModelArtifact(kind=KIND, payload=artifact.payload, feature_names=("x",))
        )
    with pytest.raises(InvalidArgumentError):
        LearnedEviction(candidates=0)
    with pytest.raises(InvalidArgumentError, match="at least 100"):
        train([])


def test_catalogue_meta_counts_newer_releases():
    cat = Catalogue(
        projects={
            "a": [
                Release("1.0", 100.0, (("a-1.0.tar.gz", 10),)),
                Release("1.1", 200.0, (("a-1.1.tar.gz", 10),)),
                Release("2.0", 300.0, (("a-2.0.tar.gz", 10),)),
            ]
        }
    )
    meta = catalogue_meta(cat)
    assert meta("a/a-1.0.tar.gz", 250.0) == (150.0, 1.0)  # 1.1 is out, 2.0 not yet
    assert meta("a/a-1.0.tar.gz", 400.0) == (300.0, 2.0)
    assert meta("a/a-2.0.tar.gz", 400.0) == (100.0, 0.0)
    assert meta("b/b-1.0.tar.gz", 400.0) is None
    row = LearnedEviction(meta=meta)
    row.record_insert("a/a-1.0.tar.gz", 10, 250.0)
    feats = dict(
        zip(
            FEATURE_NAMES,
            row.features("a/a-1.0.tar.gz", row._objs["a/a-1.0.tar.gz"], 400.0),
            strict=True,
        )
    )
    assert feats["version_distance"] == 2.0
    assert feats["log_release_age"] == pytest.approx(math.log1p(300.0))
    assert math.isnan(feats["log_gap1"])  # requested once: no gap yet


def test_online_retraining_on_a_sliding_window(small):
    _trace, reqs, _cut, cap, _head = small
    policy = LearnedEviction(
        seed=0, boundary_s=3600.0, retrain_every=2000, window=5000, sample_every=1
    )
    replay(policy, reqs, cap)
    assert policy.retrains >= 1 and policy.model is not None


def test_background_retraining_swaps_the_model_in(small):
    _trace, reqs, _cut, cap, _head = small
    policy = LearnedEviction(
        seed=0, boundary_s=3600.0, retrain_every=3000, window=5000, sample_every=1, background=True
    )
    replay(policy, reqs, cap)
    assert policy._fitting is not None
    policy._fitting.join()  # the fit ends; no sleeping
    assert policy.retrains >= 1 and policy.model is not None
