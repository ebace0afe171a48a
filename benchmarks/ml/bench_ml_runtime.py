"""Model runtime, sizes and prediction gateway latency (issue 16: #70, #72, #73).

One run, side by side, on one task: the next-download examples (H3's feature code) of a
generated trace (``registry_core.ml.traces.generate``; its ``source`` is printed), held out by
time. Two model families are trained on the same rows: gradient-boosted trees (LightGBM, served
by our numpy/pure-Python :class:`TreeEnsemble`, and, when ``tl2cgen`` is installed, the same
trees compiled to C by treelite/tl2cgen) and a small MLP (scikit-learn, served by our numpy
:class:`DenseNet` and by LiteRT from the .tflite file we write). Printed: quality on the held-out
days (ROC AUC, log loss, Brier), model file sizes, single-row latency p50/p99 and batch
throughput per runtime, then the gateway: in process, over HTTP/1.1 on loopback (hypercorn,
h11, one keep-alive http.client connection), and over HTTP while another thread hot-swaps the
production version as fast as it can. Nothing here is asserted; the tests assert behaviour.

    .venv/bin/python benchmarks/ml/bench_ml_runtime.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DAY = 86400.0


def _pct(ns: Sequence[int], q: float) -> float:
    return float(np.percentile(np.asarray(ns, dtype=np.float64), q)) / 1000.0  # µs


def _time_calls(fn: Callable[[Any], Any], inputs: Sequence[Any], warm: int = 50) -> list[int]:
    for x in inputs[:warm]:
        fn(x)
    out = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for x in inputs:
            t0 = clock()
            fn(x)
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def _throughput(fn: Callable[[Any], Any], X: np.ndarray, repeat: int) -> float:
    fn(X)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(X)
    return repeat * len(X) / (time.perf_counter() - t0)


def _data(quick: bool, seed: int) -> tuple[str, Any, Any, Any, Any]:
    from registry_core.ml._predict import make_examples
    from registry_core.ml._train import split_examples
    from registry_core.ml.traces import generate

    trace = generate(seed=seed, days=8 if quick else 14, scale=0.5 if quick else 1.0)
    data = make_examples(trace, horizon_s=1 * DAY)
    fit, cal, test, _cut = split_examples(data, trace.requests[0].time)
    return trace.source, fit, cal, test, data


def _train_gbdt(fit: Any, cal: Any, seed: int) -> Any:
    import lightgbm

    params = {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    train = lightgbm.Dataset(fit.X, fit.y)
    valid = lightgbm.Dataset(cal.X, cal.y, reference=train)
    return lightgbm.train(
        params,
        train,
        num_boost_round=300,
        valid_sets=[valid],
        callbacks=[lightgbm.early_stopping(30, verbose=False)],
    )


def _train_mlp(fit: Any, seed: int) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(32, 16),
            alpha=1e-3,
            max_iter=200,
            early_stopping=True,
            random_state=seed,
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(fit.X, fit.y)
    return pipe


def _quality(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return roc_auc_score(y, p), log_loss(y, p), brier_score_loss(y, p)


def _tl2cgen(booster: Any, workdir: Path) -> tuple[Any, int] | None:
    try:
        import tl2cgen
        import treelite
    except ImportError:
        return None
    model = treelite.frontend.from_lightgbm(booster)
    lib = workdir / "trees.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), params={}, verbose=False)
    predictor = tl2cgen.Predictor(str(lib), nthread=1)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.ravel(predictor.predict(tl2cgen.DMatrix(np.asarray(X, dtype=np.float64))))

    return predict, lib.stat().st_size


def _runtime_tables(quick: bool, seed: int, workdir: Path) -> tuple[str, dict[str, Any]]:
    from registry_core.errors import ModelError
    from registry_core.ml._dense import DenseNet
    from registry_core.ml._tflite import TFLiteModel, to_tflite
    from registry_core.ml._trees import CompiledTrees, TreeEnsemble

    source, fit, cal, test, data = _data(quick, seed)
    booster = _train_gbdt(fit, cal, seed)
    trees = TreeEnsemble.from_lightgbm(booster.dump_model(num_iteration=booster.best_iteration))
    mlp = _train_mlp(fit, seed)
    net = DenseNet.from_sklearn(mlp)
    tfl_bytes = to_tflite(net)
    tfl = TFLiteModel(tfl_bytes)
    compiled = _tl2cgen(booster, workdir)

    X = test.X
    runtimes: list[tuple[str, str, int | None, Callable[[Any], Any], Callable[[Any], Any]]] = [
        # (name, family, size, single-row fn(row list), batch fn(ndarray))
        (
            "LightGBM Booster (training lib)",
            "gbdt",
            len(booster.model_to_string().encode()),
            lambda r: booster.predict(np.asarray([r]), num_iteration=booster.best_iteration),
            lambda B: booster.predict(B, num_iteration=booster.best_iteration),
        ),
        (
            "TreeEnsemble predict_one (pure Python)",
            "gbdt",
            len(trees.to_bytes()),
            trees.predict_one,
            trees.predict,
        ),
        (
            "TreeEnsemble predict (numpy)",
            "gbdt",
            len(trees.to_bytes()),
            lambda r: trees.predict([r]),
            trees.predict,
        ),
    ]
    try:
        ours_c = CompiledTrees(trees)
    except ModelError as exc:  # no C compiler here
        ours_c = None
        print(f"CompiledTrees unavailable: {exc}", file=sys.stderr)
    if ours_c is not None:
        runtimes.append(
            (
                "CompiledTrees (our C codegen, ctypes)",
                "gbdt",
                ours_c.size,
                ours_c.predict_one,
                ours_c.predict,
            )
        )
    if compiled is not None:
        fn, so_size = compiled
        runtimes.append(
            ("treelite/tl2cgen compiled C", "gbdt", so_size, lambda r: fn(np.asarray([r])), fn)
        )
    runtimes += [
        ("DenseNet (numpy)", "mlp", len(net.to_bytes()), net.predict_one, net.predict),
        ("TFLite on ai-edge-litert", "mlp", len(tfl_bytes), tfl.predict_one, tfl.predict),
    ]

    ref = {"gbdt": trees.predict(X), "mlp": net.predict(X)}
    n_single = 500 if quick else 3000
    rng = np.random.default_rng(seed)
    rows = [X[i].tolist() for i in rng.integers(0, len(X), n_single)]
    batch = X[rng.integers(0, len(X), 1024)]
    lines = [
        f"Task: next-download (1-day horizon) on trace `{source}`; "
        f"{len(data.y)} examples: {len(fit.y)} fit, {len(cal.y)} calibration/early-stopping, "
        f"{len(test.y)} held-out test (later time), positive rate {test.y.mean():.3f}; "
        f"{X.shape[1]} features. GBDT: {trees.n_trees} trees, {len(trees.feature)} nodes; "
        f"MLP: {net!r}.",
        "",
        "| runtime | model | file bytes | AUC | log loss | Brier | max abs diff vs ours "
        "| 1 row p50 µs | 1 row p99 µs | batch 1024 rows/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, family, size, one, many in runtimes:
        p = np.ravel(many(X))
        auc, ll, brier = _quality(test.y, p)
        diff = float(np.max(np.abs(p - ref[family])))
        ns = _time_calls(one, rows)
        tput = _throughput(many, batch, 5 if quick else 30)
        lines.append(
            f"| {name} | {family} | {size if size is not None else '-'} | {auc:.4f} | {ll:.4f} "
            f"| {brier:.4f} | {diff:.1e} | {_pct(ns, 50):.1f} | {_pct(ns, 99):.1f} "
            f"| {tput:,.0f} |"
        )
    if compiled is None:
        lines.append("")
        lines.append("treelite/tl2cgen not installed: the compiled-C row is left out.")
    lines.append("")
    lines.append(
        f"TFLite file {len(tfl_bytes)} bytes (budget 2 MB = {2 * 1024 * 1024}); "
        f"TreeEnsemble {len(trees.to_bytes())} bytes."
    )
    return "\n".join(lines), {"trees": trees, "net": net, "rows": rows}


async def _minimal_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
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
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def _gateway_table(quick: bool, seed: int, workdir: Path, models: dict[str, Any]) -> str:
    import http.client
    import json

    from registry_core.index import Index
    from registry_core.ml._artifact import ModelArtifact
    from registry_core.ml._gateway import PredictionGateway, load_compiled_trees
    from registry_core.ml._registry import ModelRegistry
    from registry_core.server import start_server

    trees, net, rows = models["trees"], models["net"], models["rows"]
    store = workdir / "store"
    store.mkdir()
    index = Index(store)
    registry = ModelRegistry(index, state_dir=workdir / "state")
    v_trees = registry.publish(
        ModelArtifact(kind="tree-ensemble", payload=trees.to_bytes(), created=1.0), name="nd"
    )
    v_net = registry.publish(
        ModelArtifact(kind="dense-net", payload=net.to_bytes(), created=1.0), name="nd"
    )
    registry.promote("nd", v_trees.version)
    gw = PredictionGateway(registry, models={"nd": "production"})
    gw.refresh()
    n = 500 if quick else 3000
    lines = [
        "| gateway path | model | requests | p50 µs | p99 µs | max µs | non-200 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    inproc = _time_calls(lambda r: gw.predict("nd", row=r), rows[:n])
    lines.append(
        f"| in process `predict()` | trees v{v_trees.version} | {len(inproc)} "
        f"| {_pct(inproc, 50):.1f} | {_pct(inproc, 99):.1f} | {max(inproc) / 1000:.1f} | 0 |"
    )
    gw_c = PredictionGateway(registry, models={"nd": "production"})
    gw_c.register_loader("tree-ensemble", load_compiled_trees)
    gw_c.refresh()
    kind_c = type(gw_c.loaded("nd").model.model).__name__  # type: ignore[union-attr]
    inproc_c = _time_calls(lambda r: gw_c.predict("nd", row=r), rows[:n])
    lines.append(
        f"| in process `predict()`, `load_compiled_trees` ({kind_c}) | trees v{v_trees.version} "
        f"| {len(inproc_c)} | {_pct(inproc_c, 50):.1f} | {_pct(inproc_c, 99):.1f} "
        f"| {max(inproc_c) / 1000:.1f} | 0 |"
    )
    # the floor: a minimal ASGI app answering "{}" on the same server and client
    floor_handle = start_server(_minimal_app, tls=False)
    try:
        floor_conn = http.client.HTTPConnection(floor_handle.host, floor_handle.port, timeout=30)

        def floor_call(r: list[float]) -> None:
            floor_conn.request("POST", "/", json.dumps({"row": r}).encode())
            floor_conn.getresponse().read()

        floor = _time_calls(floor_call, rows[:n])
        floor_conn.close()
    finally:
        floor_handle.stop()
    lines.append(
        f"| baseline: minimal ASGI app answering `{{}}`, same server and client | - "
        f"| {len(floor)} | {_pct(floor, 50):.1f} | {_pct(floor, 99):.1f} "
        f"| {max(floor) / 1000:.1f} | 0 |"
    )
    handle = start_server(gw.asgi, tls=False)
    try:
        conn = http.client.HTTPConnection(handle.host, handle.port, timeout=30)
        bad = [0]

        def call(r: list[float]) -> None:
            body = json.dumps({"row": r}).encode()
            conn.request(
                "POST", "/v1/models/nd:predict", body, {"content-type": "application/json"}
            )
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                bad[0] += 1

        http_ns = _time_calls(call, rows[:n])
        lines.append(
            f"| HTTP/1.1 loopback (hypercorn h11, http.client keep-alive) | trees "
            f"| {len(http_ns)} | {_pct(http_ns, 50):.1f} | {_pct(http_ns, 99):.1f} "
            f"| {max(http_ns) / 1000:.1f} | {bad[0]} |"
        )
        stop = threading.Event()
        swaps = [0]

        def swapper() -> None:
            versions = [v_net.version, v_trees.version]
            while not stop.is_set():
                registry.promote("nd", versions[swaps[0] % 2])
                swaps[0] += len(gw.refresh().swapped)

        thread = threading.Thread(target=swapper)
        bad[0] = 0
        thread.start()
        try:
            during = _time_calls(call, rows[:n], warm=0)
        finally:
            stop.set()
            thread.join()
        conn.close()
        lines.append(
            f"| HTTP/1.1 loopback during hot swaps ({swaps[0]} swaps, trees <-> MLP) "
            f"| both | {len(during)} | {_pct(during, 50):.1f} | {_pct(during, 99):.1f} "
            f"| {max(during) / 1000:.1f} | {bad[0]} |"
        )
    finally:
        handle.stop()
        index.close()
    lines.append("")
    lines.append(
        "Client and server share this machine's cores (the swapping thread too); the HTTP "
        "figures include the stdlib client's own per-request cost. "
        f"Load average when the run ended: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs."
    )
    return "\n".join(lines)


def run(quick: bool = False, seed: int = 0) -> str:
    """The runtime and gateway tables as markdown."""
    with tempfile.TemporaryDirectory(prefix="bench-ml-runtime-") as tmp:
        workdir = Path(tmp)
        runtime, models = _runtime_tables(quick, seed, workdir)
        gateway = _gateway_table(quick, seed, workdir, models)
    out = io.StringIO()
    out.write("### Model runtimes (#70): quality, size, latency\n\n")
    out.write(runtime + "\n\n")
    out.write("### Prediction gateway (#73)\n\n")
    out.write(gateway + "\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller trace, fewer calls")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(run(quick=args.quick, seed=args.seed))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    main()
