"""PredictionGateway: loads from the registry, hot swaps without dropping requests, HTTP API."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import httpx
import pytest

from registry_core.errors import InvalidArgumentError, ModelError, NotFoundError
from registry_core.index import Index
from registry_core.ml._artifact import ModelArtifact
from registry_core.ml._dense import DenseNet
from registry_core.ml._gateway import PredictionGateway
from registry_core.ml._registry import ModelRegistry
from registry_core.ml._trees import TreeEnsemble


def constant_trees(value: float) -> TreeEnsemble:
    """A one-leaf tree over two features: predicts ``value`` for every row."""
    return TreeEnsemble(
        tree_start=[0, 1],
        feature=[-1],
        threshold=[0.0],
        left=[0],
        right=[0],
        flags=[0],
        value=[value],
        n_features=2,
        feature_names=["a", "b"],
    )


def _art(model, kind="tree-ensemble") -> ModelArtifact:
    return ModelArtifact(kind=kind, payload=model.to_bytes(), feature_names=("a", "b"))


@pytest.fixture()
def registry(tmp_path: Path):
    (tmp_path / "store").mkdir()
    with Index(tmp_path / "store") as index:
        reg = ModelRegistry(index, state_dir=tmp_path / "state")
        for v in (1.0, 2.0, 3.0):  # version N predicts N
            reg.publish(_art(constant_trees(v)), name="m")
        reg.promote("m", 1)
        yield reg


def test_in_process_predict_and_swap(registry):
    gw = PredictionGateway(registry, models={"m": "production"}, clock=lambda: 123.0)
    assert not gw.ready
    with pytest.raises(ModelError, match="not loaded"):
        gw.predict("m", row=[0, 0])
    report = gw.refresh()
    assert report.swapped == {"m": ("", "1")} and not report.errors
    assert gw.ready
    out = gw.predict("m", rows=[[0, 1], [2, 3]])
    assert (out.version, out.result) == ("1", [1.0, 1.0])
    assert gw.predict("m", features={"a": 1.0}).result == [1.0]  # b missing -> NaN
    assert gw.refresh().swapped == {}  # nothing moved
    registry.promote("m", 3)
    assert gw.refresh().swapped == {"m": ("1", "3")}
    assert gw.predict("m", row=[0, 0]).result == [3.0]
    status = gw.status()[0]
    assert status["version"] == "3" and status["loaded_at"] == 123.0 and status["error"] is None
    with pytest.raises(NotFoundError):
        gw.predict("other", row=[0, 0])
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        gw.predict("m", row=[0, 0], rows=[[0, 0]])
    with pytest.raises(InvalidArgumentError, match="unknown features"):
        gw.predict("m", features={"zzz": 1})


def test_a_bad_version_keeps_the_old_one_serving(registry):
    gw = PredictionGateway(registry, models={"m": "production"})
    gw.refresh()
    v = registry.publish(ModelArtifact(kind="tree-ensemble", payload=b"garbage"), name="m")
    registry.promote("m", v.version)
    report = gw.refresh()
    assert "m" in report.errors and "ModelError" in report.errors["m"]
    assert gw.predict("m", row=[0, 0]).version == "1"
    assert gw.status()[0]["error"] == report.errors["m"]
    # an unknown kind is reported the same way; a fixed pointer recovers
    u = registry.publish(ModelArtifact(kind="no-such-kind", payload=b"x"), name="m")
    registry.promote("m", u.version)
    assert "no loader" in gw.refresh().errors["m"]
    registry.promote("m", 2)
    assert gw.refresh().swapped == {"m": ("1", "2")}
    assert gw.status()[0]["error"] is None


def test_custom_loader_and_dense_kind(registry):
    rng = __import__("numpy").random.default_rng(0)
    net = DenseNet(
        [
            (rng.normal(size=(2, 3)), rng.normal(size=3), "relu"),
            (rng.normal(size=(3, 1)), rng.normal(size=1), "sigmoid"),
        ],
        feature_names=["a", "b"],
    )
    d = registry.publish(_art(net, kind="dense-net"), name="d")
    registry.promote("d", d.version)
    registry.publish(ModelArtifact(kind="echo", payload=b"hello"), name="e")
    registry.promote("e", 1)

    class Echo:
        def __init__(self, payload: bytes) -> None:
            self.payload = payload

        def predict(self, text: str) -> dict:
            return {"echo": text, "payload": self.payload.decode()}

    gw = PredictionGateway(registry, models={"d": "production", "e": "production"})
    gw.register_loader("echo", Echo)
    assert gw.refresh().errors == {}
    x = [[0.5, -1.0]]
    assert gw.predict("d", rows=x).result[0] == pytest.approx(float(net.predict(x)[0]), rel=1e-5)
    assert (
        gw.predict("d", features={"a": 0.5, "b": -1.0}).result == gw.predict("d", row=x[0]).result
    )
    try:
        import ai_edge_litert  # noqa: F401

        assert type(gw.loaded("d").model.model).__name__ == "TFLiteModel"
    except ImportError:
        assert type(gw.loaded("d").model.model).__name__ == "DenseNet"
    assert gw.predict("e", text="hi").result == {"echo": "hi", "payload": "hello"}


def test_background_refresh_driven_by_an_injected_wait(registry):
    gw = PredictionGateway(registry, models={"m": "production"})
    gw.refresh()
    orders: queue.Queue[bool] = queue.Queue()
    waiting = threading.Semaphore(0)

    def wait(_seconds: float) -> bool:
        waiting.release()
        return orders.get()  # True: stop

    gw.start_refresh(30.0, wait=wait)
    waiting.acquire()
    registry.promote("m", 2)
    orders.put(False)  # one tick: refresh
    waiting.acquire()  # back in wait: the refresh is done
    assert gw.predict("m", row=[0, 0]).version == "2"
    orders.put(True)
    gw.stop_refresh()


@pytest.fixture()
def http_gateway(registry):
    from registry_core.server import start_server

    denied = threading.Event()
    asked: list = []

    def authorize(scope) -> bool:
        asked.append(scope["registry_core.ml.model"])
        return not denied.is_set()

    gw = PredictionGateway(
        registry,
        models={"m": "production", "missing": "production"},
        max_body=4096,
        authorize=authorize,
    )
    gw.asked = asked
    gw.refresh()
    handle = start_server(gw.asgi, tls=False)
    try:
        yield gw, handle.url(), denied
    finally:
        handle.stop()


def test_http_api(http_gateway):
    gw, url, denied = http_gateway
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/v1/models/m:predict", json={"rows": [[1, 2]]})
        assert r.status_code == 200 and r.headers["x-model-version"] == "1"
        assert r.json() == {"model": "m", "version": "1", "result": [1.0]}
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        assert models["m"]["version"] == "1" and models["m"]["sha256"]
        assert models["missing"]["version"] is None and models["missing"]["error"]
        assert c.get("/readyz").status_code == 503  # "missing" has no version
        cases = [
            (c.post("/v1/models/m:predict", content=b"{nope"), 400),
            (c.post("/v1/models/m:predict", content=b"[1]"), 400),
            (c.post("/v1/models/m:predict", json={"row": [1]}), 400),
            (c.post("/v1/models/m:predict", json={"bogus": 1}), 400),
            (c.post("/v1/models/zz:predict", json={}), 404),
            (c.post("/v1/models/missing:predict", json={"row": [1, 2]}), 503),
            (c.get("/v1/models/m:predict"), 405),
            (c.get("/elsewhere"), 404),
        ]
        with httpx.Client(base_url=url, timeout=30) as once:  # a 413 closes its connection
            too_big = once.post("/v1/models/m:predict", content=b"x" * 5000)
        assert too_big.headers["connection"] == "close"
        cases.append((too_big, 413))
        for response, status in cases:
            assert response.status_code == status, (response.request.url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == status
        denied.set()
        assert c.post("/v1/models/m:predict", json={"row": [1, 2]}).status_code == 403
        assert c.get("/v1/models").status_code == 403
        assert c.get("/readyz").status_code == 503  # health is not behind authorize
    assert gw.asked[:2] == ["m", None] and "zz" in gw.asked


def test_concurrent_requests_during_swaps_are_all_answered_by_one_version(http_gateway):
    gw, url, _ = http_gateway
    registry = gw.registry
    stop = threading.Event()
    results: list[tuple[int, str, list]] = []
    grew = threading.Condition()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/v1/models/m:predict", json={"row": [0.0, 1.0]})
                body = r.json()
                with grew:
                    results.append((r.status_code, r.headers.get("x-model-version"), body))
                    grew.notify_all()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    swaps = 0
    try:
        for i in range(30):
            before = len(results)
            registry.promote("m", 1 + (i % 3))
            swaps += len(gw.refresh().swapped)
            with grew:  # let requests overlap this version (no sleeping: wait for answers)
                assert grew.wait_for(lambda b=before: len(results) >= b + 4, timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert swaps >= 20
    assert len(results) > 100
    for status, header, body in results:
        assert status == 200, body
        # the version header, the body's version and the value it predicted all agree
        assert header == body["version"] == str(int(body["result"][0]))


def test_metrics_are_counted(registry):
    prometheus_client = pytest.importorskip("prometheus_client")
    import asyncio

    reg = prometheus_client.CollectorRegistry()
    gw = PredictionGateway(registry, models={"m": "production"}, metrics=reg)
    gw.refresh()

    async def call(body: bytes) -> int:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/models/m:predict", "headers": []}
        await gw.asgi(scope, receive, send)
        return sent[0]["status"]

    assert asyncio.run(call(json.dumps({"row": [1, 2]}).encode())) == 200
    assert asyncio.run(call(b"{")) == 400
    value = reg.get_sample_value
    assert value("registry_core_ml_predictions_total", {"model": "m", "status": "200"}) == 1
    assert value("registry_core_ml_predictions_total", {"model": "m", "status": "400"}) == 1
    assert value("registry_core_ml_model_loads_total", {"outcome": "ok"}) == 1
    assert value("registry_core_ml_prediction_seconds_count", {"model": "m"}) == 2


def test_compiled_tree_loader(registry):
    import shutil

    from registry_core.ml._gateway import load_compiled_trees

    gw = PredictionGateway(registry, models={"m": "production"})
    gw.register_loader("tree-ensemble", load_compiled_trees)
    assert gw.refresh().errors == {}
    expected = "CompiledTrees" if shutil.which("cc") else "TreeEnsemble"
    assert type(gw.loaded("m").model.model).__name__ == expected
    assert gw.predict("m", rows=[[0, 1], [1, 0]]).result == [1.0, 1.0]
    assert gw.predict("m", row=[0, 1]).result == [1.0]
