"""LearnedEviction: an LRB-style learned cache eviction policy (Song et al., "Learning Relaxed
Belady for Content Distribution Network Caching", NSDI'20), with registry features.

Each cached object carries a little history: its size, the last :data:`N_GAPS` gaps between its
requests, request counts decayed at several half-lives, when it was first seen and last
requested, and (given a ``meta(key, now)`` callable) how old its release is and how many newer
releases of its project exist (a file two releases behind is asked for less). A gradient-boosted
tree model (LightGBM at training, :class:`~registry_core.ml._trees.TreeEnsemble` at serving)
predicts ``log1p`` of the time until the object's next request, capped at a "Belady boundary":
objects beyond it are all equally good to evict. To evict, the policy samples ``candidates``
resident objects (seeded) and evicts the one predicted to be asked for last.

Features come from one code path, :meth:`LearnedEviction.features`, both when the policy serves
and when :func:`train` builds its examples (the trainer replays the trace through a policy that
collects them), so training and serving cannot disagree. Without a model the policy evicts the
least recently used of its sample (sampled LRU). ``retrain_every``: with lightgbm installed, the
policy keeps collecting labelled examples online and refits on a sliding window (on a thread of
its own with ``background=True``, as a serving cache wants: the fit takes seconds).

Off by default: behind ``ML_LEARNED_EVICTION`` (resolved at the edge, by the CLI).
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, ModelError
from ._artifact import ModelArtifact

if TYPE_CHECKING:
    from ._trees import TreeEnsemble
    from .traces import Catalogue, Request, Trace

__all__ = [
    "FEATURE_NAMES",
    "KIND",
    "LearnedEviction",
    "catalogue_meta",
    "file_requests",
    "train",
]

KIND = "learned-eviction"
N_GAPS = 4
HALF_LIVES_S = (3600.0, 86400.0, 7 * 86400.0)
FEATURE_NAMES: tuple[str, ...] = (
    "log_size",
    "log_since_last",
    *(f"log_gap{i + 1}" for i in range(N_GAPS)),
    *(f"decayed_count_{int(h)}s" for h in HALF_LIVES_S),
    "log_age",
    "log_release_age",
    "version_distance",
)
_NAN = float("nan")
_LN2 = math.log(2.0)

Meta = Callable[[str, float], "tuple[float, float] | None"]


class _Obj:
    """What the policy remembers of one object (resident or recently evicted)."""

    __slots__ = ("counts", "first", "gaps", "last", "size", "stamp")

    def __init__(self, size: int, now: float) -> None:
        self.size = size
        self.first = now
        self.last = now
        self.stamp = now  # when ``counts`` were last brought up to date
        self.gaps: list[float] = []  # newest first
        self.counts = [1.0] * len(HALF_LIVES_S)

    def request(self, now: float) -> None:
        dt = max(0.0, now - self.stamp)
        self.counts = [
            c * math.exp(-_LN2 * dt / h) + 1.0
            for c, h in zip(self.counts, HALF_LIVES_S, strict=True)
        ]
        self.stamp = now
        self.gaps.insert(0, max(0.0, now - self.last))
        del self.gaps[N_GAPS:]
        self.last = now


class LearnedEviction:
    """Evict, of ``candidates`` sampled resident objects, the one whose next request is
    predicted farthest away. ``model``: a TreeEnsemble over :data:`FEATURE_NAMES` (None:
    sampled LRU until a retrain); ``meta(key, now) -> (release_age_s, version_distance)`` or
    None; ``boundary_s``: the label cap; ``history``: how many evicted objects' histories are
    kept (their gaps and counts count again when they come back)."""

    name = "learned"

    def __init__(
        self,
        model: TreeEnsemble | None = None,
        *,
        meta: Meta | None = None,
        candidates: int = 64,
        seed: int = 0,
        boundary_s: float = 86400.0,
        history: int = 100_000,
        retrain_every: int | None = None,
        window: int = 50_000,
        sample_every: int = 4,
        collect: bool = False,
        background: bool = False,
    ) -> None:
        if candidates < 1 or history < 0 or sample_every < 1 or window < 1:
            raise InvalidArgumentError(
                "candidates, sample_every and window must be >= 1 and history >= 0"
            )
        if not boundary_s > 0:
            raise InvalidArgumentError(f"boundary_s must be > 0, not {boundary_s!r}")
        if model is not None and model.n_features != len(FEATURE_NAMES):
            raise ModelError(
                f"the eviction model expects {model.n_features} features, not "
                f"{len(FEATURE_NAMES)} ({', '.join(FEATURE_NAMES)})"
            )
        if retrain_every is not None and retrain_every < 1:
            raise InvalidArgumentError("retrain_every must be >= 1 (or None)")
        self.model = model
        self.meta = meta
        self.candidates = candidates
        self.boundary_s = float(boundary_s)
        self.retrain_every = retrain_every
        self.seed = seed
        self._rng = random.Random(seed)
        self._objs: dict[str, _Obj] = {}  # resident
        self._keys: list[str] = []  # resident, for O(1) sampling
        self._index: dict[str, int] = {}
        self._history: OrderedDict[str, _Obj] = OrderedDict()  # evicted, oldest first
        self._history_max = history
        # examples being collected: key -> [(row, taken at)], resolved at its next request
        self._collect = collect or retrain_every is not None
        self._sample_every = sample_every
        self._pending: dict[str, list[tuple[list[float], float]]] = {}
        self._pending_n = 0
        self._examples: deque[tuple[list[float], float]] = deque(maxlen=window)
        self._events = 0
        self._background = background
        self._fitting: threading.Thread | None = None
        self.decisions = 0
        self.retrains = 0

    # -- features (the one code path for training and serving) ------------------------------

    def features(self, key: str, obj: _Obj, now: float) -> list[float]:
        """The feature row of ``key`` at ``now`` (order: :data:`FEATURE_NAMES`)."""
        gaps = [math.log1p(g) for g in obj.gaps] + [_NAN] * (N_GAPS - len(obj.gaps))
        dt = max(0.0, now - obj.stamp)
        counts = [
            c * math.exp(-_LN2 * dt / h) for c, h in zip(obj.counts, HALF_LIVES_S, strict=True)
        ]
        release_age, distance = _NAN, _NAN
        if self.meta is not None:
            got = self.meta(key, now)
            if got is not None:
                release_age, distance = math.log1p(max(0.0, got[0])), float(got[1])
        return [
            math.log1p(obj.size),
            math.log1p(max(0.0, now - obj.last)),
            *gaps,
            *counts,
            math.log1p(max(0.0, now - obj.first)),
            release_age,
            distance,
        ]

    # -- the policy protocol ------------------------------------------------------------------

    def record_insert(self, key: str, size: int, now: float) -> None:
        obj = self._objs.get(key)
        if obj is None:
            obj = self._history.pop(key, None)
            if obj is None:
                obj = _Obj(size, now)
            else:
                obj.request(now)
            obj.size = size
            self._objs[key] = obj
            self._index[key] = len(self._keys)
            self._keys.append(key)
        else:
            obj.size = size
            obj.request(now)
        self._event(key, now)

    def record_access(self, key: str, now: float) -> None:
        obj = self._objs.get(key)
        if obj is not None:
            obj.request(now)
            self._event(key, now)

    def record_remove(self, key: str) -> None:
        obj = self._objs.pop(key, None)
        if obj is None:
            return
        i = self._index.pop(key)
        last = self._keys.pop()
        if last != key:
            self._keys[i] = last
            self._index[last] = i
        if self._history_max:
            self._history[key] = obj
            if len(self._history) > self._history_max:
                self._history.popitem(last=False)

    def choose_victims(self, need_bytes: int) -> list[str]:
        victims: list[str] = []
        freed = 0
        while freed < need_bytes and self._keys:
            sample = self._sample(self.candidates)
            scores = self._scores(sample, self._now)
            self.decisions += 1
            order = sorted(range(len(sample)), key=lambda i: -scores[i])
            for i in order[: max(1, len(order) // 8)]:
                key = sample[i]
                victims.append(key)
                freed += self._objs[key].size
                self.record_remove(key)
                if freed >= need_bytes:
                    break
        return victims

    # -- internals ----------------------------------------------------------------------------

    _now = 0.0

    def _sample(self, k: int) -> list[str]:
        keys = self._keys
        if len(keys) <= k:
            return list(keys)
        n = len(keys)
        picked = {int(self._rng.random() * n) for _ in range(k)}
        return [keys[i] for i in picked]

    def _scores(self, sample: Sequence[str], now: float) -> list[float]:
        """Predicted log time to next request (bigger: evict first)."""
        if self.model is None:
            return [now - self._objs[k].last for k in sample]
        rows = [self.features(k, self._objs[k], now) for k in sample]
        import numpy as np

        return [float(v) for v in self.model.predict(np.asarray(rows, dtype=np.float64))]

    def _event(self, key: str, now: float) -> None:
        self._now = max(self._now, now)
        if not self._collect:
            return
        self._resolve(key, now)
        self._events += 1
        if self._events % self._sample_every == 0 and self._keys:
            k = self._keys[int(self._rng.random() * len(self._keys))]
            self._pending.setdefault(k, []).append((self.features(k, self._objs[k], now), now))
            self._pending_n += 1
            if self._pending_n > 4 * (self._examples.maxlen or 1):
                self._expire(now, force=True)
        if self.retrain_every and self._events % self.retrain_every == 0:
            self._expire(now)
            if not self._background:
                self.retrain()
            elif self._fitting is None or not self._fitting.is_alive():
                rows = [r for r, _ in self._examples]
                labels = [y for _, y in self._examples]
                self._fitting = threading.Thread(
                    target=self._fit_into, args=(rows, labels), daemon=True
                )
                self._fitting.start()

    def _resolve(self, key: str, now: float) -> None:
        waiting = self._pending.pop(key, None)
        if waiting:
            self._pending_n -= len(waiting)
            for row, t0 in waiting:
                self._examples.append((row, math.log1p(min(now - t0, self.boundary_s))))

    def _expire(self, now: float, *, force: bool = False) -> None:
        """Examples older than the boundary get the capped label; ``force`` (too many
        pending) drops the rest of the oldest half."""
        cap = math.log1p(self.boundary_s)
        for key in list(self._pending):
            kept = []
            for row, t0 in self._pending[key]:
                if now - t0 >= self.boundary_s:
                    self._examples.append((row, cap))
                else:
                    kept.append((row, t0))
            self._pending_n -= len(self._pending[key]) - len(kept)
            if kept:
                self._pending[key] = kept
            else:
                del self._pending[key]
        if force and self._pending_n > 2 * (self._examples.maxlen or 1):
            for key in list(self._pending)[: len(self._pending) // 2]:
                self._pending_n -= len(self._pending.pop(key))

    def examples(self, now: float) -> tuple[list[list[float]], list[float]]:
        """The labelled examples collected so far (pending ones older than the boundary are
        labelled with the cap; younger ones are left out: their label is not known yet)."""
        self._expire(now)
        return [r for r, _ in self._examples], [y for _, y in self._examples]

    def retrain(self, *, min_examples: int = 1000) -> bool:
        """Refit the model on the sliding window of examples; False when lightgbm is missing
        or there are too few examples (the current model stays)."""
        return self._fit_into(
            [r for r, _ in self._examples], [y for _, y in self._examples], min_examples
        )

    def _fit_into(
        self, rows: list[list[float]], labels: list[float], min_examples: int = 1000
    ) -> bool:
        """Fit and swap the model in (one attribute assignment: a cache thread deciding
        meanwhile uses the old model or the new one, never half of one). ``background=True``
        runs this on its own thread, so a cache's lock is not held for the seconds it takes."""
        if len(rows) < min_examples:
            return False
        try:
            model = _fit(rows, labels, seed=self.seed + self.retrains)
        except ImportError:
            return False
        self.model = model
        self.retrains += 1
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._objs

    def __len__(self) -> int:
        return len(self._objs)

    # -- artifacts ----------------------------------------------------------------------------

    @classmethod
    def from_artifact(
        cls, art: ModelArtifact, *, meta: Meta | None = None, **kw: Any
    ) -> LearnedEviction:
        """The policy of a trained artifact (kind ``learned-eviction``)."""
        if art.kind != KIND:
            raise ModelError(f"expected a {KIND!r} model, got {art.kind!r}")
        if tuple(art.feature_names) != FEATURE_NAMES:
            raise ModelError(
                f"the model's features {art.feature_names!r} are not this version's "
                f"{FEATURE_NAMES!r}: retrain it"
            )
        from ._trees import TreeEnsemble

        model = TreeEnsemble.from_bytes(art.payload)
        params = dict(art.params)
        kw.setdefault("boundary_s", float(params.get("boundary_s", 86400.0)))
        kw.setdefault("candidates", int(params.get("candidates", 64)))
        kw.setdefault("seed", art.seed)
        return cls(model, meta=meta, **kw)


def _fit(rows: list[list[float]], labels: list[float], *, seed: int, rounds: int = 60) -> Any:
    """LightGBM regression on the examples, converted to a TreeEnsemble."""
    try:
        import lightgbm as lgb
        import numpy as np
    except ImportError as exc:
        raise ImportError(
            "training the learned eviction model needs lightgbm: "
            "pip install 'registry-core[ml-train]'"
        ) from exc
    from ._trees import TreeEnsemble

    params = {
        "objective": "regression",
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbose": -1,
    }
    data = lgb.Dataset(
        np.asarray(rows, dtype=np.float64),
        np.asarray(labels, dtype=np.float64),
        feature_name=list(FEATURE_NAMES),
        free_raw_data=True,
    )
    booster = lgb.train(params, data, num_boost_round=rounds)
    return TreeEnsemble.from_lightgbm(booster)


# -- data ---------------------------------------------------------------------------------------


def file_requests(requests: Iterable[Request]) -> list[tuple[str, int, float]]:
    """``(key, size, time)`` of the successful file downloads: what a file cache sees."""
    return [
        (r.key, r.size, r.time)
        for r in requests
        if r.kind == "file" and 200 <= r.status < 300 and r.size > 0
    ]


def catalogue_meta(catalogue: Catalogue) -> Meta:
    """``meta(key, now)`` from a trace's catalogue: the age of the release a file belongs to and
    how many releases of its project came out after it (by ``now``); None for unknown keys."""
    where: dict[str, tuple[str, int, float]] = {}
    times: dict[str, list[float]] = {}
    for project, releases in catalogue.projects.items():
        times[project] = [r.time for r in releases]
        for i, rel in enumerate(releases):
            for filename, _size in rel.files:
                where[f"{project}/{filename}"] = (project, i, rel.time)

    def meta(key: str, now: float) -> tuple[float, float] | None:
        got = where.get(key)
        if got is None:
            return None
        project, i, released = got
        out_by_now = bisect.bisect_right(times[project], now)
        return now - released, float(max(0, out_by_now - i - 1))

    return meta


def _lru_eviction_age(requests: Sequence[tuple[str, int, float]], capacity: int) -> float:
    """Mean time since last request of the objects LRU evicts at ``capacity`` (the
    characteristic time of the cache), or the trace's span when nothing is evicted."""
    order: OrderedDict[str, tuple[int, float]] = OrderedDict()
    total = 0
    ages: list[float] = []
    for key, size, now in requests:
        if key in order:
            order[key] = (size, now)
            order.move_to_end(key)
            continue
        if size > capacity:
            continue
        while total + size > capacity and order:
            _, (s, t) = order.popitem(last=False)
            total -= s
            ages.append(now - t)
        order[key] = (size, now)
        total += size
    if not ages:
        return max(1.0, requests[-1][2] - requests[0][2]) if requests else 1.0
    return max(1.0, sum(ages) / len(ages))


def train(
    trace: Trace | Sequence[Request],
    *,
    capacity_bytes: int | None = None,
    capacity_fraction: float = 0.05,
    seed: int = 0,
    meta: Meta | None = None,
    use_catalogue: bool = True,
    candidates: int = 64,
    sample_every: int = 2,
    window: int = 200_000,
    rounds: int = 60,
    source: str = "",
) -> ModelArtifact:
    """Train the eviction model on ``trace`` (its successful file downloads) for a cache of
    ``capacity_bytes`` (default: ``capacity_fraction`` of the unique bytes requested).

    The boundary (label cap) is twice LRU's mean eviction age at that size. Examples come from
    replaying the trace through a collecting :class:`LearnedEviction` (sampled LRU), so they
    are the same features the policy computes when serving. Deterministic for a seed."""
    from ..eviction import replay
    from .traces import Trace as _Trace

    reqs_all = trace.requests if isinstance(trace, _Trace) else list(trace)
    reqs = file_requests(reqs_all)
    if len(reqs) < 100:
        raise InvalidArgumentError(
            f"the trace has {len(reqs)} successful file downloads; at least 100 are needed"
        )
    if meta is None and use_catalogue and isinstance(trace, _Trace):
        meta = catalogue_meta(trace.catalogue)
    unique: dict[str, int] = {}
    for key, size, _ in reqs:
        unique[key] = size
    if capacity_bytes is None:
        capacity_bytes = max(1, int(sum(unique.values()) * capacity_fraction))
    boundary = 2.0 * _lru_eviction_age(reqs, capacity_bytes)
    collector = LearnedEviction(
        None,
        meta=meta,
        candidates=candidates,
        seed=seed,
        boundary_s=boundary,
        window=window,
        sample_every=sample_every,
        collect=True,
    )
    replay(collector, reqs, capacity_bytes)
    rows, labels = collector.examples(reqs[-1][2])
    if len(rows) < 100:
        raise InvalidArgumentError(f"only {len(rows)} training examples: give a longer trace")
    cut = int(len(rows) * 0.8)  # time order: the last fifth is held out for the metrics
    model = _fit(rows[:cut], labels[:cut], seed=seed, rounds=rounds)
    import numpy as np

    pred = model.predict(np.asarray(rows[cut:], dtype=np.float64))
    held = np.asarray(labels[cut:])
    mean = float(np.mean(labels[:cut]))
    rmse = float(np.sqrt(np.mean((pred - held) ** 2)))
    rmse_base = float(np.sqrt(np.mean((mean - held) ** 2)))
    final = _fit(rows, labels, seed=seed, rounds=rounds)
    payload = final.to_bytes()
    data_sha = trace.sha256() if isinstance(trace, _Trace) else ""
    src = source or (trace.source if isinstance(trace, _Trace) else "")
    metrics = {
        "examples": float(len(rows)),
        "rmse_log_next_request_holdout": rmse,
        "rmse_mean_baseline_holdout": rmse_base,
        "boundary_s": boundary,
        "capacity_bytes": float(capacity_bytes),
        "model_bytes": float(len(payload)),
    }
    card = (
        f"# learned-eviction\n\nLRB-style eviction model: LightGBM regression of log1p(time to "
        f"next request), capped at {boundary:.0f} s, over {', '.join(FEATURE_NAMES)}.\n\n"
        f"Trained on {len(reqs)} file downloads of {src or 'a trace'} for a "
        f"{capacity_bytes}-byte cache, seed {seed}, {rounds} rounds, {len(rows)} examples.\n\n"
        f"Held-out RMSE {rmse:.3f} against {rmse_base:.3f} for the mean (last 20% of the "
        f"examples in time order). Model {len(payload)} bytes.\n"
    )
    return ModelArtifact(
        kind=KIND,
        payload=payload,
        metrics=metrics,
        data_sha256=data_sha,
        feature_names=FEATURE_NAMES,
        seed=seed,
        card=card,
        name="learned-eviction",
        params={"boundary_s": boundary, "candidates": candidates, "capacity_bytes": capacity_bytes},
    )
