"""The server's precompute_bases seam with PredictivePrecompute: after an upload over HTTP the
patch computed is from the version clients hold and will upgrade from (not the newest older
release, which is what the default picks); without a model the default is unchanged."""

from __future__ import annotations

import hashlib

import httpx
import numpy as np
import pytest

from _packages import build_project
from registry_core.index import Index
from registry_core.ml._calibrate import Calibrator
from registry_core.ml._dense import DenseNet
from registry_core.ml._features import FEATURE_NAMES, FeatureExtractor
from registry_core.ml._predict import PredictivePrecompute, Predictor
from registry_core.ml.traces import Catalogue, Release, Request
from registry_core.server import IndexApp, RegistryApp, start_server
from registry_core.wire import etag_for

VERSIONS = ("1.0", "1.1", "1.2", "1.3")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built-predict")
    return {v: build_project(root, "Demo_Pkg", v, payload_kb=16) for v in VERSIONS}


def constant_predictor(p: float) -> Predictor:
    """A real Predictor whose model scores every row 0, calibrated to ``p``."""
    net = DenseNet(
        [(np.zeros((len(FEATURE_NAMES), 1)), np.zeros(1), "linear")], feature_names=FEATURE_NAMES
    )
    cal = Calibrator((0.0,), (p,), (0.0,), (p,), (p,))  # served p = high / (1 - low + high)
    return Predictor(net, cal, horizon_s=86400.0, model_type="dense")


def _catalogue(built) -> Catalogue:
    return Catalogue(
        {
            "demo-pkg": [
                Release(v, 1000.0 * i, ((built[v].wheel.name, built[v].wheel.stat().st_size),))
                for i, v in enumerate(VERSIONS)
            ]
        }
    )


def _serve(tmp_path, built, **kw):
    store = tmp_path / "store"
    store.mkdir()
    index = Index(store)
    raw, _ = index.create_token()
    for v in VERSIONS[:3]:
        with open(built[v].wheel, "rb") as f:
            index.upload(built[v].wheel.name, f, token=raw)
    app = IndexApp(index, files=RegistryApp(index.storage), serial_ttl=0, **kw)
    return index, raw, app


def _upload(client, path, token):
    blob = path.read_bytes()
    form = {
        ":action": "file_upload",
        "protocol_version": "1",
        "sha256_digest": hashlib.sha256(blob).hexdigest(),
    }
    return client.post(
        "/legacy/", data=form, files={"content": (path.name, blob)}, auth=("__token__", token)
    )


def _run(tmp_path, built, **kw) -> tuple[int, int]:
    """Upload 1.3 over HTTP; (patch 1.0->1.3 served without diffing?, patches computed)."""
    index, raw, app = _serve(tmp_path, built, **kw)
    handle = start_server(app, tls=False)
    client = httpx.Client(base_url=handle.url(), timeout=60)
    try:
        assert _upload(client, built["1.3"].wheel, raw).status_code == 200
        assert app.files.precompute_idle(timeout=60)
        precomputed = app.files.patches_computed
        old = built["1.0"].wheel.read_bytes()
        rec = index.file(built["1.3"].wheel.name)
        r = client.get(
            f"/{rec.path}",
            headers={
                "if-none-match": etag_for(old),
                "a-im": "rcdelta",
                "delta-engines": "zlib, miniz, recon, zstd-prefix",
            },
        )
        assert r.status_code in (200, 226)
        diffed_on_request = app.files.patches_computed - precomputed
        return diffed_on_request, precomputed
    finally:
        client.close()
        handle.stop()
        app.close()
        index.close()


def test_bases_chosen_by_predicted_demand(tmp_path, built):
    ex = FeatureExtractor(_catalogue(built))
    chooser = PredictivePrecompute(constant_predictor(0.6), ex, max_bases=1, clock=lambda: 5000.0)
    for i in range(5):  # five clients hold 1.0, one holds 1.2
        name = built["1.0"].wheel.name
        chooser.update(Request(10.0 + i, f"c{i}", "file", "demo-pkg", name, "1.0", 1))
    chooser.update(Request(2500.0, "late", "file", "demo-pkg", built["1.2"].wheel.name, "1.2", 1))
    assert chooser.demand("demo-pkg", "1.0", 5000.0) == pytest.approx(3.0)
    assert chooser.rank("demo-pkg", ["1.2", "1.1", "1.0"], 5000.0)[0][0] == "1.0"
    diffed, precomputed = _run(
        tmp_path, built, precompute_previous=1, precompute_bases=chooser.bases
    )
    assert precomputed == 1 and diffed == 0  # 1.0 -> 1.3 was ready before anyone asked


def test_default_precomputes_the_newest_older_release(tmp_path, built):
    diffed, precomputed = _run(tmp_path, built, precompute_previous=1)
    assert precomputed == 1 and diffed == 1  # 1.2 -> 1.3 was; 1.0 -> 1.3 diffed on request


def test_no_demand_known_falls_back_to_the_newest(built):
    from registry_core.index._model import FileRecord

    chooser = PredictivePrecompute(
        constant_predictor(0.6), FeatureExtractor(_catalogue(built)), fallback=2
    )
    recs = [
        FileRecord("demo-pkg", f"f{v}", v, "wheel", f"p/{v}", 1, "0" * 64, 0)
        for v in ("1.2", "1.1", "1.0")
    ]
    target = FileRecord("demo-pkg", "f1.3", "1.3", "wheel", "p/1.3", 1, "0" * 64, 0)
    assert chooser.bases(target, recs) == recs[:2]
