"""``warm(..., predict=)``: the newer file a next-download Predictor expects the proxy's clients
to ask for is prefetched (as a delta against the cached older one) above the threshold, and not
below it; against the real upstream test server."""

from __future__ import annotations

import numpy as np
import pytest
from _proxy_support import PROJECT

from registry_core.errors import InvalidArgumentError
from registry_core.ml._calibrate import Calibrator
from registry_core.ml._dense import DenseNet
from registry_core.ml._features import FEATURE_NAMES, FeatureExtractor
from registry_core.ml._predict import Predictor
from registry_core.ml.traces import Catalogue, Release
from registry_core.proxy import warm


def _predictor(p: float, built) -> Predictor:
    net = DenseNet(
        [(np.zeros((len(FEATURE_NAMES), 1)), np.zeros(1), "linear")], feature_names=FEATURE_NAMES
    )
    cat = Catalogue(
        {
            PROJECT: [
                Release(v, 100.0 * i, ((built[v].wheel.name, built[v].wheel.stat().st_size),))
                for i, v in enumerate(("1.0", "1.1"))
            ]
        }
    )
    cal = Calibrator((0.0,), (p,), (0.0,), (p,), (p,))  # served p = high / (1 - low + high)
    pred = Predictor(net, cal, horizon_s=86400.0, model_type="dense")
    return pred.bind(FeatureExtractor(cat))


def test_predicted_newer_file_is_prefetched(upstream, built, tmp_path):
    kw = {"upstream": upstream.base, "cache_dir": tmp_path / "c", "verify": upstream.ca}
    report = warm([f"{PROJECT}==1.0"], predict=_predictor(0.9, built), now=1000.0, **kw)
    assert report.ok, report.failed
    names = [f[0] for f in report.fetched]
    assert names == [built["1.0"].wheel.name, built["1.1"].wheel.name]
    assert report.predicted == [(built["1.1"].wheel.name, pytest.approx(0.9))]
    assert report.fetched[1][3] == "delta"  # against the 1.0 just cached
    cached = tmp_path / "c" / "files" / PROJECT / built["1.1"].wheel.name
    assert cached.read_bytes() == built["1.1"].wheel.read_bytes()


def test_below_threshold_nothing_more(upstream, built, tmp_path):
    kw = {"upstream": upstream.base, "cache_dir": tmp_path / "c", "verify": upstream.ca}
    report = warm([f"{PROJECT}==1.0"], predict=_predictor(0.2, built), now=1000.0, **kw)
    assert report.ok and report.predicted == [] and len(report.fetched) == 1
    with pytest.raises(InvalidArgumentError):
        warm([f"{PROJECT}==1.0"], predict=_predictor(0.2, built), predict_threshold=2.0, **kw)
