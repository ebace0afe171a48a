"""Real-time anomaly scoring on the request stream: scraping, credential stuffing,
dependency-confusion probes and download spikes.

:class:`StreamFeatures` keeps, per client, exponentially decayed counters (half-life
``window_s``, 5 minutes by default): request rate, new distinct projects, the page / file /
metadata / upload shares, 404 and 401/403 shares and counts, and the client's age; per project,
its short-term rate against its long-term rate and the share of its requests coming from new
clients (a download spike is many new clients on one file); per tenant, the decayed 404 and
auth-failure rates (credential stuffing spreads over many clients, each with few attempts).
Two features are there for benign noise (``TrafficModel.noisy()``): ``s404_x_share``, the 404
count times the 404 share (a client probing names, not pip asking a private index for a public
dependency among its installs), and ``project_fresh_unreleased``, the new clients arriving on a
project discounted (quadratically) within 6 hours of an upload of it seen on the stream (a
release being pulled by many fresh CI runners is not a spike). State is bounded: at most
``max_clients`` clients and ``max_projects`` projects, least recently seen dropped
first, and anything idle for ``ttl_s`` forgotten.

Three detectors score the same feature row (one code path for training and serving):

- ``rules``: the honest baseline, fixed thresholds on rate, 404s and auth failures, and the
  project's new-client arrivals; each rule names the kind it targets. ``train(...,
  tune_rules=True)`` scales every threshold by one factor chosen on the training part.
- ``iforest``: an isolation forest (Liu et al. 2008) fitted on training rows with numpy,
  scored in pure Python per request (the trees are small arrays in the artifact).
- ``hst``: river's HalfSpaceTrees (Tan et al. 2011), online: it learns as it scores; the
  artifact holds its parameters, the features' training range and the threshold, the trees start
  empty and warm up on the stream. Its window must be long against an attack burst (5,000
  requests here: with river's default of 250, a scraper's burst fills the reference window and
  becomes "normal", and the score inverts; ``bench_ml_ops`` measures both).

:class:`AnomalyScorer` turns scores into alerts: ``AuditEvent(kind="ml.anomaly")`` to an
``AuditSink`` passed in (at most one per client per ``alert_interval_s``) and Prometheus
counters on a registry passed in. :func:`train` fits the forest and picks each detector's
threshold on labelled training time; :func:`evaluate` measures precision and recall per request,
per attacking client and per episode on held-out time.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..audit import AuditEvent, AuditSink
from ..errors import InvalidArgumentError, ModelError
from ._artifact import ModelArtifact

if TYPE_CHECKING:
    import numpy as np

    from .traces import Request, Trace

__all__ = [
    "DETECTORS",
    "FEATURE_NAMES",
    "AnomalyScorer",
    "IsolationForest",
    "StreamFeatures",
    "evaluate",
    "train",
]

DETECTORS = ("rules", "iforest", "hst")
FEATURE_NAMES = (
    "rate",
    "new_projects",
    "page_share",
    "file_share",
    "meta_share",
    "upload_share",
    "s404",
    "s404_share",
    "auth_fail",
    "auth_fail_share",
    "age",
    "project_fresh",
    "project_new_share",
    "tenant_auth_fail",
    "tenant_404",
    "s404_x_share",
    "project_fresh_unreleased",
)
_IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}
_FORMAT = 1
_NEW_CLIENT_S = 120.0
# a burst of new clients within this long after a project's upload is a release being pulled
_RELEASE_GRACE_S = 6 * 3600.0


class _Decay:
    """An exponentially decayed count (half-life ``half_s``)."""

    __slots__ = ("t", "v")

    def __init__(self) -> None:
        self.v = 0.0
        self.t = -math.inf

    def add(self, now: float, lam: float, amount: float = 1.0) -> float:
        self.v = (
            self.v * math.exp(-lam * max(0.0, now - self.t)) + amount
            if self.t > -math.inf
            else amount
        )
        self.t = now
        return self.v

    def at(self, now: float, lam: float) -> float:
        return 0.0 if self.t == -math.inf else self.v * math.exp(-lam * max(0.0, now - self.t))


class _Client:
    __slots__ = (
        "auth",
        "file",
        "first",
        "last",
        "meta",
        "new",
        "nf",
        "page",
        "projects",
        "total",
        "upload",
    )

    def __init__(self, now: float) -> None:
        self.first = now
        self.last = now
        self.total = _Decay()
        self.new = _Decay()
        self.page = _Decay()
        self.file = _Decay()
        self.meta = _Decay()
        self.upload = _Decay()
        self.nf = _Decay()
        self.auth = _Decay()
        self.projects: OrderedDict[str, None] = OrderedDict()


class _Project:
    __slots__ = ("fresh", "last", "short")

    def __init__(self) -> None:
        self.short = _Decay()
        self.fresh = _Decay()
        self.last = 0.0


class StreamFeatures:
    """Per-client, per-project and per-tenant decayed counters; :meth:`update` adds one request
    and returns its feature row (floats, in :data:`FEATURE_NAMES` order)."""

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        max_clients: int = 100_000,
        max_projects: int = 50_000,
        ttl_s: float = 3600.0,
        projects_per_client: int = 256,
        max_known: int = 200_000,
    ) -> None:
        if not window_s > 0 or not ttl_s > 0 or max_clients < 1 or max_projects < 1:
            raise InvalidArgumentError("window_s, ttl_s, max_clients and max_projects must be > 0")
        self.window_s = float(window_s)
        self.ttl_s = float(ttl_s)
        self.max_clients = max_clients
        self.max_projects = max_projects
        self.projects_per_client = projects_per_client
        self._lam = math.log(2) / window_s
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._projects: OrderedDict[str, _Project] = OrderedDict()
        self._tenants: dict[str, tuple[_Decay, _Decay]] = {}
        # first-seen time of clients, kept longer than their counters (ids only, LRU-capped):
        # a developer back after a day is not a new client
        self._known: OrderedDict[str, float] = OrderedDict()
        self.max_known = max_known
        # last upload seen per project (LRU-capped like the ids): a release explains a burst
        self._uploaded: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def _expire(self, now: float) -> None:
        """Drop what has been idle for ``ttl_s`` (the tables are in last-seen order)."""
        clients, projects = self._clients, self._projects
        while clients and now - next(iter(clients.values())).last > self.ttl_s:
            clients.popitem(last=False)
        while projects and now - next(iter(projects.values())).last > self.ttl_s:
            projects.popitem(last=False)

    def update(self, r: Request) -> list[float]:
        now, lam = r.time, self._lam
        self._expire(now)
        c = self._clients.get(r.client)
        if c is None:
            c = _Client(now)
            self._clients[r.client] = c
            if len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(r.client)
        c.last = now
        first = self._known.get(r.client)
        if first is None:
            first = self._known[r.client] = now
            if len(self._known) > self.max_known:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(r.client)
        total = c.total.add(now, lam)
        new = 0.0
        if r.project:
            if r.project in c.projects:
                c.projects.move_to_end(r.project)
            else:
                new = 1.0
                c.projects[r.project] = None
                if len(c.projects) > self.projects_per_client:
                    c.projects.popitem(last=False)
        news = c.new.add(now, lam, new)
        page = c.page.add(now, lam, float(r.kind == "page"))
        file = c.file.add(now, lam, float(r.kind == "file"))
        meta = c.meta.add(now, lam, float(r.kind == "metadata"))
        upload = c.upload.add(now, lam, float(r.kind == "upload"))
        nf = c.nf.add(now, lam, float(r.status == 404))
        failed = r.status in (401, 403) or (r.kind == "login" and r.status >= 400)
        auth = c.auth.add(now, lam, float(failed))
        age = now - first
        fresh = age < _NEW_CLIENT_S
        pfresh = pnew = unreleased = 0.0
        if r.project and r.kind == "upload" and r.status < 400:
            self._uploaded[r.project] = now
            self._uploaded.move_to_end(r.project)
            if len(self._uploaded) > self.max_known:
                self._uploaded.popitem(last=False)
        if r.project:
            p = self._projects.get(r.project)
            if p is None:
                p = self._projects[r.project] = _Project()
                if len(self._projects) > self.max_projects:
                    self._projects.popitem(last=False)
            else:
                self._projects.move_to_end(r.project)
            p.last = now
            short = p.short.add(now, lam)
            # new clients arriving on this project (first request of a new client to it)
            pfresh = p.fresh.add(now, lam, float(fresh and new > 0))
            pnew = pfresh / short
            up = self._uploaded.get(r.project)
            since = _RELEASE_GRACE_S if up is None else now - up
            unreleased = pfresh * min(1.0, max(0.0, since) / _RELEASE_GRACE_S) ** 2
        t = self._tenants.get(r.tenant)
        if t is None:
            if len(self._tenants) < 10_000:
                t = self._tenants[r.tenant] = (_Decay(), _Decay())
            else:
                t = (_Decay(), _Decay())
        # the tenant's wave of failures, on the failing requests only (the others are not part
        # of it)
        t_auth = t[0].add(now, lam, float(failed)) if failed else 0.0
        nf404 = r.status == 404
        t_nf = t[1].add(now, lam, 1.0) if nf404 else 0.0
        return [
            total * lam,  # decayed count * lambda ~ requests per second
            news,
            page / total,
            file / total,
            meta / total,
            upload / total,
            nf,
            nf / total,
            auth,
            auth / total,
            math.log1p(age),
            pfresh,
            pnew,
            t_auth,
            t_nf,
            nf * nf / total,  # 404s weighted by their share: probing, not a 404 among installs
            unreleased,  # new clients on a project, discounted within hours of its upload
        ]


# -- the rules baseline -----------------------------------------------------------------------

#: rule -> (feature, threshold, kind it targets)
DEFAULT_RULES: dict[str, tuple[str, float, str]] = {
    "high-rate": ("rate", 2.0, "scraper"),
    "many-new-projects": ("new_projects", 100.0, "scraper"),
    "auth-failures": ("auth_fail", 3.0, "credential_stuffing"),
    "tenant-auth-failures": ("tenant_auth_fail", 10.0, "credential_stuffing"),
    "not-found-probing": ("s404_x_share", 5.0, "dependency_confusion"),
    "new-client-burst": ("project_fresh_unreleased", 20.0, "download_spike"),
}


def rules_score(
    row: Sequence[float], rules: Mapping[str, tuple[str, float, str]]
) -> tuple[float, str]:
    """The largest ratio of a feature to its rule's threshold (>= 1: the rule fires), and
    which rule."""
    best, which = 0.0, ""
    for name, (feature, threshold, _) in rules.items():
        ratio = row[_IDX[feature]] / threshold
        if ratio > best:
            best, which = ratio, name
    return best, which


# -- isolation forest -----------------------------------------------------------------------


def _c(n: float) -> float:
    """Average path length of an unsuccessful BST search over n points (Liu et al.)."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1) + 0.5772156649) - 2.0 * (n - 1) / n


def _grow(
    nodes: list[tuple[int, float, int, int]], rows: Any, depth: int, limit: int, rng: Any
) -> int:
    """Grow one isolation tree over ``rows`` into ``nodes``; returns the node's index."""
    import numpy as np

    idx = len(nodes)
    nodes.append((-1, 0.0, -1, -1))
    if depth >= limit or len(rows) <= 1:
        nodes[idx] = (-1, depth + _c(len(rows)), -1, -1)
        return idx
    lo, hi = rows.min(axis=0), rows.max(axis=0)
    usable = np.flatnonzero(hi > lo)
    if len(usable) == 0:
        nodes[idx] = (-1, depth + _c(len(rows)), -1, -1)
        return idx
    f = int(rng.choice(usable))
    thr = float(rng.uniform(lo[f], hi[f]))
    left = _grow(nodes, rows[rows[:, f] < thr], depth + 1, limit, rng)
    right = _grow(nodes, rows[rows[:, f] >= thr], depth + 1, limit, rng)
    nodes[idx] = (f, thr, left, right)
    return idx


class IsolationForest:
    """Isolation forest: ``n_trees`` random trees on ``max_samples`` rows each; score in (0, 1),
    higher is more anomalous. Nodes: ``(feature, threshold, left, right)`` with feature -1 for a
    leaf whose ``threshold`` holds the path-length adjustment."""

    def __init__(self, trees: list[list[tuple[int, float, int, int]]], max_samples: int) -> None:
        self.trees = trees
        self.max_samples = max_samples
        self._cn = _c(max_samples)

    @classmethod
    def fit(
        cls, X: np.ndarray, *, n_trees: int = 100, max_samples: int = 256, seed: int = 0
    ) -> IsolationForest:
        import numpy as np

        rng = np.random.default_rng(seed)
        n = len(X)
        if n < 2:
            raise InvalidArgumentError("an isolation forest needs at least 2 rows")
        psi = min(max_samples, n)
        limit = math.ceil(math.log2(psi))
        trees = []
        for _ in range(n_trees):
            sample = X[rng.choice(n, size=psi, replace=False)]
            nodes: list[tuple[int, float, int, int]] = []
            _grow(nodes, sample, 0, limit, rng)
            trees.append(nodes)
        return cls(trees, psi)

    def score_one(self, row: Sequence[float]) -> float:
        total = 0.0
        for nodes in self.trees:
            i = 0
            while True:
                f, thr, left, right = nodes[i]
                if f < 0:
                    total += thr
                    break
                i = left if row[f] < thr else right
        return 2.0 ** (-(total / len(self.trees)) / self._cn) if self._cn else 0.5

    def score_batch(self, X: Any) -> np.ndarray:
        """:meth:`score_one` of every row of ``X`` (numpy, one tree level per step)."""
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        total = np.zeros(n)
        rows = np.arange(n)
        for nodes in self.trees:
            arr = np.asarray(nodes, dtype=np.float64)
            feat = arr[:, 0].astype(np.int64)
            thr, left, right = arr[:, 1], arr[:, 2].astype(np.int64), arr[:, 3].astype(np.int64)
            idx = np.zeros(n, dtype=np.int64)
            while True:
                f = feat[idx]
                inner = f >= 0
                if not inner.any():
                    break
                x = X[rows, np.where(inner, f, 0)]
                step = np.where(x < thr[idx], left[idx], right[idx])
                idx = np.where(inner, step, idx)
            total += thr[idx]
        if not self._cn:
            return np.full(n, 0.5)
        return np.power(2.0, -(total / len(self.trees)) / self._cn)

    def to_json(self) -> dict[str, Any]:
        return {
            "max_samples": self.max_samples,
            "trees": [[list(n) for n in t] for t in self.trees],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], n_features: int) -> IsolationForest:
        trees = []
        for t in doc["trees"]:
            nodes = [(int(f), float(thr), int(left), int(right)) for f, thr, left, right in t]
            for i, (f, _, left, right) in enumerate(nodes):
                if f >= n_features or (
                    f >= 0 and not (i < left < len(nodes) and i < right < len(nodes))
                ):
                    raise ModelError("isolation forest: a node points outside its tree")
            trees.append(nodes)
        if not trees:
            raise ModelError("isolation forest without trees")
        return cls(trees, int(doc["max_samples"]))


# -- half-space trees (river) ---------------------------------------------------------------


def _spread(name: str, v: float) -> float:
    """Shares as they are, everything else on a log scale (counts and rates are heavy-tailed)."""
    return v if name.endswith("_share") or name == "age" else math.log1p(max(0.0, v))


def _squash(row: Sequence[float], scale: Sequence[Sequence[float]] | None) -> dict[str, float]:
    """Features into [0, 1] for half-space trees (they assume that box): min-max on the
    training range (``scale``: per feature ``(lo, hi)``), clipped."""
    out = {}
    for i, (name, v) in enumerate(zip(FEATURE_NAMES, row, strict=True)):
        x = _spread(name, v)
        if scale is not None and i < len(scale):  # older models scaled fewer features
            lo, hi = scale[i]
            x = (x - lo) / (hi - lo) if hi > lo else 0.0
        else:
            x = x / (1.0 + x)
        out[name] = min(1.0, max(0.0, x))
    return out


def fit_scale(rows: Sequence[Sequence[float]]) -> list[list[float]]:
    """Per feature ``(lo, hi)`` of the spread values: the minimum and the 99.9th percentile."""
    import numpy as np

    X = np.asarray(
        [[_spread(n, v) for n, v in zip(FEATURE_NAMES, row, strict=True)] for row in rows]
    )
    lo = X.min(axis=0)
    hi = np.percentile(X, 99.9, axis=0)
    return [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]


def _hst(params: Mapping[str, Any]) -> Any:
    try:
        from river.anomaly import HalfSpaceTrees
    except ImportError as exc:  # pragma: no cover - river is in the ml extra
        raise ImportError(
            "the hst anomaly detector needs river: pip install 'registry-core[ml]'"
        ) from exc
    return HalfSpaceTrees(
        n_trees=int(params.get("n_trees", 10)),
        height=int(params.get("height", 8)),
        window_size=int(params.get("window_size", 5000)),
        seed=int(params.get("seed", 0)),
    )


# -- the scorer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One request's score; ``alert``: at or above the threshold; ``reason``: the rule or the
    feature furthest from normal."""

    value: float
    alert: bool
    reason: str


class AnomalyScorer:
    """Scores each request with one detector, alerts through ``audit`` and ``registry``."""

    kind = "anomaly"

    def __init__(
        self,
        detector: str = "rules",
        *,
        threshold: float = 1.0,
        forest: IsolationForest | None = None,
        hst_params: Mapping[str, Any] | None = None,
        rules: Mapping[str, tuple[str, float, str]] | None = None,
        features: StreamFeatures | None = None,
        audit: AuditSink | None = None,
        registry: Any = None,
        alert_interval_s: float = 300.0,
        max_alerted: int = 10_000,
    ) -> None:
        if detector not in DETECTORS:
            raise InvalidArgumentError(f"detector must be one of {DETECTORS}, not {detector!r}")
        if detector == "iforest" and forest is None:
            raise InvalidArgumentError("the iforest detector needs a fitted forest (train())")
        self.detector = detector
        self.threshold = float(threshold)
        self.forest = forest
        self.hst_params = dict(hst_params or {})
        self.rules = dict(rules or DEFAULT_RULES)
        self.features = features or StreamFeatures()
        self.audit = audit
        self.alert_interval_s = alert_interval_s
        self._hst = _hst(self.hst_params) if detector == "hst" else None
        self._alerted: OrderedDict[str, float] = OrderedDict()
        self._max_alerted = max_alerted
        self._counters: dict[str, Any] = {}
        if registry is not None:
            from prometheus_client import Counter

            self._counters["scored"] = Counter(
                "registry_anomaly_scored", "Requests scored", ["detector"], registry=registry
            )
            self._counters["alerts"] = Counter(
                "registry_anomaly_alerts", "Anomaly alerts raised", ["detector"], registry=registry
            )
            self._counters["flagged"] = Counter(
                "registry_anomaly_flagged",
                "Requests over the threshold",
                ["detector"],
                registry=registry,
            )

    def score_row(self, row: Sequence[float]) -> tuple[float, str]:
        """The detector's score of one feature row (``hst`` also learns it)."""
        if self.detector == "rules":
            return rules_score(row, self.rules)
        if self.detector == "iforest":
            assert self.forest is not None
            return self.forest.score_one(row), ""
        x = _squash(row, self.hst_params.get("scale"))
        hst = self._hst
        assert hst is not None
        s = float(hst.score_one(x))
        hst.learn_one(x)
        return s, ""

    def observe(self, r: Request) -> Score:
        """Add ``r`` to the features, score it, alert if over the threshold."""
        row = self.features.update(r)
        value, why = self.score_row(row)
        alert = value >= self.threshold
        if not why:
            why = _top_feature(row)
        if self._counters:
            self._counters["scored"].labels(self.detector).inc()
            if alert:
                self._counters["flagged"].labels(self.detector).inc()
        if alert:
            self._alert(r, value, why)
        return Score(value, alert, why)

    def predict(
        self,
        time: float,
        client: str,
        kind: str,
        project: str = "",
        status: int = 200,
        tenant: str = "default",
        route: str = "",
    ) -> Score:
        """Score one request given as plain fields (the prediction gateway's convention: kind
        ``anomaly``, loader :meth:`from_bytes`); state accumulates across calls."""
        from .traces import Request

        return self.observe(
            Request(float(time), str(client), str(kind), str(project), "", "", 0,
                    status=int(status), tenant=str(tenant), route=str(route))
        )  # fmt: skip

    def _alert(self, r: Request, value: float, why: str) -> None:
        last = self._alerted.get(r.client)
        if last is not None and r.time - last < self.alert_interval_s:
            return
        self._alerted[r.client] = r.time
        self._alerted.move_to_end(r.client)
        if len(self._alerted) > self._max_alerted:
            self._alerted.popitem(last=False)
        if self._counters:
            self._counters["alerts"].labels(self.detector).inc()
        if self.audit is not None:
            self.audit.emit(
                AuditEvent(
                    kind="ml.anomaly",
                    tenant=r.tenant,
                    subject=r.client,
                    outcome="ok",
                    action="detect",
                    resource=f"{r.tenant}/{r.project}" if r.project else r.tenant,
                    detail={
                        "detector": self.detector,
                        "score": f"{value:.4f}",
                        "threshold": f"{self.threshold:.4f}",
                        "reason": why,
                        "route": r.route or r.kind,
                        "status": str(r.status),
                    },
                    time_ns=int(r.time * 1e9) if r.time > 0 else 0,
                )
            )

    # -- bytes -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "detector": self.detector,
            "threshold": self.threshold,
            "rules": {k: list(v) for k, v in self.rules.items()},
            "hst": self.hst_params,
            "window_s": self.features.window_s,
            "ttl_s": self.features.ttl_s,
        }
        if self.forest is not None:
            doc["forest"] = self.forest.to_json()
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, **kwargs: Any) -> AnomalyScorer:
        if len(data) > 32 << 20:
            raise ModelError(f"anomaly model is {len(data)} bytes (at most 32 MiB)")
        try:
            doc = json.loads(bytes(data))
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                raise ModelError("not an anomaly model payload of format 1")
            rules = {
                str(k): (str(f), float(t), str(kind)) for k, (f, t, kind) in doc["rules"].items()
            }
            for feature, _, _ in rules.values():
                if feature not in _IDX:
                    raise ModelError(f"anomaly rule on an unknown feature {feature!r}")
            forest = (
                IsolationForest.from_json(doc["forest"], len(FEATURE_NAMES))
                if "forest" in doc
                else None
            )
            features = kwargs.pop("features", None) or StreamFeatures(
                window_s=float(doc["window_s"]), ttl_s=float(doc["ttl_s"])
            )
            return cls(
                str(doc["detector"]),
                threshold=float(doc["threshold"]),
                forest=forest,
                hst_params=doc["hst"],
                rules=rules,
                features=features,
                **kwargs,
            )
        except ModelError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"anomaly model payload is malformed: {exc!r}") from None

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact, **kwargs: Any) -> AnomalyScorer:
        """The scorer in an ``anomaly`` artifact; ``kwargs`` (audit, registry...) as for the
        constructor."""
        if artifact.kind != "anomaly":
            raise ModelError(f"a {artifact.kind!r} artifact is not an anomaly scorer")
        return cls.from_bytes(artifact.payload, **kwargs)


def _top_feature(row: Sequence[float]) -> str:
    squashed = _squash(row, None)
    return max(squashed, key=lambda k: (squashed[k], k))


# -- training and evaluation ------------------------------------------------------------------


def replay_features(
    requests: Iterable[Request], features: StreamFeatures | None = None
) -> list[list[float]]:
    """The feature row of every request, in order (the serving code, replayed)."""
    f = features or StreamFeatures()
    return [f.update(r) for r in requests]


def _best_threshold(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The threshold with the highest F1 on (scores, labels); ties: the higher threshold."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    positives = sum(labels)
    if positives == 0:
        return max(scores) + 1e-9 if scores else 1.0
    tp = fp = 0
    best_f1, best_t = -1.0, math.inf
    i = 0
    while i < len(order):
        s = scores[order[i]]
        while i < len(order) and scores[order[i]] == s:
            if labels[order[i]]:
                tp += 1
            else:
                fp += 1
            i += 1
        f1 = 2 * tp / (2 * tp + fp + (positives - tp))
        if f1 > best_f1:
            best_f1, best_t = f1, s
    return best_t


def _scores(scorer: AnomalyScorer, rows: Sequence[Sequence[float]]) -> list[float]:
    """Every row's score, as serving would give them in order (the forest in one numpy batch:
    the same arithmetic as score_one, tested)."""
    if scorer.detector == "iforest" and scorer.forest is not None and rows:
        return [float(v) for v in scorer.forest.score_batch(rows)]
    return [scorer.score_row(row)[0] for row in rows]


def train(
    trace: Trace,
    *,
    seed: int = 0,
    detector: str = "iforest",
    train_fraction: float = 0.7,
    n_trees: int = 25,
    max_samples: int = 256,
    fit_rows: int = 50_000,
    hst_params: Mapping[str, Any] | None = None,
    rows: Sequence[Sequence[float]] | None = None,
    tune_rules: bool = False,
) -> ModelArtifact:
    """Fit ``detector`` on the first ``train_fraction`` of ``trace`` and choose its threshold
    (highest per-request F1 against the trace's labels there); metrics on the held-out rest.
    ``rows``: the trace's feature rows if already replayed (:func:`replay_features`).
    ``tune_rules``: the rules' threshold too is chosen on the training part (one factor on
    every rule's threshold) instead of the fixed 1 (a rule fires)."""
    if detector not in DETECTORS:
        raise InvalidArgumentError(f"detector must be one of {DETECTORS}, not {detector!r}")
    reqs = trace.requests
    if len(reqs) < 100:
        raise InvalidArgumentError(f"the trace has {len(reqs)} requests: at least 100 are needed")
    rows = rows if rows is not None else replay_features(reqs)
    cut = _cut(trace, train_fraction)
    labels = [bool(r.label) for r in reqs]
    forest = None
    hp = {"n_trees": 10, "height": 8, "window_size": 5000, "seed": seed, **(hst_params or {})}
    if detector == "iforest":
        import numpy as np

        rng = random.Random(seed)
        pick = sorted(rng.sample(range(cut), min(fit_rows, cut)))
        forest = IsolationForest.fit(
            np.asarray([rows[i] for i in pick]), n_trees=n_trees, max_samples=max_samples, seed=seed
        )
    if detector == "hst" and "scale" not in hp:
        step = max(1, cut // 50_000)
        hp["scale"] = fit_scale(rows[:cut:step])
    scorer = AnomalyScorer(detector, forest=forest, hst_params=hp)
    scores = _scores(scorer, rows)  # hst learns as it goes, as in serving
    scorer.threshold = (
        1.0
        if detector == "rules" and not tune_rules
        else _best_threshold(scores[:cut], labels[:cut])
    )
    held = _metrics(reqs[cut:], [s >= scorer.threshold for s in scores[cut:]], trace)
    digest = hashlib.sha256()
    for r in reqs:
        digest.update(f"{r.time:.3f}|{r.client}|{r.kind}|{r.status}|{r.label}\n".encode())
    flat = {k: v for k, v in held.items() if isinstance(v, float) and math.isfinite(v)}
    card = (
        f"# Anomaly scorer ({detector})\n\nThreshold {scorer.threshold:.4f} chosen for the best "
        f"per-request F1 on the first {train_fraction:.0%} of `{trace.source}` (seed {seed}); "
        f"on the held-out rest: precision {held['precision']:.3f}, recall {held['recall']:.3f} "
        f"per request, {held['episodes_found']:.0f}/{held['episodes']:.0f} episodes found.\n"
    )
    return ModelArtifact(
        kind="anomaly",
        payload=scorer.to_bytes(),
        metrics=flat,
        data_sha256=digest.hexdigest(),
        feature_names=FEATURE_NAMES,
        seed=seed,
        card=card,
        name=f"anomaly-{detector}",
        params={"detector": detector, "threshold": scorer.threshold, "tune_rules": tune_rules},
    )


def _cut(trace: Trace, train_fraction: float) -> int:
    if not 0.05 <= train_fraction <= 0.95:
        raise InvalidArgumentError(f"train_fraction must be in [0.05, 0.95], not {train_fraction}")
    reqs = trace.requests
    t0, t1 = reqs[0].time, reqs[-1].time
    split = t0 + (t1 - t0) * train_fraction
    lo, hi = 0, len(reqs)
    while lo < hi:
        mid = (lo + hi) // 2
        if reqs[mid].time < split:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _metrics(reqs: Sequence[Request], flags: Sequence[bool], trace: Trace) -> dict[str, float]:
    """Per-request precision/recall (overall and recall per kind), per-client precision/recall
    (an attacking client: one of an episode's), per-episode recall (an episode is found when a
    request of it is flagged between its start and its end)."""
    out: dict[str, float] = {}
    tp = sum(1 for r, f in zip(reqs, flags, strict=True) if f and r.label)
    flagged = sum(flags)
    positives = sum(1 for r in reqs if r.label)
    out["precision"] = tp / flagged if flagged else math.nan
    out["recall"] = tp / positives if positives else math.nan
    out["flagged_share"] = flagged / len(reqs) if reqs else math.nan
    kinds = sorted({r.label for r in reqs if r.label} | {e.label for e in trace.episodes})
    for kind in kinds:
        n = sum(1 for r in reqs if r.label == kind)
        hit = sum(1 for r, f in zip(reqs, flags, strict=True) if f and r.label == kind)
        out[f"recall.{kind}"] = hit / n if n else math.nan
    if not reqs:
        return out
    t0, t1 = reqs[0].time, reqs[-1].time
    episodes = [e for e in trace.episodes if e.start >= t0 and e.start <= t1]
    attackers = set().union(*(e.clients for e in episodes)) if episodes else set()
    flagged_clients = {r.client for r, f in zip(reqs, flags, strict=True) if f}
    out["clients_flagged"] = float(len(flagged_clients))
    out["client_precision"] = (
        len(flagged_clients & attackers) / len(flagged_clients) if flagged_clients else math.nan
    )
    out["client_recall"] = (
        len(flagged_clients & attackers) / len(attackers) if attackers else math.nan
    )
    found: dict[str, list[int]] = {}
    hits = [(r, f) for r, f in zip(reqs, flags, strict=True) if f and r.label]
    for e in episodes:
        ok = any(
            r.label == e.label and e.start <= r.time <= e.end + 60 and r.client in e.clients
            for r, _ in hits
        )
        found.setdefault(e.label, [0, 0])
        found[e.label][0] += int(ok)
        found[e.label][1] += 1
    out["episodes"] = float(len(episodes))
    out["episodes_found"] = float(sum(v[0] for v in found.values()))
    for kind, (hit, n) in found.items():
        out[f"episodes.{kind}"] = float(n)
        out[f"episodes_found.{kind}"] = float(hit)
    return out


def evaluate(
    train_trace: Trace,
    test_trace: Trace | None = None,
    *,
    seed: int = 0,
    detectors: Sequence[str] = DETECTORS,
    train_fraction: float = 0.7,
) -> dict[str, dict[str, float]]:
    """Per detector, the held-out metrics: on the rest of ``train_trace`` after
    ``train_fraction``, or on the whole ``test_trace`` when given (an independent trace: more
    episodes than the held-out days hold)."""
    rows = replay_features(train_trace.requests)
    test_rows = replay_features(test_trace.requests) if test_trace is not None else None
    out: dict[str, dict[str, float]] = {}
    for det in detectors:
        art = train(train_trace, seed=seed, detector=det, train_fraction=train_fraction, rows=rows)
        if test_trace is None:
            out[det] = dict(art.metrics)
            continue
        assert test_rows is not None
        scorer = AnomalyScorer.from_artifact(art)
        flags = [v >= scorer.threshold for v in _scores(scorer, test_rows)]
        out[det] = _metrics(test_trace.requests, flags, test_trace)
    return out
