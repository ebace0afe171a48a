"""Calibration: isotonic map and Venn-Abers interval (low <= p <= high), breakpoints round-trip,
bad input refused, and the quality measures against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError, ModelError
from registry_core.ml._calibrate import (
    Calibrator,
    auc,
    brier,
    expected_calibration_error,
    interval_coverage,
    log_loss,
    quality,
)


def _data(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * s))).astype(float)
    return s, y


def test_isotonic_calibrates_a_miscalibrated_score() -> None:
    s, y = _data(0)
    cal = Calibrator.fit(s, y, grid_points=32)
    s2, y2 = _data(1)
    p, low, high = cal.transform(s2)
    assert np.all(low <= p) and np.all(p <= high)
    assert expected_calibration_error(p, y2) < 0.05
    raw = 1 / (1 + np.exp(-s2))  # the wrong link: under-confident
    assert brier(p, y2) < brier(raw, y2)
    coverage, width = interval_coverage(low, high, y2)
    assert 0.0 <= coverage <= 1.0 and 0.0 < width < 0.2
    one = cal(float(s2[0]))
    lo, hi = cal.interval(float(s2[0]))
    assert lo <= one <= hi
    assert one == pytest.approx(float(p[0]))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(20, 200))
def test_round_trip_and_bounds(seed: int, n: int) -> None:
    s, y = _data(seed, n)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    cal = Calibrator.fit(s, y, grid_points=16)
    again = Calibrator.from_dict(cal.to_dict())
    assert again == cal
    for v in (-10.0, float(s[0]), 10.0):
        lo, hi = again.interval(v)
        assert 0.0 <= lo <= again(v) <= hi <= 1.0


def test_malformed_calibrators_are_refused() -> None:
    good = Calibrator.fit(*_data(2, 100), grid_points=8).to_dict()
    for bad in (
        {**good, "xs": good["xs"][::-1] if len(good["xs"]) > 1 else [1.0, 0.0]},
        {**good, "ys": [2.0] * len(good["ys"])},
        {**good, "lows": []},
        {k: v for k, v in good.items() if k != "grid"},
        {**good, "xs": ["x"] * len(good["xs"])},
    ):
        with pytest.raises(ModelError):
            Calibrator.from_dict(bad)
    with pytest.raises(InvalidArgumentError):
        Calibrator.fit([0.0, float("nan")], [0, 1])
    with pytest.raises(InvalidArgumentError):
        Calibrator.fit([0.0, 1.0], [0, 2])


def test_measures_by_hand() -> None:
    p = [0.9, 0.2, 0.6, 0.4]
    y = [1, 0, 0, 1]
    assert brier(p, y) == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    assert log_loss(p, y) == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.4)) / 4
    )
    assert auc(p, y) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert math.isnan(auc([0.1, 0.2], [1, 1]))
    assert expected_calibration_error([0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0]) == pytest.approx(0)
    q = quality(p, y, threshold=0.5)
    assert q["accuracy"] == pytest.approx(0.5) and q["base_rate"] == pytest.approx(0.5)
    assert q["majority_accuracy"] == pytest.approx(0.5) and q["n"] == 4
    with pytest.raises(InvalidArgumentError):
        brier([0.1], [1, 0])
