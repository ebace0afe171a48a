"""The next-download predictor: examples and labels on a hand-made trace, FilePrediction per
newer file of the held flavour, byte form round trip (hypothesis) and corrupt input refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError, ModelError
from registry_core.ml._artifact import ModelArtifact
from registry_core.ml._calibrate import Calibrator
from registry_core.ml._dense import DenseNet
from registry_core.ml._features import FEATURE_NAMES, FeatureExtractor
from registry_core.ml._predict import Predictor, load_predictor, make_examples
from registry_core.ml.traces import Catalogue, Release, Request, Trace

DAY = 86400.0
W = "demo-{}-py3-none-any.whl"
WIN = "demo-{}-cp312-cp312-win_amd64.whl"


def catalogue() -> Catalogue:
    return Catalogue(
        {
            "demo": [
                Release(
                    v, i * DAY, ((W.format(v), 100), (WIN.format(v), 200), (f"demo-{v}.tar.gz", 90))
                )
                for i, v in enumerate(("1.0", "1.1", "1.2"))
            ]
        }
    )


def hand_trace() -> Trace:
    f = lambda t, c, v, name=W: Request(t, c, "file", "demo", name.format(v), v, 100)  # noqa: E731
    page = lambda t, c: Request(t, c, "page", "demo", "", "", 10)  # noqa: E731
    reqs = [
        f(0.5 * DAY, "up", "1.0"),
        f(0.6 * DAY, "stay", "1.0", WIN),
        page(1.5 * DAY, "up"),  # holds 1.0, 1.1 exists: an example, upgrades at 1.6
        page(1.5 * DAY + 1, "stay"),  # holds 1.0, never upgrades
        f(1.6 * DAY, "up", "1.1"),
        page(9 * DAY, "stay"),
        page(12 * DAY, "nobody"),  # holds nothing: no example
    ]
    return Trace(reqs, catalogue(), [], "hand")


def test_examples_and_labels() -> None:
    data = make_examples(hand_trace(), horizon_s=DAY, triggers=("request",))
    got = [(e.client, e.index, e.held, e.label) for e in data.examples]
    assert ("up", 2, "1.0", 1) in got and ("stay", 3, "1.0", 0) in got
    assert all(e.client != "nobody" for e in data.examples)
    assert data.X.shape == (len(got), len(FEATURE_NAMES))
    up = next(i for i, e in enumerate(data.examples) if e.client == "up")
    assert data.to_latest[up] == 1.0  # 1.1 was the newest at 1.5 days
    # examples whose horizon runs past the end of the trace are dropped
    assert all(e.time + DAY <= hand_trace().end for e in data.examples)
    # a release while clients hold an older version: one example per holder, at its time
    rel = make_examples(hand_trace(), horizon_s=DAY, triggers=("release",))
    seen = sorted((e.time, e.client, e.held, e.label, e.trigger) for e in rel.examples)
    assert seen[:2] == [(DAY, "stay", "1.0", 0, "release"), (DAY, "up", "1.0", 1, "release")]
    both = make_examples(hand_trace(), horizon_s=DAY)
    assert {e.trigger for e in both.examples} == {"request", "release"}
    with pytest.raises(InvalidArgumentError):
        make_examples(hand_trace(), horizon_s=0)
    with pytest.raises(InvalidArgumentError):
        make_examples(hand_trace(), triggers=("bogus",))


def constant(p: float, latest_share: float = 0.8) -> Predictor:
    net = DenseNet(
        [(np.zeros((len(FEATURE_NAMES), 1)), np.zeros(1), "linear")], feature_names=FEATURE_NAMES
    )
    cal = Calibrator((0.0,), (p,), (0.0,), (p,), (p,))  # served p = high / (1 - low + high)
    return Predictor(net, cal, horizon_s=DAY, latest_share=latest_share, model_type="dense")


def test_predictions_per_newer_file_of_the_held_flavour() -> None:
    ex = FeatureExtractor(catalogue())
    for r in hand_trace().requests[:2]:
        ex.update(r)
    pred = constant(0.5).bind(ex)
    out = pred.predict("stay", "demo", "", now=2.5 * DAY)  # holds the win_amd64 wheel of 1.0
    assert [(p.filename, round(p.probability, 6)) for p in out] == [
        (WIN.format("1.2"), 0.4),
        (WIN.format("1.1"), 0.1),
    ]
    assert all(p.low <= p.probability <= p.high for p in out)
    # held given, flavour unknown: split over the release's files
    split = pred.predict("someone", "demo", "1.1", now=2.5 * DAY)
    assert len(split) == 3 and sum(p.probability for p in split) == pytest.approx(0.5)
    assert pred.predict("stay", "demo", "1.2", now=2.5 * DAY) == []
    assert pred.predict("stay", "demo", "", now=0.7 * DAY) == []  # nothing newer yet
    assert pred.predict("nobody", "demo", "", now=2.5 * DAY) == []
    with pytest.raises(InvalidArgumentError, match="predicts within"):
        pred.predict("stay", "demo", "", now=2.5 * DAY, horizon_s=7 * DAY)
    with pytest.raises(InvalidArgumentError, match="bind"):
        constant(0.5).predict("stay", "demo", "1.0", 2.5 * DAY)


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.01, 0.99),
    st.floats(0.0, 1.0),
    st.lists(st.floats(-5, 5, width=32), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
)
def test_byte_form_round_trip(p: float, share: float, weights: list[float]) -> None:
    net = DenseNet(
        [(np.asarray(weights, np.float32).reshape(-1, 1), np.zeros(1), "linear")],
        feature_names=FEATURE_NAMES,
    )
    cal = Calibrator((-1.0, 1.0), (p / 2, p), (-1.0, 1.0), (p / 4, p / 2), (p, (1 + p) / 2))
    a = Predictor(net, cal, horizon_s=DAY, latest_share=share, model_type="dense", meta={"x": 1})
    data = a.to_bytes()
    b = Predictor.from_bytes(data)
    assert b.to_bytes() == data
    row = [0.5] * len(FEATURE_NAMES)
    assert b.score(row) == a.score(row) and b.latest_share == share
    art = ModelArtifact(kind="next-download", payload=data)
    assert load_predictor(art.to_bytes()).to_bytes() == data
    assert load_predictor(data).to_bytes() == data


def test_corrupt_models_are_refused() -> None:
    data = constant(0.3).to_bytes()
    for bad in (b"", b"RCNP", b"XXXX" + data[4:], data[:4] + b"\x09" + data[5:], data[:20]):
        with pytest.raises(ModelError):
            Predictor.from_bytes(bad)
    # other feature names: refused, the model would read the wrong columns
    import json
    import struct

    n = struct.unpack(">I", data[5:9])[0]
    head = json.loads(data[9 : 9 + n])
    head["feature_names"] = head["feature_names"][::-1]
    blob = json.dumps(head).encode()
    with pytest.raises(ModelError, match="retrain"):
        Predictor.from_bytes(data[:5] + struct.pack(">I", len(blob)) + blob + data[9 + n :])
    with pytest.raises(ModelError):
        load_predictor(ModelArtifact(kind="forecast", payload=data).to_bytes())
    with pytest.raises(ModelError):
        Predictor(constant(0.3).model, constant(0.3).calibrator, horizon_s=DAY, latest_share=2.0)


def test_served_by_the_gateway_from_the_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Published in the model registry, loaded by kind, answered in process by the gateway."""
    from registry_core.index import Index
    from registry_core.ml._gateway import PredictionGateway
    from registry_core.ml._registry import ModelRegistry

    ex = FeatureExtractor(catalogue())
    for r in hand_trace().requests[:2]:
        ex.update(r)
    art = ModelArtifact(kind="next-download", payload=constant(0.5).to_bytes())
    (tmp_path / "store").mkdir()
    with Index(tmp_path / "store") as index:
        reg = ModelRegistry(index, state_dir=tmp_path / "state")
        reg.publish(art, name="next")
        reg.promote("next", 1)
        gw = PredictionGateway(
            reg,
            models={"next": "production"},
            loaders={"next-download": lambda payload: Predictor.from_bytes(payload, ex)},
        )
        gw.refresh()
        got = gw.predict("next", client="stay", project="demo", held="", now=2.5 * DAY)
    assert [p.filename for p in got.result] == [WIN.format("1.2"), WIN.format("1.1")]
    assert got.result[0].probability == pytest.approx(0.4)
