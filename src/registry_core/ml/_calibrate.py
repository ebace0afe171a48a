"""Calibration and its measures: isotonic regression with Venn-Abers intervals, stored as
breakpoints, plus the scores every prediction table reports.

The probability served is the Venn-Abers merge ``high / (1 - low + high)`` (Vovk and Petej's
log-loss choice), which lies in ``[low, high]``; the plain isotonic map is kept beside it.

:class:`Calibrator` maps a model's raw score to a probability with isotonic regression fitted on a
calibration slice (a stretch of training time the model did not learn from), and gives each
prediction an interval ``[low, high]`` by inductive Venn-Abers prediction (Vovk and Petej,
"Venn-Abers predictors", UAI 2014): refit the isotonic map with the test score added once as a
negative (``low``) and once as a positive (``high``). One of the two is a calibrated
probability whatever the data (under exchangeability); the width shows how much the calibration
slice knows about scores like this one. Both maps are evaluated on a grid of score quantiles at
training time and stored as plain breakpoints: serving is a bisection, no scikit-learn.

Fitting needs scikit-learn (``[ml-train]``); the metric functions and serving need numpy only.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, ModelError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Calibrator",
    "auc",
    "brier",
    "expected_calibration_error",
    "interval_coverage",
    "log_loss",
    "quality",
]

_MAX_POINTS = 1 << 16


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation, flat outside (as numpy.interp)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    if x1 == x0:
        return y1
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _check_points(name: str, xs: Sequence[float], ys: Sequence[float]) -> None:
    if not 1 <= len(xs) <= _MAX_POINTS or len(xs) != len(ys):
        raise ModelError(f"calibrator {name}: need 1..{_MAX_POINTS} paired points")
    if any(not math.isfinite(v) for v in (*xs, *ys)):
        raise ModelError(f"calibrator {name}: points must be finite")
    if any(b < a for a, b in itertools.pairwise(xs)):
        raise ModelError(f"calibrator {name}: breakpoints must be sorted")
    if any(not 0.0 <= y <= 1.0 for y in ys):
        raise ModelError(f"calibrator {name}: probabilities must be in [0, 1]")


@dataclass(frozen=True)
class Calibrator:
    """Score -> probability (isotonic, ``xs``/``ys``) and its Venn-Abers interval (``grid``,
    ``lows``, ``highs``)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    grid: tuple[float, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_points("map", self.xs, self.ys)
        _check_points("low", self.grid, self.lows)
        _check_points("high", self.grid, self.highs)

    @classmethod
    def fit(cls, scores: Any, labels: Any, *, grid_points: int = 96) -> Calibrator:
        """Fit on a calibration slice (``scores``: raw model outputs, ``labels``: 0/1)."""
        import numpy as np

        try:
            from sklearn.isotonic import IsotonicRegression
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModelError(
                "fitting a calibrator needs scikit-learn: pip install 'registry-core[ml-train]'"
            ) from exc
        s = np.asarray(scores, dtype=np.float64).ravel()
        y = np.asarray(labels, dtype=np.float64).ravel()
        if s.size != y.size or s.size < 2:
            raise InvalidArgumentError("calibration needs at least 2 scores with labels")
        if not np.all(np.isfinite(s)) or not np.all((y == 0) | (y == 1)):
            raise InvalidArgumentError("calibration scores must be finite and labels 0 or 1")
        # aggregate equal scores (tree models give few distinct values): weighted points
        uniq, inv = np.unique(s, return_inverse=True)
        w = np.bincount(inv).astype(np.float64)
        pos = np.bincount(inv, weights=y)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(uniq, pos / w, sample_weight=w)
        xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
        ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
        qs = np.unique(np.quantile(s, np.linspace(0.0, 1.0, max(2, grid_points))))
        lows, highs = [], []
        for g in qs:
            k = int(np.searchsorted(uniq, g))
            if k < uniq.size and uniq[k] == g:
                ux, base_w, base_p = uniq, w.copy(), pos.copy()
            else:
                ux = np.insert(uniq, k, g)
                base_w, base_p = np.insert(w, k, 0.0), np.insert(pos, k, 0.0)
            out = []
            for label in (0.0, 1.0):
                ww, pp = base_w.copy(), base_p.copy()
                ww[k] += 1.0
                pp[k] += label
                fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                fit.fit(ux, pp / ww, sample_weight=ww)
                out.append(float(fit.predict([g])[0]))
            lows.append(out[0])
            highs.append(out[1])
        return cls(
            tuple(float(v) for v in xs),
            tuple(float(v) for v in ys),
            tuple(float(v) for v in qs),
            tuple(lows),
            tuple(highs),
        )

    def isotonic(self, score: float) -> float:
        """The plain isotonic map of one raw score (can be exactly 0 or 1)."""
        return _interp(self.xs, self.ys, float(score))

    def __call__(self, score: float) -> float:
        """The calibrated probability of one raw score: the Venn-Abers merge
        ``high / (1 - low + high)`` of its interval (never exactly 0 or 1, which the plain
        isotonic map gives to its end blocks and log loss punishes without bound)."""
        low, high = self.interval(score)
        return high / (1.0 - low + high)

    def interval(self, score: float) -> tuple[float, float]:
        """The Venn-Abers interval (low, high) of one raw score."""
        low = _interp(self.grid, self.lows, float(score))
        high = _interp(self.grid, self.highs, float(score))
        return low, max(low, high)

    def transform(self, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorized: (probability, low, high) arrays for an array of scores."""
        import numpy as np

        s = np.asarray(scores, dtype=np.float64)
        low = np.interp(s, self.grid, self.lows)
        high = np.maximum(np.interp(s, self.grid, self.highs), low)
        return high / (1.0 - low + high), low, high

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "xs": list(self.xs),
            "ys": list(self.ys),
            "grid": list(self.grid),
            "lows": list(self.lows),
            "highs": list(self.highs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        try:
            return cls(
                *(tuple(float(v) for v in data[k]) for k in ("xs", "ys", "grid", "lows", "highs"))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"calibrator is malformed: {exc!r}") from None


# -- measures ----------------------------------------------------------------------------


def _arrays(p: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    pa = np.asarray(p, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    if pa.size != ya.size:
        raise InvalidArgumentError(f"{pa.size} predictions for {ya.size} labels")
    return pa, ya


def brier(p: Any, y: Any) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (lower is better)."""
    pa, ya = _arrays(p, y)
    return float(((pa - ya) ** 2).mean()) if pa.size else float("nan")


def log_loss(p: Any, y: Any, eps: float = 1e-6) -> float:
    """Mean negative log-likelihood (natural log), probabilities clipped to [eps, 1 - eps]."""
    import numpy as np

    pa, ya = _arrays(p, y)
    if not pa.size:
        return float("nan")
    pa = np.clip(pa, eps, 1.0 - eps)
    return float(-(ya * np.log(pa) + (1.0 - ya) * np.log(1.0 - pa)).mean())


def expected_calibration_error(p: Any, y: Any, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: sum of |mean p - rate| weighted by the
    share of predictions in each bin."""
    import numpy as np

    pa, ya = _arrays(p, y)
    if not pa.size:
        return float("nan")
    idx = np.minimum((pa * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / pa.size * abs(pa[m].mean() - ya[m].mean())
    return float(total)


def auc(p: Any, y: Any) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); nan with one class."""
    import numpy as np

    pa, ya = _arrays(p, y)
    n_pos = int(ya.sum())
    n_neg = ya.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(pa, kind="mergesort")
    ranks = np.empty(pa.size, dtype=np.float64)
    sorted_p = pa[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[ya == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def interval_coverage(low: Any, high: Any, y: Any, bins: int = 10) -> tuple[float, float]:
    """(coverage, mean width) of per-prediction intervals: predictions sorted by the interval's
    middle into ``bins`` equal-count groups; coverage is the share of groups whose observed
    positive rate lies in the group's mean [low, high] (an interval for one 0/1 outcome cannot
    be checked alone)."""
    import numpy as np

    lo, ya = _arrays(low, y)
    hi, _ = _arrays(high, y)
    if not lo.size:
        return float("nan"), float("nan")
    order = np.argsort((lo + hi) / 2.0, kind="mergesort")
    hit = 0
    groups = [g for g in np.array_split(order, min(bins, lo.size)) if g.size]
    for g in groups:
        rate = ya[g].mean()
        if lo[g].mean() - 1e-12 <= rate <= hi[g].mean() + 1e-12:
            hit += 1
    return hit / len(groups), float((hi - lo).mean())


def quality(p: Any, y: Any, threshold: float = 0.5) -> dict[str, float]:
    """The scores of one set of predictions: brier, log loss, ECE, AUC, accuracy at
    ``threshold``, the base rate (share of positives) and the accuracy of always answering the
    majority class (what accuracy must be read beside)."""
    pa, ya = _arrays(p, y)
    base = float(ya.mean()) if ya.size else float("nan")
    acc = float(((pa >= threshold) == (ya == 1)).mean()) if ya.size else float("nan")
    return {
        "brier": brier(pa, ya),
        "log_loss": log_loss(pa, ya),
        "ece": expected_calibration_error(pa, ya),
        "auc": auc(pa, ya),
        "accuracy": acc,
        "base_rate": base,
        "majority_accuracy": max(base, 1.0 - base) if ya.size else float("nan"),
        "n": float(ya.size),
    }
