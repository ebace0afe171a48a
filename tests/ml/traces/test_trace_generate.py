"""The traffic generator: deterministic, time-sorted, labelled, and its figures match its
parameters (so the claims of docs/ml.md "Data" are tested)."""

from __future__ import annotations

import statistics

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.ml.traces import TrafficModel, diurnal_profile, generate
from registry_core.ml.traces._stats import (
    expected_upgrade_lag_median,
    hourly_profile,
    mirror_lags,
    popularity_slope,
    upgrade_lags,
)


@pytest.fixture(scope="module")
def full():
    """The default 14-day trace (the one the docs' figures describe)."""
    return generate(seed=0)


def small(seed: int = 0, **kw):
    return generate(seed=seed, days=kw.pop("days", 2), clients=kw.pop("clients", 300), **kw)


def test_same_seed_same_digest_different_seed_different():
    a, b, c = small(3), small(3), small(4)
    assert a.sha256() == b.sha256()
    assert a.requests == b.requests and a.episodes == b.episodes
    assert a.sha256() != c.sha256()
    assert a.source == "generated:registry-v1:seed=3:days=2:clients=300"


def test_sorted_in_range_and_well_formed(full):
    times = [r.time for r in full.requests]
    assert times == sorted(times)
    assert times[0] >= 0.0 and times[-1] < 14 * 86400
    assert 200_000 <= len(full) <= 500_000
    kinds = {r.kind for r in full.requests}
    assert kinds <= {"file", "metadata", "page", "upload", "login", "other"}
    assert {"file", "metadata", "page", "upload", "login"} <= kinds
    for r in full.requests[::97]:
        if r.kind in ("file", "metadata") and not r.label:
            rel = full.catalogue.release(r.project, r.version)
            assert rel is not None and rel.time <= r.time
            assert r.filename in {f for f, _ in rel.files}
        if r.held:
            assert full.catalogue.release(r.project, r.held) is not None
    # every client has a type; ids do not reveal it
    assert {r.client for r in full.requests} <= set(full.clients)
    assert all(c.startswith("c") and len(c) == 11 for c in full.clients)
    summary = full.summary()
    assert summary["requests"] == len(full)
    assert set(summary["clients_by_type"]) >= {"dev", "ci", "mirror", "proxy", "crawler"}


def test_episodes_labelled_consistently(full):
    labels = {"scraper", "credential_stuffing", "dependency_confusion", "download_spike"}
    assert {e.label for e in full.episodes} == labels
    by_client = {}
    for e in full.episodes:
        for c in e.clients:
            by_client[c] = e
    seen = set()
    for r in full.requests:
        if not r.label:
            assert r.client not in by_client
            continue
        e = by_client[r.client]
        assert r.label == e.label
        assert e.start <= r.time <= e.end
        seen.add(id(e))
    assert len(seen) == len(full.episodes)
    statuses = {r.status for r in full.requests if r.label == "credential_stuffing"}
    assert statuses <= {401, 403}
    assert {r.status for r in full.requests if r.label == "dependency_confusion"} == {404}


def test_attacks_off_has_no_label():
    tr = small(5, attacks=False)
    assert not tr.episodes and not any(r.label for r in tr.requests)
    assert tr.source.endswith(":attacks=off")


def test_popularity_exponent_matches_the_parameter(full):
    model = TrafficModel()
    s = popularity_slope(full, q=model.popularity_q, top=100)
    assert abs(s - model.popularity_s) < 0.25, s


def test_diurnal_profile_matches_the_working_hours(full):
    model = TrafficModel()
    measured, expected = hourly_profile(full), diurnal_profile(model)
    corr = statistics.correlation(measured, expected)
    assert corr > 0.9, corr
    peak = measured.index(max(measured))
    assert abs(peak - expected.index(max(expected))) <= 2
    ratio, ratio_expected = max(measured) / min(measured), max(expected) / min(expected)
    assert ratio_expected / 1.6 < ratio < ratio_expected * 1.6, (ratio, ratio_expected)
    # weekends are quieter for human clients
    dev = {c for c, t in full.clients.items() if t == "dev"}
    per_day = [0] * 14
    for r in full.requests:
        if r.client in dev:
            per_day[int(r.time // 86400)] += 1
    weekday = statistics.fmean(per_day[d] for d in range(14) if d % 7 < 5)
    weekend = statistics.fmean(per_day[d] for d in range(14) if d % 7 >= 5)
    assert weekend < weekday * 0.6


def test_upgrade_lag_matches_the_parameter(full):
    model = TrafficModel()
    lags = upgrade_lags(full)
    assert len(lags) > 1000
    measured = statistics.median(lags)
    expected = expected_upgrade_lag_median(full, model)
    # sessions fall in working hours: an upgrade waits for the next one (up to about a day)
    assert expected * 0.8 < measured < expected * 1.6 + 0.5, (measured, expected)


def test_mirrors_follow_uploads_within_a_poll(full):
    lags = mirror_lags(full)
    model = TrafficModel()
    assert lags and max(lags) < model.mirror_poll_s * 1.2 + 60
    assert abs(statistics.median(lags) - model.mirror_poll_s / 2) < model.mirror_poll_s * 0.25


def test_ci_runs_are_bursts_of_first_downloads(full):
    ci = {c for c, t in full.clients.items() if t == "ci"}
    files = [r for r in full.requests if r.client in ci and r.kind == "file"]
    assert files and not any(r.held for r in files)  # fresh runners: nothing held
    # a run downloads its pinned set within minutes: most downloads follow another of the
    # same pipeline closely
    last: dict[str, float] = {}
    close = 0
    for r in files:
        if r.time - last.get(r.client, -1e9) < 120:
            close += 1
        last[r.client] = r.time
    assert close / len(files) > 0.8


def test_static_shape_has_no_releases_in_the_trace():
    tr = generate(TrafficModel.static_zipf(), seed=1, days=1, clients=100)
    assert tr.source.startswith("generated:static-zipf:seed=1")
    assert all(r.time < 0 for rels in tr.catalogue.projects.values() for r in rels)
    assert {r.kind for r in tr.requests} == {"file"} and not tr.episodes
    keys = {}
    for r in tr.requests:
        keys[r.key] = keys.get(r.key, 0) + 1
    top = sorted(keys.values(), reverse=True)
    assert top[0] > 20 * statistics.median(top)  # skewed


def test_scale_multiplies_requests():
    a = small(2, attacks=False)
    b = generate(seed=2, days=2, clients=300, attacks=False, scale=2.0)

    def demand(tr):
        return sum(1 for r in tr.requests if tr.clients[r.client] in ("dev", "ci"))

    assert 1.5 * demand(a) < demand(b) < 2.6 * demand(a)
    assert b.source.endswith(":scale=2:clients=300:attacks=off")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 0},
        {"days": 400},
        {"clients": 0},
        {"scale": 0},
        {"scale": -1.0},
        {"clients": 2_000_000},
        {"scale": 1e6},
    ],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(InvalidArgumentError):
        generate(**kwargs)


def test_bad_models_are_refused():
    with pytest.raises(InvalidArgumentError):
        generate(TrafficModel(shape="nope"), days=1)
    with pytest.raises(InvalidArgumentError):
        generate(TrafficModel(bump_shares=(0.5, 0.5, 0.5)), days=1)
    with pytest.raises(InvalidArgumentError):
        generate(TrafficModel(projects=0), days=1)


def test_measure_runs_on_a_real_log_shape():
    from registry_core.ml.traces import Catalogue, Request, Trace
    from registry_core.ml.traces._stats import measure

    reqs = [
        Request(1.7e9 + i * 600.0, f"c{i % 3}", "file", "p", "p-1.0.tar.gz", "1.0", 10)
        for i in range(50)
    ]
    m = measure(Trace(reqs, Catalogue(), [], "file:x"))
    assert m["upgrades"] == 0 and m["mirror_lag_median_s"] == 0.0
    assert m["peak_trough"] >= 1.0
