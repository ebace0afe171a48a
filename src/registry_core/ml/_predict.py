"""The prediction engine: will this client ask for a newer file of this project, and soon?

An *example* is a moment a client that holds an older version of a project is seen (any request
of that project) while a newer release exists; its *label* is whether the same client requests a
file of a newer version within the horizon (7 days by default; 24 hours for the short variant).
Features come from :mod:`registry_core.ml._features` (one code path online and offline). A model
(a :class:`~registry_core.ml._trees.TreeEnsemble` or a logistic
:class:`~registry_core.ml._dense.DenseNet`) scores the example, a
:class:`~registry_core.ml._calibrate.Calibrator` turns the score into a probability with a
Venn-Abers interval, and :class:`Predictor` spreads that probability over the newer files the
client would take (the newest release gets the share of upgrades that went to the newest
release in training; files of the same flavour as the one held, else split evenly).

:class:`PredictivePrecompute` uses it on the server: after an upload, choose the bases worth
precomputing patches from by the expected number of clients that hold each one and will
upgrade. Training lives in :mod:`registry_core.ml._train`.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, ModelError
from ._calibrate import Calibrator
from ._features import FEATURE_NAMES, Example, FeatureExtractor, flavour

if TYPE_CHECKING:
    import numpy as np

    from ..index import FileRecord
    from .traces import Request, Trace

__all__ = [
    "DAY",
    "KIND",
    "FilePrediction",
    "PredictivePrecompute",
    "Predictor",
    "make_examples",
]

KIND = "next-download"
DAY = 86400.0
_MAGIC = b"RCNP"
_VERSION = 1
_HEAD = struct.Struct(">4sBI")
_MAX_HEADER = 8 << 20
_MAX_PAYLOAD = 32 << 20
_EXAMPLE_KINDS = frozenset(("file", "metadata", "page"))


@dataclass(frozen=True)
class FilePrediction:
    """One newer file a client may ask for: calibrated ``probability`` within the horizon and
    its Venn-Abers interval ``[low, high]``."""

    project: str
    filename: str
    version: str
    probability: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "filename": self.filename,
            "version": self.version,
            "probability": self.probability,
            "low": self.low,
            "high": self.high,
        }


@dataclass
class ExampleSet:
    """Examples of a trace with their feature rows, labels and, for positives, whether the
    upgrade went to the newest release of the time (``to_latest``)."""

    examples: list[Example]
    X: np.ndarray
    y: np.ndarray
    to_latest: np.ndarray
    horizon_s: float
    end: float

    def select(self, mask: Any) -> ExampleSet:
        import numpy as np

        idx = np.flatnonzero(mask)
        return ExampleSet(
            [self.examples[i] for i in idx],
            self.X[idx],
            self.y[idx],
            self.to_latest[idx],
            self.horizon_s,
            self.end,
        )

    @property
    def times(self) -> np.ndarray:
        import numpy as np

        return np.asarray([e.time for e in self.examples], dtype=np.float64)


def make_examples(
    trace: Trace,
    *,
    horizon_s: float = 7 * DAY,
    every_s: float = DAY,
    triggers: Sequence[str] = ("request", "release"),
    extractor: FeatureExtractor | None = None,
) -> ExampleSet:
    """Replay ``trace`` once through ``extractor`` (default a fresh in-memory one over the
    trace's catalogue) and collect examples of two triggers: ``request``, a client holding an
    older version is seen (any request of the project; at most one per ``every_s`` per client
    and project), features taken just before that request is counted; ``release``, a release
    appears while a client holds an older version (the server's question at upload: will the
    holders upgrade?), features taken at the release time. Labels are looked up afterwards;
    examples whose horizon passes the end of the trace are dropped (their label is unknown)."""
    import numpy as np

    if not horizon_s > 0 or not every_s >= 0:
        raise InvalidArgumentError("horizon_s must be > 0 and every_s >= 0")
    if not triggers or not set(triggers) <= {"request", "release"}:
        raise InvalidArgumentError(f"triggers must be among request, release: {triggers!r}")
    cat = trace.catalogue
    ex = extractor if extractor is not None else FeatureExtractor(cat)
    end = trace.end
    by_request, by_release = "request" in triggers, "release" in triggers
    releases = sorted(
        (rel.time, name, k)
        for name, rels in cat.projects.items()
        for k, rel in enumerate(rels)
        if k > 0
    )
    next_release = 0
    holders: dict[str, dict[str, int]] = {}  # project -> client -> version index held
    last: dict[tuple[str, str], float] = {}
    examples: list[Example] = []
    rows: list[list[float]] = []
    # per (client, project): file requests as (time, version index) for the labels
    fetched: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for i, r in enumerate(trace.requests):
        while next_release < len(releases) and releases[next_release][0] <= r.time:
            t, project, k = releases[next_release]
            next_release += 1
            if not by_release or t + horizon_s > end:
                continue
            for client, vi in sorted(holders.get(project, {}).items()):
                if vi < k:
                    held = cat.projects[project][vi].version
                    last[(client, project)] = t
                    examples.append(Example(i, t, client, project, held, "", 0, "release"))
                    rows.append(ex.vector(client, project, "", t, held=held))
        if by_request and r.project and r.kind in _EXAMPLE_KINDS and r.time + horizon_s <= end:
            pair = (r.client, r.project)
            seen = last.get(pair)
            if seen is None or r.time - seen >= every_s:
                held, held_file = ex.held(r.client, r.project, r.time)
                if not held and r.held:
                    held, held_file = r.held, ""
                if held and _newer(cat, r.project, held, r.time):
                    last[pair] = r.time
                    examples.append(Example(i, r.time, r.client, r.project, held, held_file))
                    rows.append(ex.vector(r.client, r.project, "", r.time, held=held))
        if r.kind == "file" and r.project and r.version and 200 <= r.status < 400:
            vi = ex._version_index(r.project, r.version)
            if vi >= 0:
                times, versions = fetched.setdefault((r.client, r.project), ([], []))
                times.append(r.time)
                versions.append(vi)
                held_map = holders.setdefault(r.project, {})
                held_map[r.client] = max(vi, held_map.get(r.client, -1))
        ex.update(r)
    y = np.zeros(len(examples), dtype=np.float64)
    to_latest = np.zeros(len(examples), dtype=np.float64)
    labelled: list[Example] = []
    for k, e in enumerate(examples):
        hi = ex._version_index(e.project, e.held)
        times, versions = fetched.get((e.client, e.project), ([], []))
        a = bisect.bisect_left(times, e.time)
        b = bisect.bisect_right(times, e.time + horizon_s)
        newest = ex._released_count(e.project, e.time) - 1
        label = 0
        for j in range(a, b):
            if versions[j] > hi:
                label = 1
                to_latest[k] = 1.0 if versions[j] >= newest else 0.0
                break
        y[k] = label
        labelled.append(
            Example(e.index, e.time, e.client, e.project, e.held, e.held_file, label, e.trigger)
        )
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    return ExampleSet(labelled, X, y, to_latest, float(horizon_s), end)


def _newer(cat: Any, project: str, held: str, now: float) -> bool:
    releases = cat.projects.get(project)
    if not releases:
        return False
    if all(r.version != held for r in releases):
        return False
    return bool(cat.newer(project, held, now))


# -- the served model ----------------------------------------------------------------------


def _load_model(model_type: str, data: bytes) -> Any:
    if model_type == "trees":
        from ._trees import TreeEnsemble

        return TreeEnsemble.from_bytes(data)
    if model_type == "dense":
        from ._dense import DenseNet

        return DenseNet.from_bytes(data)
    raise ModelError(f"unknown next-download model type {model_type!r}")


class Predictor:
    """A trained next-download model: ``model`` (TreeEnsemble or DenseNet giving a raw score
    per feature row), its ``calibrator``, the ``horizon_s`` it was trained for and
    ``latest_share`` (share of upgrades that took the newest release). ``extractor`` supplies
    the features and the releases at serving time (bind one with :meth:`bind`)."""

    kind = KIND

    def __init__(
        self,
        model: Any,
        calibrator: Calibrator,
        *,
        horizon_s: float,
        latest_share: float = 1.0,
        threshold: float = 0.5,
        model_type: str = "trees",
        extractor: FeatureExtractor | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if model_type not in ("trees", "dense"):
            raise InvalidArgumentError(f"model_type must be trees or dense, not {model_type!r}")
        if not 0.0 <= latest_share <= 1.0 or not 0.0 < threshold < 1.0 or not horizon_s > 0:
            raise ModelError("latest_share in [0, 1], threshold in (0, 1), horizon_s > 0")
        if getattr(model, "n_features", len(FEATURE_NAMES)) != len(FEATURE_NAMES):
            raise ModelError(
                f"the model takes {model.n_features} features, the extractor gives "
                f"{len(FEATURE_NAMES)}"
            )
        self.model = model
        self.calibrator = calibrator
        self.horizon_s = float(horizon_s)
        self.latest_share = float(latest_share)
        self.threshold = float(threshold)
        self.model_type = model_type
        self.extractor = extractor
        self.meta = dict(meta or {})

    def bind(self, extractor: FeatureExtractor) -> Predictor:
        """Serve features and releases from ``extractor`` (returns self)."""
        self.extractor = extractor
        return self

    # -- scoring ---------------------------------------------------------------------------

    def score(self, row: Sequence[float]) -> float:
        """The raw model score of one feature row."""
        return float(self.model.predict_one(row))

    def scores(self, X: Any) -> np.ndarray:
        import numpy as np

        return np.asarray(self.model.predict(X), dtype=np.float64).ravel()

    def upgrade(
        self, client: str, project: str, held: str, now: float
    ) -> tuple[float, float, float]:
        """(probability, low, high) that ``client`` holding ``held`` of ``project`` requests
        a file of any newer version within the horizon."""
        ex = self._extractor()
        s = self.score(ex.vector(client, project, "", now, held=held))
        low, high = self.calibrator.interval(s)
        return self.calibrator(s), low, high

    def _extractor(self) -> FeatureExtractor:
        if self.extractor is None:
            raise InvalidArgumentError(
                "this Predictor has no feature extractor: call bind(FeatureExtractor(...))"
            )
        return self.extractor

    def predict(
        self,
        client: str,
        project: str,
        held: str = "",
        now: float = 0.0,
        horizon_s: float | None = None,
    ) -> list[FilePrediction]:
        """One :class:`FilePrediction` per newer file ``client`` would take (newest release
        first), empty when nothing newer is known. ``held`` "" means the version the feature
        store saw the client download last; ``horizon_s`` must be the trained one if given."""
        if horizon_s is not None and abs(float(horizon_s) - self.horizon_s) > 1e-9:
            raise InvalidArgumentError(
                f"this model predicts within {self.horizon_s:g} s, not {horizon_s!r} "
                "(train one for that horizon: registry-core ml train)"
            )
        ex = self._extractor()
        held_file = ""
        if not held:
            held, held_file = ex.held(client, project, now)
            if not held:
                return []
        else:
            known, known_file = ex.held(client, project, now)
            if known == held:
                held_file = known_file
        releases = ex._releases(project)
        n = ex._released_count(project, now)
        hi = ex._version_index(project, held)
        if hi < 0 or hi >= n - 1:
            return []
        newer = releases[hi + 1 : n]
        p, low, high = self.upgrade(client, project, held, now)
        want = flavour(held_file) if held_file else ""
        out: list[FilePrediction] = []
        for pos, rel in enumerate(reversed(newer)):
            if len(newer) == 1:
                share = 1.0
            elif pos == 0:
                share = self.latest_share
            else:
                share = (1.0 - self.latest_share) / (len(newer) - 1)
            files = [f for f in rel.files if want and flavour(f[0]) == want] or list(rel.files)
            for name, _size in files:
                k = share / len(files)
                out.append(FilePrediction(project, name, rel.version, p * k, low * k, high * k))
        return out

    # -- bytes -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """``b"RCNP"``, a version byte, a u32 header length, the JSON header, the model."""
        head = json.dumps(
            {
                "model_type": self.model_type,
                "horizon_s": self.horizon_s,
                "latest_share": self.latest_share,
                "threshold": self.threshold,
                "feature_names": list(FEATURE_NAMES),
                "calibrator": self.calibrator.to_dict(),
                "meta": self.meta,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return _HEAD.pack(_MAGIC, _VERSION, len(head)) + head + self.model.to_bytes()

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, extractor: FeatureExtractor | None = None
    ) -> Predictor:
        """Load (checked: magic, version, lengths, feature names) a :meth:`to_bytes` form."""
        view = memoryview(data)
        if len(view) < _HEAD.size or len(view) > _MAX_HEADER + _MAX_PAYLOAD:
            raise ModelError(f"next-download model of {len(view)} bytes is out of bounds")
        magic, version, n = _HEAD.unpack_from(view)
        if magic != _MAGIC:
            raise ModelError("not a next-download model (bad magic)")
        if version != _VERSION:
            raise ModelError(f"next-download model format {version} is not supported")
        if n > _MAX_HEADER or _HEAD.size + n > len(view):
            raise ModelError("next-download model truncated (header does not fit)")
        try:
            head = json.loads(bytes(view[_HEAD.size : _HEAD.size + n]))
            if tuple(head["feature_names"]) != FEATURE_NAMES:
                raise ModelError(
                    "the model was trained on other features than this version computes: retrain"
                )
            model = _load_model(str(head["model_type"]), bytes(view[_HEAD.size + n :]))
            return cls(
                model,
                Calibrator.from_dict(head["calibrator"]),
                horizon_s=float(head["horizon_s"]),
                latest_share=float(head["latest_share"]),
                threshold=float(head["threshold"]),
                model_type=str(head["model_type"]),
                extractor=extractor,
                meta=dict(head.get("meta") or {}),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"next-download model header is malformed: {exc!r}") from None


def load_predictor(data: bytes) -> Predictor:
    """The gateway's loader for kind ``next-download``: a ModelArtifact's bytes (or a bare
    payload) to an unbound :class:`Predictor`."""
    if bytes(data[:4]) == b"RCML":
        from ._artifact import ModelArtifact

        art = ModelArtifact.from_bytes(data)
        if art.kind != KIND:
            raise ModelError(f"artifact kind is {art.kind!r}, not {KIND!r}")
        data = art.payload
    return Predictor.from_bytes(data)


# -- server: which bases to precompute -------------------------------------------------------


class PredictivePrecompute:
    """Choose the bases of an upload's patches by predicted demand: for each candidate older
    file, the expected number of clients that hold it and will upgrade within the horizon
    (sum of their calibrated probabilities). ``update`` every request (it feeds ``extractor``
    and remembers who holds which version); ``bases`` is the server's ``precompute_bases``.
    Candidates nobody is known to hold are dropped; with no demand known at all the first
    ``fallback`` candidates (the newest) are kept, as without a model."""

    def __init__(
        self,
        predictor: Predictor,
        extractor: FeatureExtractor | None = None,
        *,
        max_bases: int = 3,
        min_demand: float = 0.05,
        fallback: int = 3,
        clock: Any = None,
    ) -> None:
        if max_bases < 1 or fallback < 0 or min_demand < 0:
            raise InvalidArgumentError("max_bases >= 1, fallback >= 0, min_demand >= 0")
        self.extractor = extractor if extractor is not None else predictor._extractor()
        self.predictor = predictor.bind(self.extractor)
        self.max_bases = max_bases
        self.min_demand = float(min_demand)
        self.fallback = fallback
        self._clock = clock
        self._holders: dict[str, dict[str, set[str]]] = {}  # project -> version -> clients
        self._client_version: dict[tuple[str, str], str] = {}
        self.now = 0.0

    def update(self, r: Request) -> None:
        """Count a request (features) and track which version each client holds."""
        self.extractor.update(r)
        self.now = max(self.now, r.time)
        if r.kind == "file" and r.project and r.version and 200 <= r.status < 400:
            key = (r.client, r.project)
            old = self._client_version.get(key)
            if old == r.version:
                return
            versions = self._holders.setdefault(r.project, {})
            if old is not None:
                versions.get(old, set()).discard(r.client)
            versions.setdefault(r.version, set()).add(r.client)
            self._client_version[key] = r.version

    def demand(self, project: str, version: str, now: float) -> float:
        """Expected upgrades within the horizon from clients holding ``version``."""
        clients = self._holders.get(project, {}).get(version, ())
        total = 0.0
        for client in sorted(clients):
            total += self.predictor.upgrade(client, project, version, now)[0]
        return total

    def rank(self, project: str, versions: Iterable[str], now: float) -> list[tuple[str, float]]:
        """``versions`` with their demand, highest first (ties: the order given)."""
        scored = [(v, self.demand(project, v, now)) for v in versions]
        return sorted(scored, key=lambda t: -t[1])

    def bases(self, record: FileRecord, candidates: list[FileRecord]) -> list[FileRecord]:
        """The server's ``precompute_bases``: ``candidates`` (older files of the same flavour,
        newest first) reordered by demand, at most ``max_bases``."""
        now = float(self._clock()) if self._clock is not None else self.now
        uploaded = record.upload_time_ns / 1e9 if record.upload_time_ns else now
        # an upload older than the newest known release is ranked with what is known
        with contextlib.suppress(InvalidArgumentError):
            self.extractor.note_release(
                record.project,
                record.version,
                min(uploaded, now),
                ((record.filename, record.size),),
            )
        by_version: dict[str, list[FileRecord]] = {}
        for c in candidates:
            by_version.setdefault(c.version, []).append(c)
        ranked = self.rank(record.project, list(by_version), now)
        chosen = [v for v, d in ranked if d >= self.min_demand][: self.max_bases]
        if not chosen:
            return list(candidates[: self.fallback])
        out: list[FileRecord] = []
        for v in chosen:
            out += by_version[v]
        return out[: self.max_bases]


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
