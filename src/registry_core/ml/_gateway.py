"""Prediction gateway (#73): models from the registry, served in process and over ASGI.

:class:`PredictionGateway` keeps one loaded model per configured name (``models={name:
stage}``), taken from a :class:`~.ModelRegistry`. A model is turned into something callable
by the loader registered for its artifact's ``kind`` (``register_loader(kind, load)``,
``load(payload) -> model``); the gateway calls ``model.predict(**arguments)``. Built in:
``tree-ensemble`` (:class:`~.TreeEnsemble`; :func:`load_compiled_trees` compiles them to C),
``dense-net`` (a :class:`~.DenseNet`, served on LiteRT when ai-edge-litert is installed, else
numpy) and ``tflite`` (a .tflite payload on LiteRT), each taking ``rows=[[...], ...]``,
``row=[...]`` or ``features={name: value}`` and returning a list of numbers.

Hot swap: :meth:`PredictionGateway.refresh` re-reads the stage pointers; for each that moved
it loads and checks the new version completely, then replaces the table of loaded models in one
assignment. A request reads that table once, so it is answered by exactly one version (named
in its response) and none is dropped; a version that fails to load or check is reported and the
old one keeps serving. :meth:`start_refresh` does this every N seconds on a thread.

HTTP (:attr:`PredictionGateway.asgi`), JSON in and out, errors as RFC 9457 problem details:

- ``POST /v1/models/{name}:predict`` with a JSON object of arguments: 200 ``{"model", "version",
  "result"}`` and an ``X-Model-Version`` header; 400 bad JSON or arguments, 404 unknown model,
  413 body over ``max_body``, 503 not loaded yet;
- ``GET /v1/models``: name, stage, version, kind, sha256, loaded_at and last error of each;
- ``GET /readyz``: 200 when every configured model is loaded, else 503.

``authorize(scope) -> bool``, when given, is asked for every ``/v1/`` request with the ASGI
scope (where the server's auth middleware put the principal; ``scope[MODEL_KEY]`` names the
model, None for the list); False (or an exception) answers 403.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, ModelError, NotFoundError, RegistryCoreError

if TYPE_CHECKING:
    from ._registry import ModelRegistry

__all__ = [
    "MODEL_KEY",
    "GatewayResult",
    "LoadedModel",
    "PredictionGateway",
    "RefreshReport",
    "RowModel",
    "load_compiled_trees",
]

log = logging.getLogger("registry_core.ml.gateway")

Loader = Callable[[bytes], Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_PREFIX = "/v1/models"
#: Scope key naming the model a request is for (None: the model list), set before authorize().
MODEL_KEY = "registry_core.ml.model"
_MAX_ROWS = 100_000


@dataclass(frozen=True)
class LoadedModel:
    """A model being served: which version, from which stage, since when."""

    name: str
    stage: str
    version: str
    kind: str
    sha256: str
    model: Any
    loaded_at: float


@dataclass(frozen=True)
class GatewayResult:
    """One prediction and the model version that made it."""

    name: str
    version: str
    result: Any


@dataclass(frozen=True)
class RefreshReport:
    """What :meth:`PredictionGateway.refresh` did: ``swapped`` ``{name: (old, new)}`` (old ""
    on a first load), ``errors`` ``{name: message}`` (the previous version, if any, serves on)."""

    swapped: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)


# -- built-in loaders -----------------------------------------------------------------------


class RowModel:
    """Adapter giving a row model (trees, dense, tflite) the gateway's keyword interface."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.feature_names: tuple[str, ...] = tuple(getattr(model, "feature_names", ()))
        self.n_features = int(model.n_features)
        self._one = getattr(model, "predict_one", None) if model.n_outputs == 1 else None

    def _row_of(self, features: Mapping[str, Any]) -> list[float]:
        if not isinstance(features, Mapping):
            raise InvalidArgumentError("features must be an object of name: number")
        unknown = set(features) - set(self.feature_names)
        if unknown:
            raise InvalidArgumentError(f"unknown features: {', '.join(sorted(unknown)[:5])}")
        return [_number(features.get(n, math.nan)) for n in self.feature_names]

    def predict(
        self,
        rows: Sequence[Sequence[Any]] | None = None,
        row: Sequence[Any] | None = None,
        features: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Any]:
        given = [a is not None for a in (rows, row, features)]
        if sum(given) != 1:
            raise InvalidArgumentError("give exactly one of rows, row, features")
        if features is not None:
            if isinstance(features, Mapping):
                table = [self._row_of(features)]
            else:
                table = [self._row_of(f) for f in _bounded(features)]
        elif row is not None:
            table = [[_number(v) for v in _bounded(row)]]
        else:
            assert rows is not None
            table = [[_number(v) for v in _bounded(r)] for r in _bounded(rows)]
        for r in table:
            if len(r) != self.n_features:
                raise InvalidArgumentError(
                    f"a row has {len(r)} values, the model takes " f"{self.n_features}"
                )
        if len(table) == 1 and self._one is not None:
            return [self._one(table[0])]
        import numpy as np

        out = self.model.predict(np.asarray(table, dtype=np.float64))
        return out.tolist()  # type: ignore[no-any-return,unused-ignore]


def _bounded(seq: Any) -> Sequence[Any]:
    if not isinstance(seq, (list, tuple)):
        raise InvalidArgumentError("expected a list")
    if len(seq) > _MAX_ROWS:
        raise InvalidArgumentError(f"at most {_MAX_ROWS} rows or values")
    return seq


def _number(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidArgumentError(f"feature values must be numbers, not {type(v).__name__}")
    return float(v)


def _load_trees(payload: bytes) -> RowModel:
    from ._trees import TreeEnsemble

    return RowModel(TreeEnsemble.from_bytes(payload))


def load_compiled_trees(payload: bytes) -> RowModel:
    """A ``tree-ensemble`` loader that compiles the trees to C (:class:`~.CompiledTrees`),
    falling back to the numpy/pure-Python runtime when there is no compiler or the model is
    multi-output: ``gateway.register_loader("tree-ensemble", load_compiled_trees)``."""
    from ._trees import CompiledTrees, TreeEnsemble

    trees = TreeEnsemble.from_bytes(payload)
    try:
        return RowModel(CompiledTrees(trees))
    except ModelError as exc:
        log.warning("serving trees without compiling them: %s", exc)
        return RowModel(trees)


def _load_dense(payload: bytes) -> RowModel:
    """A DenseNet, run on LiteRT from the .tflite we write when ai-edge-litert is installed
    (the faster runtime, measured in bench_ml_runtime), checked against numpy on probe rows;
    on numpy otherwise."""
    import numpy as np

    from ._dense import DenseNet

    net = DenseNet.from_bytes(payload)
    try:
        from ._tflite import TFLiteModel, to_tflite

        lite = TFLiteModel(to_tflite(net))
        probe = np.random.default_rng(0).normal(size=(8, net.n_features))
        if np.allclose(lite.predict(probe), net.predict(probe), rtol=1e-4, atol=1e-5):
            lite.feature_names = net.feature_names
            return RowModel(lite)
        log.warning("TFLite disagrees with numpy on this DenseNet: serving it on numpy")
    except ImportError:
        pass
    except ModelError as exc:
        log.warning("DenseNet not served on TFLite (%s): serving it on numpy", exc)
    return RowModel(net)


def _load_tflite(payload: bytes) -> RowModel:
    from ._tflite import TFLiteModel

    return RowModel(TFLiteModel(payload))


def _jsonable(value: Any) -> Any:
    """Plain JSON values from numpy arrays and scalars, dataclasses, mappings, sequences."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return _jsonable(tolist())
    raise ModelError(f"the model returned a {type(value).__name__}, which is not JSON")


# -- the gateway ----------------------------------------------------------------------------


class PredictionGateway:
    """Serve the models ``models`` (``{name: stage}``) of ``registry``; see the module doc.

    ``loaders``: extra ``{kind: load(payload) -> model}`` (also :meth:`register_loader`).
    ``max_body``: largest request body in bytes. ``clock``: seconds since the epoch for
    ``loaded_at``. ``offload``: run ``predict`` on a worker thread instead of the event loop
    (for models slower than a millisecond). ``metrics``: a ``prometheus_client``
    CollectorRegistry for request, error and swap counters and a latency histogram.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        models: Mapping[str, str],
        loaders: Mapping[str, Loader] | None = None,
        authorize: Callable[[Scope], bool] | None = None,
        max_body: int = 1 << 20,
        clock: Callable[[], float] = time.time,
        offload: bool = False,
        metrics: Any = None,
    ) -> None:
        if not models:
            raise InvalidArgumentError("a gateway needs at least one model to serve")
        if not isinstance(max_body, int) or max_body < 2:
            raise InvalidArgumentError("max_body must be an int >= 2")
        self.registry = registry
        self.models: dict[str, str] = dict(models)
        self._loaders: dict[str, Loader] = {
            "tree-ensemble": _load_trees,
            "dense-net": _load_dense,
            "tflite": _load_tflite,
        }
        for kind, load in (loaders or {}).items():
            self.register_loader(kind, load)
        self.authorize = authorize
        self.max_body = max_body
        self._clock = clock
        self.offload = offload
        self._loaded: dict[str, LoadedModel] = {}  # replaced whole, never mutated
        self._errors: dict[str, str] = {}
        self._failed: dict[str, tuple[str, str]] = {}  # name -> the version that failed
        self._refresh_lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._metrics = _Metrics(metrics) if metrics is not None else None

    def register_loader(self, kind: str, load: Loader) -> None:
        """Serve artifacts of ``kind`` with ``load(payload) -> model`` (replaces a previous)."""
        if not isinstance(kind, str) or not kind or not callable(load):
            raise InvalidArgumentError("register_loader(kind: str, load: callable)")
        self._loaders[kind] = load

    # -- loading --------------------------------------------------------------------------

    def refresh(self) -> RefreshReport:
        """Load every model whose stage pointer moved (or that is not loaded), then swap them
        in at once. Errors are reported and logged; the versions serving keep serving."""
        with self._refresh_lock:
            current = self._loaded
            fresh: dict[str, LoadedModel] = {}
            errors: dict[str, str] = {}
            for name, stage in self.models.items():
                pointer = None
                try:
                    pointer = self.registry.current(name, stage)
                    if pointer is None:
                        raise NotFoundError(f"model {name} has no version in stage {stage}")
                    have = current.get(name)
                    key = (pointer.version, pointer.artifact_sha256)
                    if have is not None and (have.version, have.sha256) == key:
                        continue
                    if self._failed.get(name) == key:  # same broken version: not again
                        errors[name] = self._errors.get(name, "failed to load")
                        continue
                    artifact = self.registry.load_version(name, pointer.version)
                    load = self._loaders.get(artifact.kind)
                    if load is None:
                        raise ModelError(
                            f"no loader for model kind {artifact.kind!r} (register_loader)"
                        )
                    model = load(artifact.payload)
                    if not callable(getattr(model, "predict", None)):
                        raise ModelError(f"the {artifact.kind} loader returned no predict()")
                    fresh[name] = LoadedModel(
                        name=name,
                        stage=stage,
                        version=artifact.version,
                        kind=artifact.kind,
                        sha256=pointer.artifact_sha256,
                        model=model,
                        loaded_at=self._clock(),
                    )
                except Exception as exc:  # reported, never raised: the old version serves on
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    if pointer is not None:
                        self._failed[name] = (pointer.version, pointer.artifact_sha256)
                    log.warning("model %s (%s) not loaded: %s", name, stage, errors[name])
            if fresh:
                self._loaded = {**current, **fresh}  # one assignment: the swap
            self._errors = errors
            for name in fresh:
                self._failed.pop(name, None)
            swapped = {
                n: (current[n].version if n in current else "", m.version) for n, m in fresh.items()
            }
            if self._metrics is not None:
                self._metrics.swaps(len(fresh), len(errors))
            return RefreshReport(swapped=swapped, errors=errors)

    def start_refresh(
        self, interval_s: float, *, wait: Callable[[float], bool] | None = None
    ) -> threading.Thread:
        """Call :meth:`refresh` every ``interval_s`` seconds on a daemon thread until
        :meth:`stop_refresh`. ``wait(seconds) -> stop?`` replaces the pause (tests drive it)."""
        if not interval_s > 0:
            raise InvalidArgumentError("interval_s must be > 0")
        if self._thread is not None and self._thread.is_alive():
            raise InvalidArgumentError("the refresh thread is already running")
        stop = threading.Event()
        pause = wait if wait is not None else stop.wait

        def loop() -> None:
            while not stop.is_set():
                if pause(interval_s) or stop.is_set():
                    return
                try:
                    self.refresh()
                except Exception:  # pragma: no cover - refresh reports, it does not raise
                    log.exception("model refresh failed")

        self._stop = stop
        self._thread = threading.Thread(target=loop, name="model-refresh", daemon=True)
        self._thread.start()
        return self._thread

    def stop_refresh(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._stop = self._thread = None

    # -- serving --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        loaded = self._loaded
        return all(name in loaded for name in self.models)

    def loaded(self, name: str) -> LoadedModel | None:
        return self._loaded.get(name)

    def status(self) -> list[dict[str, Any]]:
        """One entry per configured model (what ``GET /v1/models`` answers)."""
        loaded, errors = self._loaded, self._errors
        out = []
        for name, stage in sorted(self.models.items()):
            m = loaded.get(name)
            out.append(
                {
                    "name": name,
                    "stage": stage,
                    "version": m.version if m else None,
                    "kind": m.kind if m else None,
                    "sha256": m.sha256 if m else None,
                    "loaded_at": m.loaded_at if m else None,
                    "error": errors.get(name),
                }
            )
        return out

    def predict(self, name: str, /, **arguments: Any) -> GatewayResult:
        """``model.predict(**arguments)`` on the version of ``name`` loaded now.

        NotFoundError for a name not served; ModelError when it is not loaded (yet)."""
        entry = self._loaded.get(name)  # read once: one version answers
        if entry is None:
            if name not in self.models:
                raise NotFoundError(f"no model {name!r} is served here")
            raise ModelError(f"model {name} is not loaded: {self._errors.get(name, 'not yet')}")
        return GatewayResult(name, entry.version, entry.model.predict(**arguments))

    # -- ASGI -----------------------------------------------------------------------------

    @property
    def asgi(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        return self._app

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        if path == "/readyz":
            ok = self.ready
            await _send_json(send, 200 if ok else 503, {"ready": ok})
            return
        if not path.startswith(_PREFIX):
            await _refuse(
                scope, receive, send, self.max_body, 404, "Not Found", f"no route {path[:200]}"
            )
            return
        if self.authorize is not None:
            rest = path[len(_PREFIX) + 1 :]
            scope[MODEL_KEY] = rest[: -len(":predict")] if rest.endswith(":predict") else None
            try:
                allowed = bool(self.authorize(scope))
            except Exception:
                log.exception("authorize hook failed")
                allowed = False
            if not allowed:
                await _refuse(
                    scope,
                    receive,
                    send,
                    self.max_body,
                    403,
                    "Forbidden",
                    "not allowed to read predictions",
                )
                return
        if path in (_PREFIX, _PREFIX + "/"):
            if method != "GET":
                await _refuse(
                    scope,
                    receive,
                    send,
                    self.max_body,
                    405,
                    "Method Not Allowed",
                    "use GET",
                    allow="GET",
                )
                return
            await _send_json(send, 200, {"models": self.status()})
            return
        rest = path[len(_PREFIX) + 1 :]
        if not rest.endswith(":predict") or "/" in rest:
            await _refuse(
                scope, receive, send, self.max_body, 404, "Not Found", f"no route {path[:200]}"
            )
            return
        if method != "POST":
            await _problem(send, 405, "Method Not Allowed", "use POST", allow="POST")
            return
        await self._predict_http(rest[: -len(":predict")], scope, receive, send)

    async def _predict_http(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 200
        try:
            if name not in self.models:
                status = 404
                await _refuse(
                    scope,
                    receive,
                    send,
                    self.max_body,
                    404,
                    "Not Found",
                    f"no model {name[:100]!r} is served here",
                )
                return
            body = await _read_body(scope, receive, self.max_body)
            if body is None:
                status = 413
                # the unread body makes the connection unusable: say so, so clients reconnect
                await _problem(
                    send,
                    413,
                    "Content Too Large",
                    f"the body is over {self.max_body} bytes",
                    connection="close",
                )
                return
            try:
                arguments = json.loads(body) if body else {}
            except (ValueError, RecursionError):
                status = 400
                await _problem(send, 400, "Bad Request", "the body is not JSON")
                return
            if not isinstance(arguments, dict):
                status = 400
                await _problem(send, 400, "Bad Request", "the body must be a JSON object")
                return
            entry = self._loaded.get(name)  # read once: this version answers
            if entry is None:
                status = 503
                await _problem(
                    send,
                    503,
                    "Service Unavailable",
                    f"model {name} is not loaded: {self._errors.get(name, 'not yet')}",
                    retry_after="1",
                )
                return
            try:
                if self.offload:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(
                        None, lambda: entry.model.predict(**arguments)
                    )
                else:
                    result = entry.model.predict(**arguments)
                payload = {"model": name, "version": entry.version, "result": _jsonable(result)}
            except (TypeError, ValueError, RegistryCoreError) as exc:
                status = 400
                await _problem(
                    send, 400, "Bad Request", str(exc)[:500], model_version=entry.version
                )
                return
            await _send_json(send, 200, payload, model_version=entry.version)
        finally:
            if self._metrics is not None:
                self._metrics.request(name if name in self.models else "", status, started)


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    limit: int,
    status: int,
    title: str,
    detail: str,
    **extra: str,
) -> None:
    """A problem answer to a request whose body is not used: the body is read first (up to
    ``limit``) so the connection stays usable; a larger one gets ``Connection: close``."""
    if await _read_body(scope, receive, limit) is None:
        extra["connection"] = "close"
    await _problem(send, status, title, detail, **extra)


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is (or announces to be) over ``limit``."""
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(
    send: Send,
    status: int,
    doc: Any,
    *,
    content_type: bytes = b"application/json",
    model_version: str | None = None,
    allow: str | None = None,
    retry_after: str | None = None,
    connection: str | None = None,
) -> None:
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if model_version is not None:
        headers.append((b"x-model-version", model_version.encode()))
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    if connection is not None:
        headers.append((b"connection", connection.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _problem(send: Send, status: int, title: str, detail: str, **extra: str) -> None:
    doc = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    await _send_json(send, status, doc, content_type=b"application/problem+json", **extra)


class _Metrics:
    """Prometheus counters and a latency histogram on a registry passed in."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self._requests = Counter(
            "registry_core_ml_predictions",
            "Prediction requests answered over HTTP, by model and status.",
            ["model", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "registry_core_ml_prediction_seconds",
            "Time to answer a prediction request (body read to response sent).",
            ["model"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=registry,
        )
        self._swaps = Counter(
            "registry_core_ml_model_loads",
            "Model versions loaded by refresh, by outcome.",
            ["outcome"],
            registry=registry,
        )

    def request(self, model: str, status: int, started: float) -> None:
        self._requests.labels(model, str(status)).inc()
        self._latency.labels(model).observe(time.perf_counter() - started)

    def swaps(self, ok: int, failed: int) -> None:
        if ok:
            self._swaps.labels("ok").inc(ok)
        if failed:
            self._swaps.labels("failed").inc(failed)
