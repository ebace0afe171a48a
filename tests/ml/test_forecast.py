"""Forecasting: bucket counts, the error measures, the models on a seasonal trace, one code path
for offline evaluation and live serving, checked bytes."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError, ModelError
from registry_core.ml._artifact import ModelArtifact
from registry_core.ml._forecast import (
    FEATURE_NAMES,
    Forecaster,
    _Ridge,
    bucket_counts,
    mape,
    smape,
    train,
)
from registry_core.ml.traces import Catalogue, Request, Trace

DAY = 86400.0


def _seasonal(days: int = 6, seed: int = 0, bucket: float = 900.0) -> Trace:
    """Requests whose rate follows a daily cycle (busy afternoons, quiet weekends), Poisson-ish
    noise; two routes of different volume."""
    rng = random.Random(seed)
    out = []
    for b in range(int(days * DAY / bucket)):
        t0 = b * bucket
        tod = (t0 % DAY) / DAY
        weekend = (int(t0 // DAY) % 7) >= 5
        rate = 4 + 30 * max(0.0, math.sin(math.pi * (tod - 0.25) / 0.6)) * (0.3 if weekend else 1)
        for route, scale in (("/simple/{project}/", 1.0), ("/files/{project}/{file}", 0.3)):
            n = max(0, round(rng.gauss(rate * scale, math.sqrt(rate * scale))))
            for _ in range(n):
                out.append(
                    Request(t0 + rng.random() * bucket, "c1", "page", "p", "", "", 1, route=route)
                )
    out.sort(key=lambda r: r.time)
    return Trace(out, Catalogue(), [], f"test:seasonal:seed={seed}")


@pytest.fixture(scope="module")
def trace() -> Trace:
    return _seasonal()


def test_bucket_counts() -> None:
    reqs = [
        Request(0.0, "a", "page", "p", "", "", 1, route="/r"),
        Request(899.0, "a", "page", "p", "", "", 1, route="/r"),
        Request(900.0, "a", "file", "p", "f", "1", 1),
        Request(2000.0, "a", "page", "p", "", "", 1, route="/r", tenant="t2"),
    ]
    got = bucket_counts(reqs, 900.0)
    assert got == {
        ("default", "/r"): [2.0, 0.0, 0.0],
        ("default", "file"): [0.0, 1.0, 0.0],
        ("t2", "/r"): [0.0, 0.0, 1.0],
    }
    with pytest.raises(InvalidArgumentError):
        bucket_counts(reqs, 0)


@given(st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)), min_size=1, max_size=50))
def test_error_measures(pairs: list[tuple[float, float]]) -> None:
    a = [x for x, _ in pairs]
    p = [y for _, y in pairs]
    s = smape(a, p)
    assert 0.0 <= s <= 200.0 + 1e-9
    assert smape(a, a) == 0.0
    m = mape(a, p)
    assert math.isnan(m) == all(x == 0 for x in a)


def test_learned_beats_naive_and_upper_covers(trace: Trace) -> None:
    art = train(trace, seed=0)
    assert art.kind == "forecast"
    for learned in ("ridge", "gbdt"):
        assert art.metrics[f"{learned}.mae"] < art.metrics["naive-day.mae"]
        assert art.metrics[f"{learned}.smape"] < art.metrics["naive-day.smape"]
    best = art.params["model"]
    assert art.metrics[f"{best}.mae"] == min(
        art.metrics[f"{m}.mae"]
        for m in ("naive-day", "naive-week", "seasonal-mean", "ridge", "gbdt")
        if f"{m}.mae" in art.metrics
    )
    assert 0.8 <= art.metrics[f"{best}.upper_coverage"] <= 1.0
    assert best in art.card
    # the artifact survives its byte form, and so does the forecaster in it
    again = ModelArtifact.from_bytes(art.to_bytes())
    fc = Forecaster.from_artifact(again)
    assert fc.model == best and fc.to_bytes() == art.payload
    # deterministic for a seed
    assert train(trace, seed=0).payload == art.payload


@pytest.mark.parametrize("model", ["ridge", "gbdt", "seasonal-mean"])
def test_live_equals_offline(trace: Trace, model: str) -> None:
    """observe() then forecast() gives the prediction evaluate() scored for the same bucket."""
    fc = Forecaster.from_artifact(train(trace, seed=1, models=[model]))
    series = bucket_counts(trace.requests, fc.bucket_s)
    target = int(5 * DAY // fc.bucket_s) + 7
    boundary = (target - fc.horizon + 1) * fc.bucket_s  # the moment the hint for target is made
    for r in trace.requests:
        if r.time >= boundary:
            break
        fc.observe(r)
    live = {(f.tenant, f.route): f for f in fc.forecast(boundary)}
    assert set(live) == set(series)
    for key, counts in series.items():
        logs = [math.log1p(c) for c in counts]
        want = max(0.0, math.expm1(fc.predict_log(logs, target)))
        assert live[key].start == target * fc.bucket_s
        assert live[key].expected == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert live[key].upper >= live[key].expected
    assert fc.predict(boundary) == fc.forecast(boundary)  # the gateway's convention
    total = fc.forecast_total(boundary)
    assert total.expected == pytest.approx(sum(f.expected for f in live.values()))
    assert total.upper >= total.expected and fc.total_margin is not None
    assert total.start == target * fc.bucket_s
    only = fc.forecast(boundary, route="/simple/{project}/")
    assert [f.route for f in only] == ["/simple/{project}/"]


def test_history_is_bounded(trace: Trace) -> None:
    fc = Forecaster("seasonal-mean", max_series=1)
    for r in trace.requests:
        fc.observe(r)
    assert len(fc.series()) == 1
    kept = fc._counts[fc.series()[0]]
    assert len(kept) <= 8 * fc.per_day + fc.horizon + 1


@settings(max_examples=30)
@given(
    st.lists(
        st.floats(-5, 5, allow_nan=False),
        min_size=len(FEATURE_NAMES) + 1,
        max_size=len(FEATURE_NAMES) + 1,
    ),
    st.sampled_from([300.0, 900.0, 3600.0]),
    st.integers(1, 8),
    st.floats(0, 3),
)
def test_bytes_round_trip(coef: list[float], bucket: float, horizon: int, margin: float) -> None:
    """to_bytes / from_bytes of a forecaster are inverse (margins, calendar, coefficients)."""
    n = len(FEATURE_NAMES)
    fc = Forecaster(
        "ridge",
        bucket_s=bucket,
        horizon=horizon,
        margin=margin,
        total_margin=margin / 2 if horizon % 2 else None,
        params=_Ridge(coef, [0.5] * n, [2.0] * n),
    )
    back = Forecaster.from_bytes(fc.to_bytes())
    assert back.to_bytes() == fc.to_bytes()
    logs = [math.log1p(i % 7) for i in range(400)]
    assert back.predict_log(logs, 399) == fc.predict_log(logs, 399)


def test_bad_input() -> None:
    for bad in (
        b"",
        b"{}",
        b'{"format": 1, "model": "ridge"}',
        b"\xff" * 10,
        b'{"format": 1, "model": "gbdt", "trees": "AAAA", "bucket_s": 900, "horizon": 2,'
        b' "quantile": 0.9, "margin": 0, "origin": 0}',
    ):
        with pytest.raises(ModelError):
            Forecaster.from_bytes(bad)
    with pytest.raises(ModelError):
        Forecaster.from_artifact(ModelArtifact(kind="anomaly", payload=b""))
    with pytest.raises(InvalidArgumentError):
        Forecaster("prophet")
    with pytest.raises(InvalidArgumentError):
        Forecaster("ridge", bucket_s=700)
    with pytest.raises(InvalidArgumentError):
        train(_seasonal(days=2))
