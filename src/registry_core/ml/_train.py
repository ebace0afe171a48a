"""The training pipeline (#74): trace in, model artifacts, an evaluation report and model cards out.

``train(trace, seed=, tasks=, out=)`` trains each task on the first ``train_fraction`` of the
trace's time and measures it on the rest (held-out time), then writes ``<task>.rcml``
(:class:`~registry_core.ml._artifact.ModelArtifact`), ``<task>.card.md`` and one ``report.json``.
The same trace and seed give the same artifact bytes, except the ``created`` time.

Next-download (this module): examples from :func:`registry_core.ml._predict.make_examples`; the
training time is split again by time, the last ``calibration_fraction`` of its examples being
the calibration slice; every training or calibration example's horizon ends before the held-out
time begins (no label looks into the test period). Two models are fitted, LightGBM gradient-
boosted trees (converted to :class:`~registry_core.ml._trees.TreeEnsemble`) and a logistic
regression (a one-layer :class:`~registry_core.ml._dense.DenseNet`); the one with the lower log
loss on the calibration slice ships, both are reported. Baselines: the project's historical
upgrade rate (frequency) and the rate by days since the newest release (recency).

Other tasks ("learned-eviction", "forecast", "anomaly") are trained by their modules'
``train(trace, seed=)`` when those modules exist. LightGBM and scikit-learn are imported here
only, when training (``[ml-train]``).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, MLError
from ._artifact import ModelArtifact
from ._calibrate import Calibrator, interval_coverage, quality
from ._features import FEATURE_NAMES
from ._predict import DAY, KIND, ExampleSet, Predictor, make_examples

if TYPE_CHECKING:
    import numpy as np

    from .traces import Trace

__all__ = ["TASKS", "evaluate", "train", "train_next_download"]

#: Every task the pipeline knows, and the module whose ``train(trace, seed=)`` makes it.
TASKS: dict[str, str] = {
    "next-download": "",
    "next-download-24h": "",
    "learned-eviction": "registry_core.ml._learned_cache",
    "forecast": "registry_core.ml._forecast",
    "anomaly": "registry_core.ml._anomaly",
}
DEFAULT_TASKS = ("next-download", "next-download-24h", "learned-eviction", "forecast", "anomaly")


def _need_train_deps() -> tuple[Any, Any]:
    try:
        import lightgbm
        import sklearn.linear_model
    except ImportError as exc:
        raise MLError(
            f"training needs lightgbm and scikit-learn: pip install 'registry-core[ml-train]' "
            f"({exc})"
        ) from None
    return lightgbm, sklearn.linear_model


def split_examples(
    data: ExampleSet,
    start: float,
    *,
    train_fraction: float = 0.7,
    calibration_fraction: float = 0.2,
) -> tuple[ExampleSet, ExampleSet, ExampleSet, float]:
    """(fit, calibration, test, cut): test is every example at or after ``cut`` (the
    ``train_fraction`` point of the trace's time); fit and calibration are the examples whose
    horizon ends before ``cut``, calibration being the latest ``calibration_fraction``."""
    import numpy as np

    if not 0.0 < train_fraction < 1.0 or not 0.0 < calibration_fraction < 1.0:
        raise InvalidArgumentError("train_fraction and calibration_fraction must be in (0, 1)")
    cut = start + train_fraction * (data.end - start)
    t = data.times
    before = t + data.horizon_s <= cut
    test = t >= cut
    idx = np.flatnonzero(before)
    if idx.size < 20 or int(test.sum()) < 10:
        raise InvalidArgumentError(
            f"too few examples to train and test ({idx.size} before the cut, {int(test.sum())} "
            f"after): use a longer trace (at least "
            f"{data.horizon_s / DAY / (1 - train_fraction):.0f} days for this horizon) "
            "or more clients"
        )
    n_cal = max(10, int(round(idx.size * calibration_fraction)))
    fit_mask = np.zeros(t.size, dtype=bool)
    cal_mask = np.zeros(t.size, dtype=bool)
    fit_mask[idx[:-n_cal]] = True
    cal_mask[idx[-n_cal:]] = True
    return data.select(fit_mask), data.select(cal_mask), data.select(test), cut


# -- baselines -----------------------------------------------------------------------------


class FrequencyBaseline:
    """P(upgrade) = the project's share of positive examples in training (smoothed toward the
    overall rate with ``prior`` pseudo-examples)."""

    def __init__(self, fit: ExampleSet, prior: float = 5.0) -> None:
        self.rate = float(fit.y.mean()) if fit.y.size else 0.0
        counts: dict[str, list[float]] = {}
        for e, label in zip(fit.examples, fit.y, strict=False):
            c = counts.setdefault(e.project, [0.0, 0.0])
            c[0] += float(label)
            c[1] += 1.0
        self.by_project = {
            p: (pos + prior * self.rate) / (n + prior) for p, (pos, n) in counts.items()
        }

    def predict(self, data: ExampleSet) -> np.ndarray:
        import numpy as np

        return np.asarray(
            [self.by_project.get(e.project, self.rate) for e in data.examples], dtype=np.float64
        )


class RecencyBaseline:
    """P(upgrade) = the training rate among examples whose newest release is as old (days since
    the newest release, in doubling buckets)."""

    _col = FEATURE_NAMES.index("newest_age_d")

    def __init__(self, fit: ExampleSet) -> None:
        import numpy as np

        self.rate = float(fit.y.mean()) if fit.y.size else 0.0
        b = self._bucket(fit.X)
        self.table = {}
        for k in np.unique(b):
            m = b == k
            self.table[int(k)] = (float(fit.y[m].sum()) + self.rate) / (float(m.sum()) + 1.0)

    def _bucket(self, X: np.ndarray) -> np.ndarray:
        import numpy as np

        age = np.maximum(X[:, self._col], 0.0)
        return np.floor(np.log2(age * 24.0 + 1.0)).astype(np.int64)

    def predict(self, data: ExampleSet) -> np.ndarray:
        import numpy as np

        return np.asarray(
            [self.table.get(int(k), self.rate) for k in self._bucket(data.X)], dtype=np.float64
        )


# -- models --------------------------------------------------------------------------------


def _fit_gbdt(fit: ExampleSet, cal: ExampleSet, seed: int) -> Any:
    lightgbm, _ = _need_train_deps()
    from ._trees import TreeEnsemble

    params = {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 7,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    train_set = lightgbm.Dataset(
        fit.X, fit.y, feature_name=list(FEATURE_NAMES), free_raw_data=False
    )
    valid = lightgbm.Dataset(cal.X, cal.y, reference=train_set)
    booster = lightgbm.train(
        params,
        train_set,
        num_boost_round=300,
        valid_sets=[valid],
        callbacks=[lightgbm.early_stopping(30, verbose=False)],
    )
    return TreeEnsemble.from_lightgbm(booster.dump_model(num_iteration=booster.best_iteration))


def _fit_logistic(fit: ExampleSet, seed: int) -> Any:
    import numpy as np

    _, linear = _need_train_deps()
    from ._dense import DenseNet

    mean = fit.X.mean(axis=0)
    scale = fit.X.std(axis=0)
    scale[scale == 0] = 1.0
    model = linear.LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    model.fit((fit.X - mean) / scale, fit.y)
    w = model.coef_[0] / scale
    b = float(model.intercept_[0] - (model.coef_[0] * mean / scale).sum())
    return DenseNet(
        [(w.reshape(-1, 1).astype(np.float32), np.asarray([b], np.float32), "linear")],
        feature_names=FEATURE_NAMES,
    )


def _scores(model: Any, X: Any) -> np.ndarray:
    import numpy as np

    return np.asarray(model.predict(X), dtype=np.float64).ravel()


def _best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The probability threshold with the best accuracy on the calibration slice."""
    import numpy as np

    best, best_acc = 0.5, -1.0
    for t in np.linspace(0.05, 0.95, 19):
        acc = float(((p >= t) == (y == 1)).mean())
        if acc > best_acc + 1e-12:
            best, best_acc = float(t), acc
    return best


def train_next_download(
    trace: Trace,
    *,
    seed: int = 0,
    horizon_s: float = 7 * DAY,
    train_fraction: float = 0.7,
    name: str = KIND,
    examples: ExampleSet | None = None,
) -> tuple[ModelArtifact, dict[str, Any]]:
    """Train, calibrate and evaluate the next-download predictor; (artifact, report).
    ``examples``: the trace's :func:`make_examples` for this horizon, if already made."""
    import numpy as np

    _need_train_deps()
    data = examples if examples is not None else make_examples(trace, horizon_s=horizon_s)
    if data.horizon_s != horizon_s:
        raise InvalidArgumentError("the examples were made for another horizon")
    fit, cal, test, cut = split_examples(data, trace.start, train_fraction=train_fraction)
    if len(np.unique(fit.y)) < 2 or len(np.unique(cal.y)) < 2:
        raise InvalidArgumentError(
            "the training examples have one label only: the trace has no upgrades to learn from"
        )
    candidates: dict[str, tuple[Any, str]] = {
        "gbdt": (_fit_gbdt(fit, cal, seed), "trees"),
        "logistic": (_fit_logistic(fit, seed), "dense"),
    }
    report: dict[str, Any] = {
        "task": name,
        "trace": trace.source,
        "data_sha256": trace.sha256(),
        "horizon_s": horizon_s,
        "cut": cut,
        "examples": {"fit": len(fit.y), "calibration": len(cal.y), "test": len(test.y)},
        "models": {},
        "baselines": {},
    }
    fitted: dict[str, tuple[Any, str, Calibrator, float]] = {}
    for label, (model, mtype) in candidates.items():
        s_cal = _scores(model, cal.X)
        calib = Calibrator.fit(s_cal, cal.y)
        p_cal, _, _ = calib.transform(s_cal)
        threshold = _best_threshold(p_cal, cal.y)
        p, low, high = calib.transform(_scores(model, test.X))
        q = quality(p, test.y, threshold)
        q["threshold"] = threshold
        q["calibration_log_loss"] = quality(p_cal, cal.y)["log_loss"]
        coverage, width = interval_coverage(low, high, test.y)
        q["interval_coverage"] = coverage
        q["interval_width"] = width
        q["model_bytes"] = float(len(model.to_bytes()))
        report["models"][label] = q
        fitted[label] = (model, mtype, calib, threshold)
    for label, base in (("frequency", FrequencyBaseline(fit)), ("recency", RecencyBaseline(fit))):
        pb = base.predict(cal)
        threshold = _best_threshold(pb, cal.y)
        q = quality(base.predict(test), test.y, threshold)
        q["threshold"] = threshold
        report["baselines"][label] = q
    best = min(fitted, key=lambda k: (report["models"][k]["calibration_log_loss"], k))
    model, mtype, calib, threshold = fitted[best]
    pos = fit.y == 1
    latest_share = float(fit.to_latest[pos].mean()) if pos.any() else 1.0
    report["shipped"] = best
    triggers = np.asarray([e.trigger for e in test.examples])
    s_test = _scores(model, test.X)
    report["by_trigger"] = {}
    for trig in ("release", "request"):
        m = triggers == trig
        if m.any():
            p_t, _, _ = calib.transform(s_test[m])
            report["by_trigger"][trig] = quality(p_t, test.y[m], threshold)
    report["latest_share"] = latest_share
    predictor = Predictor(
        model,
        calib,
        horizon_s=horizon_s,
        latest_share=latest_share,
        threshold=threshold,
        model_type=mtype,
        meta={"model": best, "trace": trace.source},
    )
    metrics = {f"{k}": float(v) for k, v in report["models"][best].items()}
    for label, q in report["baselines"].items():
        metrics.update(
            {
                f"{label}.{k}": float(v)
                for k, v in q.items()
                if k in ("brier", "log_loss", "auc", "accuracy")
            }
        )
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    from ._card import next_download_card

    artifact = ModelArtifact(
        kind=KIND,
        payload=predictor.to_bytes(),
        metrics=metrics,
        data_sha256=report["data_sha256"],
        feature_names=FEATURE_NAMES,
        seed=seed,
        name=name,
        params={"horizon_s": horizon_s, "model": best, "train_fraction": train_fraction},
        card=next_download_card(report, seed=seed),
    )
    return artifact, report


# -- the pipeline --------------------------------------------------------------------------


def _task_trainer(task: str) -> Callable[..., Any] | None:
    module = TASKS.get(task)
    if module is None:
        raise InvalidArgumentError(f"unknown task {task!r}: one of {', '.join(TASKS)}")
    if not module:
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    fn = getattr(mod, "train", None)
    return fn if callable(fn) else None


def train(
    trace: Trace,
    *,
    seed: int = 0,
    tasks: Sequence[str] = DEFAULT_TASKS,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Train ``tasks`` on ``trace``; with ``out`` write ``<task>.rcml``, ``<task>.card.md`` and
    ``report.json`` there (atomically, each). Returns the report (per task: metrics, or
    ``skipped`` with the reason)."""
    report: dict[str, Any] = {
        "trace": trace.source,
        "data_sha256": trace.sha256(),
        "requests": len(trace.requests),
        "seed": seed,
        "tasks": {},
    }
    artifacts: dict[str, ModelArtifact] = {}
    for task in tasks:
        if task in ("next-download", "next-download-24h"):
            horizon = 7 * DAY if task == "next-download" else DAY
            art, rep = train_next_download(trace, seed=seed, horizon_s=horizon, name=task)
            report["tasks"][task] = rep
            artifacts[task] = art
            log(
                f"{task}: shipped {rep['shipped']}, test log loss "
                f"{rep['models'][rep['shipped']]['log_loss']:.4f}"
            )
            continue
        trainer = _task_trainer(task)
        if trainer is None:
            report["tasks"][task] = {"skipped": f"{TASKS[task]}.train is not available"}
            log(f"{task}: skipped ({TASKS[task]}.train is not available)")
            continue
        art = trainer(trace, seed=seed)
        if not isinstance(art, ModelArtifact):
            raise MLError(f"{TASKS[task]}.train returned {type(art).__name__}, not ModelArtifact")
        artifacts[task] = art
        report["tasks"][task] = {"kind": art.kind, "metrics": dict(art.metrics)}
        log(f"{task}: trained ({art.kind})")
    if out is not None:
        from .._util import atomic_write

        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        for task, art in artifacts.items():
            atomic_write(target / f"{task}.rcml", art.to_bytes())
            atomic_write(target / f"{task}.card.md", art.card.encode())
        atomic_write(
            target / "report.json",
            (json.dumps(report, indent=2, sort_keys=True, default=_json_default) + "\n").encode(),
        )
    return report


def _json_default(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def evaluate(artifact: ModelArtifact | bytes, trace: Trace) -> dict[str, Any]:
    """Measure a next-download artifact on the whole of ``trace`` (e.g. a later log): the same
    quality scores as training, against the frequency baseline fitted on the trace's first
    ``70%``, plus the interval coverage."""
    import numpy as np

    art = artifact if isinstance(artifact, ModelArtifact) else ModelArtifact.from_bytes(artifact)
    if art.kind != KIND:
        raise InvalidArgumentError(f"ml evaluate measures {KIND} models, not {art.kind!r}")
    pred = Predictor.from_bytes(art.payload)
    data = make_examples(trace, horizon_s=pred.horizon_s)
    if len(data.y) == 0:
        raise InvalidArgumentError("the trace gives no examples (no client holds an old version)")
    p, low, high = pred.calibrator.transform(pred.scores(data.X))
    q = quality(p, data.y, pred.threshold)
    q["interval_coverage"], q["interval_width"] = interval_coverage(low, high, data.y)
    out: dict[str, Any] = {"trace": trace.source, "model": art.name or art.kind, "quality": q}
    t = data.times
    early = t + data.horizon_s <= trace.start + 0.7 * (trace.end - trace.start)
    if early.any() and (~early).any():
        base = FrequencyBaseline(data.select(early))
        late = data.select(~early)
        out["late_quality"] = quality(p[~early], late.y, pred.threshold)
        out["frequency_late_quality"] = quality(base.predict(late), late.y, pred.threshold)
    out["examples"] = int(len(data.y))
    out["positives"] = int(np.sum(data.y))
    return out
