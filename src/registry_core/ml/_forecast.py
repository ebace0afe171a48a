"""Request-rate forecasting per (tenant, route): seasonal baselines against learned models.

Requests are counted in fixed buckets (``bucket_s``, 15 minutes by default) per series
``(tenant, route)`` (the route template, or the request kind when the log has none). A model
predicts the count of bucket ``t`` knowing the counts up to bucket ``t - horizon``: with the
default ``horizon=2``, at any moment the forecast is for the next whole bucket after the one in
progress, which is what a scaling decision needs.

Models (all on ``log1p`` counts, so one model serves series of very different volume):

- ``naive-day`` / ``naive-week``: the same bucket one day / one week earlier (seasonal naive).
- ``seasonal-mean``: the mean of the same bucket over the previous days (up to 7) that fall on
  the same kind of day (weekday or weekend), falling back to all previous days.
- ``ridge``: linear regression (closed form, numpy) on calendar features (time-of-day harmonics,
  weekday, weekend) and lags (the last known bucket, the mean of the last four, the same bucket
  one, two and seven days back, the seasonal mean).
- ``gbdt``: LightGBM gradient boosting on the same features at training, served as a
  :class:`~registry_core.ml._trees.TreeEnsemble` (numpy only).

:func:`train` fits the learned models on the first part of a trace, measures every model on the
held-out days (MAPE over buckets with a non-zero count, sMAPE over all: MAPE explodes on small
counts and ignores zeros, sMAPE gives 200% to any non-zero forecast of an empty bucket, so both
are reported, with the mean absolute error in requests per bucket), keeps the one with the lowest
MAE (sMAPE would reward forecasting zeros on sparse series), and sets the upper quantile of its
forecast from residuals on the last training day (conformal style): the :class:`Forecaster`
answers ``expected`` and ``upper`` counts. Deterministic for a seed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, ModelError
from ._artifact import ModelArtifact

if TYPE_CHECKING:
    import numpy as np

    from .traces import Request, Trace

__all__ = [
    "FEATURE_NAMES",
    "MODELS",
    "Forecast",
    "Forecaster",
    "bucket_counts",
    "evaluate",
    "mape",
    "series_key",
    "smape",
    "train",
]

DAY = 86400.0
MODELS = ("naive-day", "naive-week", "seasonal-mean", "ridge", "gbdt")
FEATURE_NAMES = (
    "tod_sin1",
    "tod_cos1",
    "tod_sin2",
    "tod_cos2",
    "tod_sin3",
    "tod_cos3",
    "weekend",
    "dow",
    "last",
    "last4_mean",
    "lag_day",
    "lag_2day",
    "lag_week",
    "has_week",
    "seasonal_mean",
)
_MAX_SERIES = 4096
_FORMAT = 1


def series_key(r: Request) -> tuple[str, str]:
    """The series a request counts in: ``(tenant, route)``; the kind stands in for a route."""
    return (r.tenant or "default", r.route or r.kind)


def bucket_counts(
    requests: Iterable[Request], bucket_s: float, *, origin: float = 0.0, n_buckets: int = 0
) -> dict[tuple[str, str], list[float]]:
    """Counts per series per bucket ``floor((time - origin) / bucket_s)``; every series padded
    to the same length (``n_buckets`` if given, else up to the last request)."""
    if bucket_s <= 0:
        raise InvalidArgumentError(f"bucket_s must be positive, not {bucket_s!r}")
    out: dict[tuple[str, str], dict[int, int]] = {}
    last = -1
    for r in requests:
        b = int((r.time - origin) // bucket_s)
        if b < 0 or (n_buckets and b >= n_buckets):
            continue
        key = series_key(r)
        if key not in out:
            if len(out) >= _MAX_SERIES:
                continue
            out[key] = {}
        d = out[key]
        d[b] = d.get(b, 0) + 1
        last = max(last, b)
    n = n_buckets or last + 1
    return {k: [float(d.get(i, 0)) for i in range(n)] for k, d in sorted(out.items())}


def mape(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute percentage error over the points with a non-zero actual (0 points: nan)."""
    pairs = [(a, p) for a, p in zip(actual, predicted, strict=True) if a != 0]
    if not pairs:
        return math.nan
    return 100.0 * sum(abs(a - p) / abs(a) for a, p in pairs) / len(pairs)


def smape(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Symmetric MAPE in percent (0..200); a point where both are 0 counts as exact."""
    if not actual:
        return math.nan
    total = 0.0
    for a, p in zip(actual, predicted, strict=True):
        den = abs(a) + abs(p)
        total += 0.0 if den == 0 else 2.0 * abs(a - p) / den
    return 100.0 * total / len(actual)


@dataclass(frozen=True)
class Forecast:
    """The forecast of one series for one bucket: ``expected`` and ``upper`` (the model's
    ``quantile``) request counts in the bucket starting at ``start`` and lasting ``bucket_s``."""

    tenant: str
    route: str
    start: float
    bucket_s: float
    expected: float
    upper: float

    @property
    def expected_rps(self) -> float:
        return self.expected / self.bucket_s

    @property
    def upper_rps(self) -> float:
        return self.upper / self.bucket_s


# -- features -------------------------------------------------------------------------------


def _features(
    logs: Sequence[float],
    t: int,
    horizon: int,
    per_day: int,
    weekday0: int,
    bucket_s: float,
    base: int = 0,
) -> list[float]:
    """The feature row for predicting index ``t`` of a series of log1p counts ``logs`` whose
    index 0 is bucket ``base`` (only indexes <= t - horizon are read)."""
    known = t - horizon

    def at(i: int) -> float:
        return logs[i] if 0 <= i <= known else math.nan

    tod = ((base + t) % per_day) / per_day
    day = (base + t) // per_day
    dow = (day + weekday0) % 7
    weekend = 1.0 if dow >= 5 else 0.0
    row = []
    for k in (1, 2, 3):
        row.append(math.sin(2 * math.pi * k * tod))
        row.append(math.cos(2 * math.pi * k * tod))
    last = at(known)
    recent = [at(i) for i in range(known - 3, known + 1)]
    recent = [v for v in recent if not math.isnan(v)]
    lag_day = at(t - per_day)
    lag_2day = at(t - 2 * per_day)
    lag_week = at(t - 7 * per_day)
    has_week = 0.0 if math.isnan(lag_week) else 1.0
    same_kind, any_kind = [], []
    for k in range(1, 8):
        v = at(t - k * per_day)
        if math.isnan(v):
            continue
        any_kind.append(v)
        if (1.0 if (day - k + weekday0) % 7 >= 5 else 0.0) == weekend:
            same_kind.append(v)
    season = same_kind or any_kind
    smean = sum(season) / len(season) if season else math.nan
    fill = smean if not math.isnan(smean) else (last if not math.isnan(last) else 0.0)

    def f(v: float) -> float:
        return fill if math.isnan(v) else v

    row += [
        weekend,
        float(dow),
        f(last),
        sum(recent) / len(recent) if recent else fill,
        f(lag_day),
        f(lag_2day),
        f(lag_week) if has_week else f(lag_day),
        has_week,
        fill,
    ]
    return row


def _weekday0(origin: float) -> int:
    """Weekday (Monday 0) of bucket 0: generated traces start on a Monday at time 0; real logs
    use the unix epoch (a Thursday)."""
    return int((origin // DAY + 3) % 7) if origin > 1e8 else int((origin // DAY) % 7)


def _baseline(
    name: str, logs: Sequence[float], t: int, horizon: int, per_day: int, weekday0: int, base: int
) -> float:
    """Log1p prediction of a seasonal baseline (the feature code is the one definition)."""
    feats = _features(logs, t, horizon, per_day, weekday0, 0.0, base)
    idx = {"naive-day": "lag_day", "naive-week": "lag_week", "seasonal-mean": "seasonal_mean"}
    return feats[FEATURE_NAMES.index(idx[name])]


# -- models ---------------------------------------------------------------------------------


class _Ridge:
    def __init__(self, coef: Sequence[float], mean: Sequence[float], scale: Sequence[float]):
        self.coef = [float(c) for c in coef]  # intercept first
        self.mean = [float(m) for m in mean]
        self.scale = [float(s) for s in scale]
        if not (
            len(self.coef) == len(self.mean) + 1 == len(self.scale) + 1 == len(FEATURE_NAMES) + 1
        ):
            raise ModelError("ridge forecaster: coefficient count does not match the features")

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> _Ridge:
        import numpy as np

        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        Z = (X - mean) / scale
        A = Z.T @ Z + alpha * np.eye(Z.shape[1])
        w = np.linalg.solve(A, Z.T @ (y - y.mean()))
        return cls([float(y.mean()), *w.tolist()], mean.tolist(), scale.tolist())

    def predict_one(self, row: Sequence[float]) -> float:
        out = self.coef[0]
        for c, x, m, s in zip(self.coef[1:], row, self.mean, self.scale, strict=True):
            out += c * (x - m) / s
        return out

    def to_json(self) -> dict[str, Any]:
        return {"coef": self.coef, "mean": self.mean, "scale": self.scale}


def _fit_gbdt(X: np.ndarray, y: np.ndarray, seed: int) -> Any:
    try:
        import lightgbm as lgb
    except ImportError as exc:  # pragma: no cover - the ml-train extra is installed in tests
        raise ImportError(
            "training the gbdt forecaster needs lightgbm: pip install 'registry-core[ml-train]'"
        ) from exc
    from ._trees import TreeEnsemble

    params = {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "verbose": -1,
    }
    ds = lgb.Dataset(X, y, feature_name=list(FEATURE_NAMES), free_raw_data=False)
    booster = lgb.train(params, ds, num_boost_round=200)
    return TreeEnsemble.from_lightgbm(booster)


class Forecaster:
    """A trained forecaster with a live, bounded count history.

    ``observe(request)`` counts a request into its series' bucket; ``forecast(now)`` answers, per
    series, the :class:`Forecast` of the next whole bucket (``horizon`` buckets after the last
    complete one). History is kept for 8 days of buckets per series and for at most
    ``max_series`` series (new ones beyond that are not tracked). Not thread-safe: the caller
    serializes ``observe`` (one event loop or a lock).
    """

    kind = "forecast"

    def __init__(
        self,
        model: str,
        *,
        bucket_s: float = 900.0,
        horizon: int = 2,
        quantile: float = 0.95,
        margin: float = 0.0,
        total_margin: float | None = None,
        origin: float = 0.0,
        params: Any = None,
        max_series: int = 256,
    ) -> None:
        if model not in MODELS:
            raise InvalidArgumentError(f"forecast model must be one of {MODELS}, not {model!r}")
        if not (isinstance(horizon, int) and 1 <= horizon <= 96):
            raise InvalidArgumentError(f"horizon must be 1..96 buckets, not {horizon!r}")
        if not (60.0 <= bucket_s <= DAY) or DAY % bucket_s:
            raise InvalidArgumentError(
                f"bucket_s must divide a day and be 60..86400 s, not {bucket_s!r}"
            )
        if not 0.5 <= quantile < 1.0:
            raise InvalidArgumentError(f"quantile must be in [0.5, 1), not {quantile!r}")
        self.model = model
        self.bucket_s = float(bucket_s)
        self.horizon = horizon
        self.quantile = quantile
        self.margin = float(margin)
        self.total_margin = None if total_margin is None else float(total_margin)
        self.origin = float(origin)
        self.params = params
        self.max_series = max_series
        self.per_day = int(DAY // bucket_s)
        self._keep = 8 * self.per_day + horizon
        self._weekday0 = _weekday0(origin)
        self._counts: dict[tuple[str, str], dict[int, int]] = {}
        self._latest = -1
        self._first: int | None = None  # first day's first bucket: earlier ones are unknown

    # -- serving -------------------------------------------------------------------------

    def observe(self, r: Request) -> None:
        """Count one request (a live stream or a replayed log)."""
        b = int((r.time - self.origin) // self.bucket_s)
        key = series_key(r)
        d = self._counts.get(key)
        if d is None:
            if len(self._counts) >= self.max_series:
                return
            d = self._counts[key] = {}
        d[b] = d.get(b, 0) + 1
        if self._first is None or b < self._first:
            self._first = (b // self.per_day) * self.per_day
        if b > self._latest:
            self._latest = b
            floor = b - self._keep
            for series in self._counts.values():
                for old in [k for k in series if k < floor]:
                    del series[old]

    def series(self) -> list[tuple[str, str]]:
        return sorted(self._counts)

    def predict_log(self, logs: Sequence[float], t: int, base: int = 0) -> float:
        """Log1p prediction for index ``t`` of a log1p series starting at bucket ``base`` (the
        one code path of training, evaluation and serving)."""
        if self.model in ("naive-day", "naive-week", "seasonal-mean"):
            return _baseline(self.model, logs, t, self.horizon, self.per_day, self._weekday0, base)
        row = _features(logs, t, self.horizon, self.per_day, self._weekday0, self.bucket_s, base)
        return float(self.params.predict_one(row))

    def forecast(
        self, now: float, *, tenant: str | None = None, route: str | None = None
    ) -> list[Forecast]:
        """Per tracked series (filtered by ``tenant`` / ``route``), the forecast of the bucket
        ``horizon - 1`` after the one ``now`` falls in."""
        current = int((now - self.origin) // self.bucket_s)
        target = current - 1 + self.horizon
        out = []
        for (ten, rte), d in sorted(self._counts.items()):
            if (tenant is not None and ten != tenant) or (route is not None and rte != route):
                continue
            lo = max(target - self._keep, self._first or 0)
            t = target - lo
            logs = [math.log1p(d.get(lo + i, 0)) for i in range(t + 1)]
            logs = logs[: t - self.horizon + 1] + [0.0] * self.horizon  # nothing past "known"
            pred = self.predict_log(logs, t, lo)
            expected = max(0.0, math.expm1(pred))
            upper = max(expected, math.expm1(pred + self.margin))
            start = self.origin + target * self.bucket_s
            out.append(Forecast(ten, rte, start, self.bucket_s, expected, upper))
        return out

    def forecast_total(self, now: float, *, tenant: str | None = None) -> Forecast:
        """The forecast of all tracked series together (of ``tenant``, or all): ``expected`` the
        sum, ``upper`` from the quantile fitted on the training totals (``total_margin``), or
        the sum of the series' upper forecasts when there is none (conservative: a sum of
        quantiles is above the quantile of the sum)."""
        parts = self.forecast(now, tenant=tenant)
        current = int((now - self.origin) // self.bucket_s)
        start = self.origin + (current - 1 + self.horizon) * self.bucket_s
        expected = sum(f.expected for f in parts)
        if self.total_margin is None:
            upper = sum(f.upper for f in parts)
        else:
            upper = max(expected, math.expm1(math.log1p(expected) + self.total_margin))
        return Forecast(tenant or "*", "*", start, self.bucket_s, expected, upper)

    def predict(
        self, now: float, tenant: str | None = None, route: str | None = None
    ) -> list[Forecast]:
        """:meth:`forecast` under the prediction gateway's calling convention (``kind``
        ``forecast``, loader :meth:`from_bytes`); the history is what this process observed."""
        return self.forecast(float(now), tenant=tenant, route=route)

    # -- bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        head: dict[str, Any] = {
            "format": _FORMAT,
            "model": self.model,
            "bucket_s": self.bucket_s,
            "horizon": self.horizon,
            "quantile": self.quantile,
            "margin": self.margin,
            "total_margin": self.total_margin,
            "origin": self.origin,
        }
        if isinstance(self.params, _Ridge):
            head["ridge"] = self.params.to_json()
        elif self.params is not None:
            head["trees"] = base64.b64encode(self.params.to_bytes()).decode()
        return json.dumps(head, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Forecaster:
        if len(data) > 16 << 20:
            raise ModelError(f"forecaster is {len(data)} bytes (at most 16 MiB)")
        try:
            head = json.loads(bytes(data))
            if not isinstance(head, dict) or head.get("format") != _FORMAT:
                raise ModelError("not a forecaster payload of format 1")
            params: Any = None
            if head["model"] == "ridge":
                r = head["ridge"]
                params = _Ridge(r["coef"], r["mean"], r["scale"])
            elif head["model"] == "gbdt":
                from ._trees import TreeEnsemble

                params = TreeEnsemble.from_bytes(base64.b64decode(head["trees"], validate=True))
                if params.n_features != len(FEATURE_NAMES):
                    raise ModelError("gbdt forecaster: feature count does not match")
            return cls(
                str(head["model"]),
                bucket_s=float(head["bucket_s"]),
                horizon=int(head["horizon"]),
                quantile=float(head["quantile"]),
                margin=float(head["margin"]),
                total_margin=(
                    None if head.get("total_margin") is None else float(head["total_margin"])
                ),
                origin=float(head["origin"]),
                params=params,
            )
        except ModelError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"forecaster payload is malformed: {exc!r}") from None

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact) -> Forecaster:
        if artifact.kind != "forecast":
            raise ModelError(f"a {artifact.kind!r} artifact is not a forecaster")
        return cls.from_bytes(artifact.payload)


# -- training and evaluation ----------------------------------------------------------------


def _design(
    series: Mapping[tuple[str, str], Sequence[float]],
    lo: int,
    hi: int,
    horizon: int,
    per_day: int,
    weekday0: int,
    bucket_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    rows, ys = [], []
    for counts in series.values():
        logs = [math.log1p(c) for c in counts]
        for t in range(max(lo, per_day), hi):
            rows.append(_features(logs, t, horizon, per_day, weekday0, bucket_s))
            ys.append(logs[t])
    return np.asarray(rows, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _fit(
    name: str,
    series: Mapping[tuple[str, str], Sequence[float]],
    hi: int,
    *,
    horizon: int,
    bucket_s: float,
    origin: float,
    seed: int,
) -> Forecaster:
    per_day = int(DAY // bucket_s)
    fc = Forecaster(name, bucket_s=bucket_s, horizon=horizon, origin=origin)
    if name in ("ridge", "gbdt"):
        X, y = _design(series, 0, hi, horizon, per_day, fc._weekday0, bucket_s)
        if len(y) < 50:
            raise InvalidArgumentError(
                f"too little history to train a forecaster ({len(y)} buckets after the first day)"
            )
        fc.params = _Ridge.fit(X, y) if name == "ridge" else _fit_gbdt(X, y, seed)
    return fc


def _predictions(
    fc: Forecaster, series: Mapping[tuple[str, str], Sequence[float]], lo: int, hi: int
) -> tuple[list[float], list[float], list[float]]:
    """Actual counts, expected counts and log residuals over buckets lo..hi of every series."""
    actual, pred, resid = [], [], []
    for counts in series.values():
        logs = [math.log1p(c) for c in counts]
        for t in range(max(lo, fc.per_day), hi):
            p = fc.predict_log(logs, t)
            actual.append(counts[t])
            pred.append(max(0.0, math.expm1(p)))
            resid.append(logs[t] - p)
    return actual, pred, resid


def _totals(
    fc: Forecaster, series: Mapping[tuple[str, str], Sequence[float]], lo: int, hi: int
) -> tuple[list[float], list[float]]:
    """Per bucket lo..hi, the actual and the expected count summed over every series."""
    lo = max(lo, fc.per_day)
    actual = [0.0] * max(0, hi - lo)
    pred = [0.0] * max(0, hi - lo)
    for counts in series.values():
        logs = [math.log1p(c) for c in counts]
        for i, t in enumerate(range(lo, hi)):
            actual[i] += counts[t]
            pred[i] += max(0.0, math.expm1(fc.predict_log(logs, t)))
    return actual, pred


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def evaluate(
    trace: Trace,
    *,
    train_fraction: float = 0.7,
    bucket_s: float = 900.0,
    horizon: int = 2,
    seed: int = 0,
    models: Sequence[str] = MODELS,
) -> dict[str, dict[str, float]]:
    """Every model's MAPE, sMAPE and upper-quantile coverage on the held-out buckets (the last
    ``1 - train_fraction`` of the trace's whole days), learned models fitted on the rest."""
    out, _ = _train_all(trace, train_fraction, bucket_s, horizon, seed, models)
    return out


def _train_all(
    trace: Trace,
    train_fraction: float,
    bucket_s: float,
    horizon: int,
    seed: int,
    models: Sequence[str],
    quantile: float = 0.95,
) -> tuple[dict[str, dict[str, float]], dict[str, Forecaster]]:
    if not 0.1 <= train_fraction <= 0.95:
        raise InvalidArgumentError(f"train_fraction must be in [0.1, 0.95], not {train_fraction}")
    reqs = trace.requests
    if not reqs:
        raise InvalidArgumentError("the trace has no requests")
    per_day = int(DAY // bucket_s)
    origin = math.floor(reqs[0].time / DAY) * DAY
    series = bucket_counts(reqs, bucket_s, origin=origin)
    n = len(next(iter(series.values())))
    split = int(n * train_fraction)
    if split < 2 * per_day or n - split < per_day // 2:
        raise InvalidArgumentError(
            f"the trace covers {n * bucket_s / DAY:.1f} days: at least 3 are needed"
        )
    metrics: dict[str, dict[str, float]] = {}
    fitted: dict[str, Forecaster] = {}
    calib = max(per_day, split - per_day)  # the last training day sets the upper quantile
    for name in models:
        probe = _fit(
            name, series, calib, horizon=horizon, bucket_s=bucket_s, origin=origin, seed=seed
        )
        _, _, resid = _predictions(probe, series, calib, split)
        ta, tp = _totals(probe, series, calib, split)
        total_resid = [math.log1p(a) - math.log1p(p) for a, p in zip(ta, tp, strict=True)]
        fc = _fit(name, series, split, horizon=horizon, bucket_s=bucket_s, origin=origin, seed=seed)
        fc.margin = max(0.0, _quantile(resid, quantile))
        fc.total_margin = max(0.0, _quantile(total_resid, quantile))
        fc.quantile = quantile
        actual, pred, _ = _predictions(fc, series, split, n)
        total_a = [sum(series[k][t] for k in series) for t in range(split, n)]
        total_p: list[float] = [0.0] * (n - split)
        covered = 0
        m = 0
        for counts in series.values():
            logs = [math.log1p(c) for c in counts]
            for i, t in enumerate(range(split, n)):
                p = fc.predict_log(logs, t)
                total_p[i] += max(0.0, math.expm1(p))
                covered += counts[t] <= math.expm1(p + fc.margin) + 1e-9
                m += 1
        metrics[name] = {
            "mae": sum(abs(a - p) for a, p in zip(actual, pred, strict=True)) / len(actual),
            "mae_total": sum(abs(a - p) for a, p in zip(total_a, total_p, strict=True))
            / len(total_a),
            "mape": mape(actual, pred),
            "smape": smape(actual, pred),
            "mape_total": mape(total_a, total_p),
            "smape_total": smape(total_a, total_p),
            "upper_coverage": covered / m if m else math.nan,
            "upper_coverage_total": sum(
                a <= math.expm1(math.log1p(p) + (fc.total_margin or 0.0)) + 1e-9
                for a, p in zip(total_a, total_p, strict=True)
            )
            / len(total_a),
            "held_out_buckets": float(n - split),
            "series": float(len(series)),
        }
        fitted[name] = fc
    return metrics, fitted


def train(
    trace: Trace,
    *,
    seed: int = 0,
    bucket_s: float = 900.0,
    horizon: int = 2,
    train_fraction: float = 0.7,
    quantile: float = 0.95,
    models: Sequence[str] = MODELS,
) -> ModelArtifact:
    """Fit and measure every model, keep the one with the lowest held-out MAE; the artifact's
    metrics hold every model's figures (``<model>.smape``...), so the card shows the baselines."""
    metrics, fitted = _train_all(trace, train_fraction, bucket_s, horizon, seed, models, quantile)
    best = min(metrics, key=lambda k: (metrics[k]["mae"], k))
    chosen = fitted[best]
    flat = {f"{m}.{k}": v for m, ms in metrics.items() for k, v in ms.items() if math.isfinite(v)}
    digest = hashlib.sha256()
    for r in trace.requests:
        digest.update(f"{r.time:.3f}|{r.tenant}|{r.route or r.kind}\n".encode())
    lines = [
        f"# Forecaster ({best})",
        "",
        f"Request counts per (tenant, route) in {bucket_s:g} s buckets, {horizon} buckets ahead;",
        f"trained on the first {train_fraction:.0%} of `{trace.source}` (seed {seed}).",
        "",
        "| model | MAE | MAPE % | sMAPE % | total sMAPE % | upper coverage |",
        "|---|---|---|---|---|---|",
    ]
    for m, ms in metrics.items():
        lines.append(
            f"| {m} | {ms['mae']:.2f} | {ms['mape']:.1f} | {ms['smape']:.1f} | "
            f"{ms['smape_total']:.1f} | {ms['upper_coverage']:.3f} |"
        )
    return ModelArtifact(
        kind="forecast",
        payload=chosen.to_bytes(),
        metrics=flat,
        data_sha256=digest.hexdigest(),
        feature_names=FEATURE_NAMES,
        seed=seed,
        card="\n".join(lines) + "\n",
        name="forecast",
        params={"model": best, "bucket_s": bucket_s, "horizon": horizon, "quantile": quantile},
    )
