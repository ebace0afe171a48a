"""The feature store (#71): one code path for online features and offline training features.

:class:`FeatureExtractor` keeps a few counters per client, per (client, project) and per project
in a :class:`FeatureStore`, updated by :meth:`FeatureExtractor.update` for every request, and
turns them into a fixed vector by :meth:`FeatureExtractor.features` (names in
:data:`FEATURE_NAMES`). A server or proxy calls both as requests arrive; training replays a
trace through the very same object (:func:`offline_features`), so the features a model is
trained on are the features it is served, bit for bit (tests prove it for both stores).

State is a short tuple of floats per key, with the time it was written: an entry older than the
store's ``ttl_s`` (by the ``now`` passed in, never the wall clock) reads as absent, in both
stores alike. :class:`InMemoryFeatureStore` bounds its entries (least recently written dropped
first); :class:`RedisFeatureStore` shares the state between instances (packed doubles, so reads
give back the exact floats written; Redis' own key expiry only collects garbage).

Release features (ages, version distance) come from a :class:`~registry_core.ml.traces.Catalogue`
restricted to releases uploaded by ``now`` (no look-ahead); without one the extractor learns the
releases from the requests it sees (first request of a version = its release, in process only).
No numpy here: ``offline_features`` imports it when called.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import InvalidArgumentError, MLError

if TYPE_CHECKING:
    import numpy as np

    from .traces import Catalogue, Release, Request, Trace

__all__ = [
    "FEATURE_NAMES",
    "Example",
    "FeatureExtractor",
    "FeatureStore",
    "InMemoryFeatureStore",
    "RedisFeatureStore",
    "flavour",
    "offline_features",
]

#: The features :meth:`FeatureExtractor.features` returns, in this order. Rates are
#: ``log1p``-scaled; ``-1`` means unknown (no previous request, held version not known).
#: Cumulative counts are kept in the store but not served as features: they grow with the
#: length of the history, so a model trained on the first weeks would extrapolate on the next
#: (GBDT's held-out log loss was worse with them, in development).
FEATURE_NAMES: tuple[str, ...] = (
    "c_rate",  # log1p(decayed requests per day by the client, half-life 1 day)
    "c_first_frac",  # share of the client's file requests that were first downloads
    "c_gap_h",  # log1p(hours since the client's last request), -1 if none
    "cp_rate",  # log1p(decayed requests per day by the client for this project)
    "cp_gap_h",  # log1p(hours since the client's last request of this project), -1 if none
    "held_age_d",  # days since the held version was released, -1 if unknown
    "newest_age_d",  # days since the newest release (uploaded by now), -1 if none
    "versions_behind",  # releases between the held version and the newest, -1 if unknown
    "p_rate",  # log1p(decayed requests per day for the project)
    "p_upgrade_rate",  # log1p(decayed upgrades per day of the project's clients)
    "p_upgrade_frac",  # upgrades / distinct clients of the project
    "hour",  # hour of the day (UTC) of ``now``
    "file_size",  # log1p(bytes of the file asked about, or the newest release's first file)
)

_HALF_LIFE_S = 86400.0
_LN2 = math.log(2.0)
# value layouts (tuples of floats) per key prefix
_C = 6  # n, last_t, rate_v, rate_t, n_projects, n_first_or_file
_CP = 6  # n, last_t, rate_v, rate_t, held_idx, held_file_idx
_P = 8  # n, rate_v, rate_t, n_upgrades, up_v, up_t, n_clients, n_file


def flavour(filename: str) -> str:
    """What kind of file a client takes: the wheel tag triple (``py3-none-any``) or the sdist
    extension (``sdist:.tar.gz``); an upgrade takes the same flavour as the file held."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return "-".join(parts[-3:]) if len(parts) >= 5 else "wheel"
    for ext in (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar"):
        if filename.endswith(ext):
            return "sdist:" + ext
    return "other"


class FeatureStore(Protocol):
    """Counters by key: tuples of floats, each with the ``now`` it was written; an entry older
    than ``ttl_s`` reads as absent."""

    ttl_s: float

    def get_many(self, keys: Sequence[str], now: float) -> list[tuple[float, ...] | None]: ...

    def set_many(self, items: Mapping[str, Sequence[float]], now: float) -> None: ...


class InMemoryFeatureStore:
    """A bounded in-process store: at most ``max_entries`` keys (the least recently written is
    dropped), entries expire ``ttl_s`` after their last write (by the ``now`` given)."""

    def __init__(self, max_entries: int = 1 << 20, ttl_s: float = 30 * 86400.0) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidArgumentError(f"max_entries must be an int >= 1, got {max_entries!r}")
        if not isinstance(ttl_s, (int, float)) or not ttl_s > 0 or not math.isfinite(ttl_s):
            raise InvalidArgumentError(f"ttl_s must be a positive number, got {ttl_s!r}")
        self.max_entries = max_entries
        self.ttl_s = float(ttl_s)
        self._data: OrderedDict[str, tuple[float, tuple[float, ...]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get_many(self, keys: Sequence[str], now: float) -> list[tuple[float, ...] | None]:
        out: list[tuple[float, ...] | None] = []
        for key in keys:
            entry = self._data.get(key)
            if entry is None or now - entry[0] > self.ttl_s:
                out.append(None)
            else:
                out.append(entry[1])
        return out

    def set_many(self, items: Mapping[str, Sequence[float]], now: float) -> None:
        for key, values in items.items():
            self._data[key] = (now, tuple(values))
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)


class RedisFeatureStore:
    """The same store in Redis, shared by several instances: each key ``prefix + key`` holds
    packed big-endian doubles (the write time, then the values), so a read gives back exactly
    the floats written. Redis expires keys ``ttl_s`` after their last write by its own clock, to
    bound memory; freshness is decided by the ``now`` given, as in memory. ``redis`` is imported
    here, when a store is made."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "registry-core:ml:features:",
        ttl_s: float = 30 * 86400.0,
        *,
        timeout: float = 2.0,
    ) -> None:
        if not isinstance(ttl_s, (int, float)) or not ttl_s > 0 or not math.isfinite(ttl_s):
            raise InvalidArgumentError(f"ttl_s must be a positive number, got {ttl_s!r}")
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MLError(
                "RedisFeatureStore needs the 'redis' package: pip install 'registry-core[cache]'"
            ) from exc
        try:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise InvalidArgumentError(f"bad Redis URL: {exc}") from None
        self._errors = (redis.exceptions.RedisError, OSError)
        self.prefix = prefix
        self.ttl_s = float(ttl_s)
        self._ttl_ms = max(1, int(self.ttl_s * 1000))

    def get_many(self, keys: Sequence[str], now: float) -> list[tuple[float, ...] | None]:
        if not keys:
            return []
        try:
            raw: list[Any] = list(self._client.mget([self.prefix + k for k in keys]))
        except self._errors as exc:
            raise MLError(f"feature store read failed: {type(exc).__name__}") from None
        out: list[tuple[float, ...] | None] = []
        for blob in raw:
            if not blob or len(blob) % 8 or len(blob) > 8 * 64:
                out.append(None)
                continue
            values = struct.unpack(f">{len(blob) // 8}d", blob)
            out.append(None if now - values[0] > self.ttl_s else values[1:])
        return out

    def set_many(self, items: Mapping[str, Sequence[float]], now: float) -> None:
        if not items:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, values in items.items():
            blob = struct.pack(f">{len(values) + 1}d", now, *values)
            pipe.set(self.prefix + key, blob, px=self._ttl_ms)
        try:
            pipe.execute()
        except self._errors as exc:
            raise MLError(f"feature store write failed: {type(exc).__name__}") from None

    def clear(self) -> None:
        """Delete every key under ``prefix`` (tests, retraining from scratch)."""
        for key in self._client.scan_iter(match=self.prefix + "*", count=1000):
            self._client.delete(key)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class Example:
    """One prediction point: before request ``index`` of a trace, ``client`` holds ``held`` of
    ``project`` at ``time``; ``label`` (set by the caller) is whether it upgrades in time."""

    index: int
    time: float
    client: str
    project: str
    held: str
    held_file: str = ""
    label: int = 0
    trigger: str = "request"  # "request": the client was seen; "release": a release appeared


def _decay(value: float, then: float, now: float) -> float:
    if now <= then:
        return value
    return value * math.exp(-_LN2 * (now - then) / _HALF_LIFE_S)


def _log_hours(now: float, then: float) -> float:
    return math.log1p(max(0.0, now - then) / 3600.0)


class FeatureExtractor:
    """Online features per client, project and file, kept in ``store`` (default: a fresh
    :class:`InMemoryFeatureStore`). ``catalogue``: the releases (restricted to those uploaded by
    ``now`` whenever read); None learns them from the requests seen."""

    names = FEATURE_NAMES

    def __init__(
        self, catalogue: Catalogue | None = None, store: FeatureStore | None = None
    ) -> None:
        self.store: FeatureStore = store if store is not None else InMemoryFeatureStore()
        self.catalogue = catalogue
        self._seen: dict[str, list[Release]] = {}  # learned releases when no catalogue
        self._index: dict[str, dict[str, int]] = {}  # project -> version -> position

    # -- releases ------------------------------------------------------------------------

    def _releases(self, project: str) -> list[Release]:
        if self.catalogue is not None:
            return self.catalogue.projects.get(project, [])
        return self._seen.get(project, [])

    def _version_index(self, project: str, version: str) -> int:
        if not version:
            return -1
        releases = self._releases(project)
        index = self._index.get(project)
        if index is None or len(index) != len(releases):
            index = {r.version: i for i, r in enumerate(releases)}
            self._index[project] = index
        return index.get(version, -1)

    def _released_count(self, project: str, now: float) -> int:
        releases = self._releases(project)
        lo, hi = 0, len(releases)
        while lo < hi:  # releases are oldest first: bisect on their times
            mid = (lo + hi) // 2
            if releases[mid].time <= now:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _learn(self, r: Request) -> None:
        if self.catalogue is not None or not r.version or r.kind != "file":
            return
        releases = self._seen.setdefault(r.project, [])
        for rel in releases:
            if rel.version == r.version:
                if all(name != r.filename for name, _ in rel.files):
                    i = releases.index(rel)
                    releases[i] = type(rel)(
                        rel.version, rel.time, (*rel.files, (r.filename, r.size))
                    )
                return
        from .traces import Release

        releases.append(Release(r.version, r.time, ((r.filename, r.size),)))
        self._index.pop(r.project, None)

    def note_release(
        self, project: str, version: str, time: float, files: Sequence[tuple[str, int]] = ()
    ) -> None:
        """Record a release as it is uploaded (the server calls this before asking for
        predictions about it); a known version only gains the files it did not list."""
        from .traces import Release

        releases = (
            self.catalogue.projects.setdefault(project, [])
            if self.catalogue is not None
            else self._seen.setdefault(project, [])
        )
        for i, rel in enumerate(releases):
            if rel.version == version:
                extra = tuple(f for f in files if f not in rel.files)
                if extra:
                    releases[i] = Release(rel.version, rel.time, (*rel.files, *extra))
                return
        if releases and time < releases[-1].time:
            raise InvalidArgumentError(
                f"release {project} {version} at {time} is older than the last known one"
            )
        releases.append(Release(version, float(time), tuple(files)))
        self._index.pop(project, None)
        if self.catalogue is not None:
            self.catalogue._times.pop(project, None)

    # -- state ---------------------------------------------------------------------------

    def _state(
        self, client: str, project: str, now: float
    ) -> tuple[list[float], list[float], list[float]]:
        keys = [f"c:{client}"]
        if project:
            keys += [f"cp:{client}\x00{project}", f"p:{project}"]
        got = self.store.get_many(keys, now)
        c = list(got[0]) if got[0] is not None and len(got[0]) == _C else [0.0] * _C
        cp, p = [0.0] * _CP, [0.0] * _P
        cp[4] = cp[5] = -1.0
        if project:
            if got[1] is not None and len(got[1]) == _CP:
                cp = list(got[1])
            if got[2] is not None and len(got[2]) == _P:
                p = list(got[2])
        return c, cp, p

    def held(self, client: str, project: str, now: float) -> tuple[str, str]:
        """The (version, filename) of ``project`` the client last downloaded, ("", "") if none
        is known (or it expired)."""
        _, cp, _ = self._state(client, project, now)
        vi, fi = int(cp[4]), int(cp[5])
        releases = self._releases(project)
        if 0 <= vi < len(releases):
            rel = releases[vi]
            name = rel.files[fi][0] if 0 <= fi < len(rel.files) else ""
            return rel.version, name
        return "", ""

    def update(self, r: Request) -> None:
        """Count one request (call it for every request, in time order)."""
        now = r.time
        self._learn(r)
        c, cp, p = self._state(r.client, r.project, now)
        new_pair = r.project and cp[0] == 0.0
        c[0] += 1.0
        c[1] = now
        c[2] = _decay(c[2], c[3], now) + 1.0
        c[3] = now
        if new_pair:
            c[4] += 1.0
        items: dict[str, Sequence[float]] = {}
        if r.project:
            cp[0] += 1.0
            cp[1] = now
            cp[2] = _decay(cp[2], cp[3], now) + 1.0
            cp[3] = now
            p[0] += 1.0
            p[1] = _decay(p[1], p[2], now) + 1.0
            p[2] = now
            if new_pair:
                p[6] += 1.0
            if r.kind == "file" and r.version and 200 <= r.status < 400:
                vi = self._version_index(r.project, r.version)
                held_i = int(cp[4])
                if held_i < 0 and r.held:
                    held_i = self._version_index(r.project, r.held)
                p[7] += 1.0
                if held_i < 0:
                    c[5] += 1.0  # a first download
                elif vi > held_i:
                    p[3] += 1.0
                    p[4] = _decay(p[4], p[5], now) + 1.0
                    p[5] = now
                if vi >= 0 and vi >= held_i:
                    cp[4] = float(vi)
                    rel = self._releases(r.project)[vi]
                    cp[5] = float(
                        next((i for i, (n, _) in enumerate(rel.files) if n == r.filename), -1)
                    )
            items[f"cp:{r.client}\x00{r.project}"] = cp
            items[f"p:{r.project}"] = p
        items[f"c:{r.client}"] = c
        self.store.set_many(items, now)

    def features(
        self, client: str, project: str, filename: str, now: float, *, held: str = ""
    ) -> dict[str, float]:
        """The feature vector (names :data:`FEATURE_NAMES`) for ``client`` asking about
        ``project`` (and ``filename``, "" for the newest release's) at ``now``. ``held``: the
        version the client has, "" for the one it last downloaded (as far as the store knows)."""
        row = self.vector(client, project, filename, now, held=held)
        return dict(zip(FEATURE_NAMES, row, strict=True))

    def vector(
        self, client: str, project: str, filename: str, now: float, *, held: str = ""
    ) -> list[float]:
        """:meth:`features` as a list in :data:`FEATURE_NAMES` order (what models take)."""
        c, cp, p = self._state(client, project, now)
        releases = self._releases(project)
        n_released = self._released_count(project, now)
        held_i = self._version_index(project, held) if held else int(cp[4])
        if held_i >= n_released:
            held_i = -1  # "held" a version not released yet by now: unknown
        newest = releases[n_released - 1] if n_released else None
        size = 0
        if filename:
            for rel in reversed(releases[:n_released]):
                hit = next((s for n, s in rel.files if n == filename), None)
                if hit is not None:
                    size = hit
                    break
        elif newest is not None and newest.files:
            size = newest.files[0][1]
        n_file = c[0] if c[0] > 0 else 1.0
        return [
            math.log1p(_decay(c[2], c[3], now)),
            c[5] / n_file,
            _log_hours(now, c[1]) if c[0] > 0 else -1.0,
            math.log1p(_decay(cp[2], cp[3], now)),
            _log_hours(now, cp[1]) if cp[0] > 0 else -1.0,
            (now - releases[held_i].time) / 86400.0 if held_i >= 0 else -1.0,
            (now - newest.time) / 86400.0 if newest is not None else -1.0,
            float(n_released - 1 - held_i) if held_i >= 0 else -1.0,
            math.log1p(_decay(p[1], p[2], now)),
            math.log1p(_decay(p[4], p[5], now)),
            p[3] / p[6] if p[6] > 0 else 0.0,
            (now % 86400.0) / 3600.0,
            math.log1p(size),
        ]


def replay(
    trace: Trace | Iterable[Request],
    examples: Sequence[Example],
    extractor: FeatureExtractor,
) -> list[list[float]]:
    """Feature rows for ``examples`` (sorted by ``index``), each computed just before request
    ``index`` is counted, while every request is fed to ``extractor``: the offline replay."""
    requests = trace.requests if hasattr(trace, "requests") else trace
    rows: list[list[float]] = []
    j = 0
    order = sorted(range(len(examples)), key=lambda k: examples[k].index)
    out: list[list[float] | None] = [None] * len(examples)
    for i, r in enumerate(requests):
        while j < len(order) and examples[order[j]].index == i:
            e = examples[order[j]]
            out[order[j]] = extractor.vector(e.client, e.project, "", e.time, held=e.held)
            j += 1
        extractor.update(r)
    if j < len(order):
        raise InvalidArgumentError(
            f"example index {examples[order[j]].index} is past the trace's {i + 1} requests"
        )
    rows = [row for row in out if row is not None]
    return rows


def offline_features(
    trace: Trace,
    examples: Sequence[Example],
    *,
    store: FeatureStore | None = None,
) -> np.ndarray:
    """The training matrix for ``examples`` (rows in their order, columns
    :data:`FEATURE_NAMES`): ``trace`` replayed through a fresh :class:`FeatureExtractor` over
    ``store`` (default in memory, bounded by nothing but the trace), the same code that serves."""
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MLError("offline_features needs numpy: pip install 'registry-core[ml]'") from exc
    if store is None:
        store = InMemoryFeatureStore(max_entries=1 << 30, ttl_s=365 * 86400.0)
    rows = replay(trace, examples, FeatureExtractor(trace.catalogue, store))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def describe(values: Mapping[str, float]) -> dict[str, Any]:
    """Features as a JSON-ready dict (for the gateway's explanations and debugging)."""
    return {k: (None if v == -1.0 else round(v, 6)) for k, v in values.items()}
