"""The ML layer in the running server: anomaly alerts, upload checks and scaling hints.

Built by :mod:`._tenancy` only when the configuration's ``[ml]`` section asks for a part (and,
for anomaly scoring and upload checks, the ``ML_ANOMALY_DETECTION`` flag is on): this module is
imported then and only then, so a server without it never loads :mod:`registry_core.ml`.

- :class:`MLObserver`: every answered request is handed to :meth:`MLObserver.submit` (O(1):
  a tuple appended to a bounded queue; when the queue is full the request is dropped and
  counted, never waited for), and one worker thread turns it into an ml
  :class:`~registry_core.ml.traces.Request` (``classify`` of the path inside the index, the
  client id hashed from the peer address as the access-log reader does) and feeds the tenant's
  :class:`TenantML`: its :class:`~registry_core.ml._anomaly.AnomalyScorer` (alerts to the
  tenant's audit sink, the one authorization denials use) and its forecaster.
- :class:`TenantML`: one tenant's scorer, forecaster and :class:`~registry_core.ml._scaling.
  ScalingAdvisor`; :func:`scaling_route` serves the advisor's hint at ``<tenant>/_/scaling`` to
  principals allowed ``index.admin`` on the tenant (the admin role), the uniform 404 to others.
- :class:`LivePopular`: an index's most depended-upon projects for the typosquat check, read
  in full on the first new-project upload and then kept current per upload (two database
  reads for the uploaded project), so an upload never rescans the index.
- :class:`MLCollector`: the counters and the hints on the telemetry registry (labelled by
  tenant), read when scraped.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ModelError

if TYPE_CHECKING:
    from ..audit import AuditEvent, AuditSink
    from ..config import Config
    from ..config._schema import MLConfig
    from ..index import Index
    from ..index._checks import Finding, UploadCandidate, UploadChecks
    from ..index._model import FileRecord
    from ..ml._anomaly import AnomalyScorer
    from ..ml._scaling import ScalingAdvisor, ScalingHint
    from ..ml._typosquat import TyposquatCheck

__all__ = [
    "LivePopular",
    "MLCollector",
    "MLObserver",
    "TenantML",
    "build_observer",
    "build_upload_checks",
    "scaling_route",
]

log = logging.getLogger("registry_core.server.ml")

#: Requests waiting for the worker at most; beyond it new ones are dropped (and counted).
MAX_QUEUE = 10_000
#: Paths longer than this are cut before classification (bounded work per request).
_MAX_PATH = 2048


class _CountingSink:
    """Forwards to ``sink`` and counts what went through (the alerts of a scorer)."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink
        self.count = 0

    def emit(self, event: AuditEvent) -> None:
        self.count += 1
        self.sink.emit(event)


class TenantML:
    """One tenant's live ML parts: ``scorer`` (None: anomaly scoring off), ``advisor`` and its
    forecaster (None: scaling off). :meth:`observe` and :meth:`hint` are serialized by a lock
    (the worker thread observes, the scaling route reads)."""

    def __init__(
        self,
        tenant: str,
        *,
        scorer: AnomalyScorer | None = None,
        alerts: _CountingSink | None = None,
        advisor: ScalingAdvisor | None = None,
    ) -> None:
        self.tenant = tenant
        self.scorer = scorer
        self.advisor = advisor
        self._alerts = alerts
        self._lock = threading.Lock()
        self.scored = 0
        self.flagged = 0
        self.observed = 0

    @property
    def alerts(self) -> int:
        return self._alerts.count if self._alerts is not None else 0

    def observe(self, r: Any) -> None:
        """Score ``r`` (an ml Request) and count it into the forecast."""
        with self._lock:
            self.observed += 1
            if self.scorer is not None:
                score = self.scorer.observe(r)
                self.scored += 1
                self.flagged += score.alert
            if self.advisor is not None:
                self.advisor.forecaster.observe(r)

    def hint(self, now: float) -> ScalingHint | None:
        """The scaling hint for the bucket after ``now``'s (None: scaling off)."""
        if self.advisor is None:
            return None
        with self._lock:
            return self.advisor.recommend(now)

    def stats(self) -> dict[str, int]:
        return {
            "observed": self.observed,
            "scored": self.scored,
            "flagged": self.flagged,
            "alerts": self.alerts,
        }


_Item = tuple[str, float, str, str, int, int, str, str]


class MLObserver:
    """The request stream of every tenant, scored off the request path (module docstring).

    ``clock``: the time a request is stamped with when submitted (injected in tests).
    """

    def __init__(
        self,
        tenants: Mapping[str, TenantML],
        *,
        clock: Callable[[], float] = time.time,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self.tenants = dict(tenants)
        self.clock = clock
        self.max_queue = max_queue
        self.dropped = 0
        self.failed = 0
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(
        self,
        tenant: str,
        method: str,
        path: str,
        status: int,
        size: int,
        peer: str | None,
        subject: str,
    ) -> None:
        """Queue one answered request (never blocks; a full queue drops it)."""
        if tenant not in self.tenants:
            return
        item = (tenant, self.clock(), method, path[:_MAX_PATH], status, size, peer or "", subject)
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                return
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="registry-core-ml", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        from ..ml.traces import Request, classify, client_id

        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._busy = False
                    self._cond.notify_all()
                    self._cond.wait()
                if not self._queue:  # closed and drained
                    self._busy = False
                    self._cond.notify_all()
                    return
                tenant, now, method, path, status, size, peer, subject = self._queue.popleft()
                self._busy = True
            try:
                kind, project, filename, version, route = classify(method, path)
                who = peer or (subject if subject not in ("", "-") else "")
                r = Request(
                    now,
                    client_id(who) if who else "anonymous",
                    kind,
                    project,
                    filename,
                    version,
                    max(0, size),
                    status=status,
                    method=method,
                    tenant=tenant,
                    route=route,
                )
                self.tenants[tenant].observe(r)
            except Exception:
                self.failed += 1
                if self.failed <= 3:
                    log.exception("ml: scoring a request of tenant %s failed", tenant)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted request has been processed (tests, shutdown); False
        when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Process what is queued, then stop the worker (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10.0)

    def stats(self) -> dict[str, int]:
        with self._cond:
            queued = len(self._queue)
        return {"queued": queued, "dropped": self.dropped, "failed": self.failed}


# -- building -----------------------------------------------------------------------------------


def _read_model(path: str) -> bytes:
    from ..ml._artifact import MAX_ARTIFACT_BYTES

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ARTIFACT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the anomaly model {path}: {exc.strerror or exc}", key="ml.anomaly_model"
        ) from None
    if len(data) > MAX_ARTIFACT_BYTES:
        raise ConfigError(
            f"the anomaly model {path} is larger than {MAX_ARTIFACT_BYTES} bytes",
            key="ml.anomaly_model",
        )
    return data


def _scorer(
    ml: MLConfig, model: bytes | None, audit: AuditSink
) -> tuple[AnomalyScorer, _CountingSink]:
    from ..ml._anomaly import AnomalyScorer
    from ..ml._artifact import ModelArtifact

    sink = _CountingSink(audit)
    if model is None:
        return AnomalyScorer(ml.anomaly_detector, audit=sink), sink
    try:
        scorer = AnomalyScorer.from_artifact(ModelArtifact.from_bytes(model), audit=sink)
    except ModelError as exc:
        raise ConfigError(f"{ml.anomaly_model}: {exc}", key="ml.anomaly_model") from None
    if scorer.detector != ml.anomaly_detector:
        raise ConfigError(
            f"{ml.anomaly_model} is a {scorer.detector} model, but anomaly_detector is "
            f"{ml.anomaly_detector!r}",
            key="ml.anomaly_detector",
        )
    return scorer, sink


def _advisor(ml: MLConfig, tenant: str) -> ScalingAdvisor:
    from ..ml._forecast import Forecaster
    from ..ml._scaling import ScalingAdvisor

    # the seasonal baseline needs no training and no numpy; history is this process's
    forecaster = Forecaster("seasonal-mean")
    return ScalingAdvisor(
        forecaster,
        per_worker_rps=ml.per_worker_rps,
        workers_per_instance=ml.workers_per_instance,
        tenant=tenant,
    )


def build_observer(
    config: Config,
    audits: Mapping[str, AuditSink],
    *,
    anomaly: bool,
    clock: Callable[[], float] = time.time,
) -> MLObserver | None:
    """The observer of ``config``'s ``[ml]`` section for the tenants of ``audits`` (tenant ->
    its audit sink), or None when nothing in it observes requests. ``anomaly``: scoring is
    allowed (the ML_ANOMALY_DETECTION flag, resolved by the caller)."""
    ml = config.ml
    if ml is None:
        return None
    score = anomaly and ml.anomaly_detection
    if not (score or ml.scaling):
        return None
    model = _read_model(ml.anomaly_model) if score and ml.anomaly_model else None
    tenants: dict[str, TenantML] = {}
    for name, audit in audits.items():
        scorer, sink = _scorer(ml, model, audit) if score else (None, None)
        advisor = _advisor(ml, name) if ml.scaling else None
        tenants[name] = TenantML(name, scorer=scorer, alerts=sink, advisor=advisor)
    return MLObserver(tenants, clock=clock)


class LivePopular:
    """The ``top`` most depended-upon projects of ``index`` (module docstring): read in full
    on first use, then updated per upload by :meth:`note_upload`."""

    def __init__(self, index: Index, top: int, *, max_projects: int = 100_000) -> None:
        self.index = index
        self.top = top
        self.max_projects = max_projects
        self._requirements: dict[str, frozenset[str]] | None = None
        self._check: TyposquatCheck | None = None
        self._stale = True
        self._lock = threading.Lock()
        self.scans = 0

    def note_upload(self, record: FileRecord) -> None:
        """Re-read the uploaded project's requirements (its newest file may have changed)."""
        from ..ml._typosquat import project_requirements

        with self._lock:
            if self._requirements is None:
                return  # the first full read will see it
            names = project_requirements(self.index, record.project)
            if self._requirements.get(record.project) != names:
                self._requirements[record.project] = names
                self._stale = True

    def _ranked(self) -> list[str]:
        """The list now (the caller holds the lock; the first call reads the index)."""
        from ..ml._typosquat import project_requirements, rank_depended_upon

        if self._requirements is None:
            self.scans += 1
            self._requirements = {
                p.name: project_requirements(self.index, p.name)
                for p in self.index.projects()[: self.max_projects]
            }
        return rank_depended_upon(self._requirements, self.top)

    def popular(self) -> list[str]:
        """The ``top`` most depended-upon names, most first (ties by name)."""
        with self._lock:
            return self._ranked()

    def check(self) -> TyposquatCheck | None:
        """The typosquat check on the current list (None while nothing is depended upon)."""
        from ..ml._typosquat import TyposquatCheck

        with self._lock:
            if self._stale or self._requirements is None:
                names = self._ranked()
                self._check = TyposquatCheck(names) if names else None
                self._stale = False
            return self._check


class _LiveTyposquat:
    """The typosquat upload check over a :class:`LivePopular` list."""

    name = "typosquat"

    def __init__(self, popular: LivePopular) -> None:
        self.popular = popular

    def check(self, upload: UploadCandidate) -> Sequence[Finding]:
        if not upload.new_project:
            return []
        check = self.popular.check()
        return check.check(upload) if check is not None else []


def build_upload_checks(index: Index, ml: MLConfig) -> tuple[UploadChecks, LivePopular]:
    """The upload checks of ``[ml] upload_checks`` for ``index`` (typosquatting against its
    most depended-upon projects, suspicious content), and the popular list to keep current
    (chain :meth:`LivePopular.note_upload` to the index's ``on_upload``)."""
    from ..index._checks import UploadChecks
    from ..ml._content import ContentCheck

    popular = LivePopular(index, ml.typosquat_top)
    checks = UploadChecks([_LiveTyposquat(popular), ContentCheck()], action=ml.upload_checks)
    return checks, popular


# -- the scaling route ----------------------------------------------------------------------


def _is_admin(runtime: Any, principal: Any) -> bool:
    from ..auth import Resource, authorize

    if principal is None or not principal.authenticated:
        return False
    decision = authorize(
        principal,
        "index.admin",
        Resource(runtime.name),
        runtime.store.policy(),
        audit=runtime.audit,
    )
    return bool(decision.allowed)


async def scaling_route(
    tenant_ml: TenantML | None,
    runtime: Any,
    scope: Mapping[str, Any],
    send: Callable[[dict[str, Any]], Any],
    principal: Any,
    *,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Answer ``GET <tenant>/_/scaling`` with the hint as JSON for a tenant admin; False (the
    caller answers the uniform 404) when scaling is off or the caller is not an admin."""
    if tenant_ml is None or tenant_ml.advisor is None:
        return False
    if not await asyncio.to_thread(_is_admin, runtime, principal):
        return False
    method = scope.get("method")
    if method not in ("GET", "HEAD"):
        body = b'{"error":"method not allowed"}\n'
        status, extra = 405, [(b"allow", b"GET, HEAD")]
    else:
        hint = await asyncio.to_thread(tenant_ml.hint, clock())
        assert hint is not None
        doc = {"tenant": tenant_ml.tenant, **hint.to_json()}
        body = json.dumps(doc, sort_keys=True).encode() + b"\n"
        status, extra = 200, []
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
    return True


# -- metrics --------------------------------------------------------------------------------


class MLCollector:
    """Prometheus families of an observer, read when scraped: per tenant the requests
    observed / scored / over the threshold, alerts, and the scaling hint (gauges)."""

    def __init__(self, observer: MLObserver, *, clock: Callable[[], float] = time.time) -> None:
        self.observer = observer
        self.clock = clock

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = {
            name: CounterMetricFamily(f"registry_core_ml_{name}", text, labels=["tenant"])
            for name, text in (
                ("observed", "Requests handed to the ML layer."),
                ("scored", "Requests scored by the anomaly detector."),
                ("flagged", "Requests scored at or over the anomaly threshold."),
                ("alerts", "ml.anomaly audit events raised."),
            )
        }
        gauges = {
            name: GaugeMetricFamily(f"registry_core_ml_scaling_{name}", text, labels=["tenant"])
            for name, text in (
                ("workers", "Workers recommended for the next bucket."),
                ("instances", "Instances recommended for the next bucket."),
                ("expected_rps", "Forecast request rate of the next bucket."),
                ("upper_rps", "Upper-quantile forecast request rate of the next bucket."),
            )
        }
        now = self.clock()
        for name, tml in sorted(self.observer.tenants.items()):
            for key, value in tml.stats().items():
                counters[key].add_metric([name], value)
            hint = tml.hint(now)
            if hint is not None:
                for key in gauges:
                    gauges[key].add_metric([name], float(getattr(hint, key)))
        stats = self.observer.stats()
        dropped = CounterMetricFamily(
            "registry_core_ml_dropped", "Requests not scored: the ML queue was full."
        )
        dropped.add_metric([], stats["dropped"])
        yield from counters.values()
        yield from (g for g in gauges.values() if g.samples)
        yield dropped
