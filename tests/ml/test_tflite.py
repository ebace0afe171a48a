"""TFLite: the flatbuffer we write runs on LiteRT and computes what the DenseNet computes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import ModelError
from registry_core.ml._dense import DenseNet

pytest.importorskip("ai_edge_litert")
pytest.importorskip("flatbuffers")

from registry_core.ml._tflite import TFLiteModel, to_tflite  # noqa: E402


def _net(seed: int, widths: list[int], acts: list[str]) -> DenseNet:
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(a, b)) / np.sqrt(a), rng.normal(size=b) * 0.1, act)
        for a, b, act in zip(widths, widths[1:], acts, strict=False)
    ]
    return DenseNet(layers)


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**16),
    widths=st.lists(st.integers(1, 24), min_size=2, max_size=5),
    acts=st.lists(st.sampled_from(["linear", "relu", "sigmoid"]), min_size=4, max_size=4),
    last=st.sampled_from(["linear", "relu", "sigmoid", "softmax"]),
    rows=st.sampled_from([1, 2, 7, 64]),
)
def test_tflite_equals_numpy(seed, widths, acts, last, rows):
    acts = acts[: len(widths) - 2] + [last]
    net = _net(seed, widths, acts)
    model = TFLiteModel(to_tflite(net))
    assert (model.n_features, model.n_outputs) == (net.n_features, net.n_outputs)
    x = np.random.default_rng(seed + 1).normal(size=(rows, net.n_features))
    np.testing.assert_allclose(model.predict(x), net.predict(x), rtol=1e-4, atol=1e-5)
    # a different batch size after the first call resizes the input
    np.testing.assert_allclose(model.predict(x[:1]), net.predict(x[:1]), rtol=1e-4, atol=1e-5)
    if net.n_outputs == 1:
        assert model.predict_one(x[0]) == pytest.approx(net.predict_one(x[0]), rel=1e-4, abs=1e-5)


def test_file_is_valid_tflite_schema_and_small():
    tflite = pytest.importorskip("tflite")
    net = _net(0, [32, 64, 32, 1], ["relu", "relu", "sigmoid"])
    data = to_tflite(net)
    assert len(data) < 2 * 1024 * 1024
    assert data[4:8] == b"TFL3"
    model = tflite.Model.GetRootAsModel(data, 0)
    assert model.Version() == 3
    graph = model.Subgraphs(0)
    ops = [
        model.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode()
        for i in range(graph.OperatorsLength())
    ]
    fc, logistic = tflite.BuiltinOperator.FULLY_CONNECTED, tflite.BuiltinOperator.LOGISTIC
    assert ops == [fc, fc, fc, logistic]
    kernel = graph.Tensors(graph.Operators(0).Inputs(1))
    assert kernel.ShapeAsNumpy().tolist() == [64, 32]  # [outputs, inputs], as FC expects
    raw = model.Buffers(kernel.Buffer()).DataAsNumpy().view("<f4").reshape(64, 32)
    np.testing.assert_array_equal(raw, net.layers[0][0].T)


def test_a_large_net_stays_under_budget_or_says_so():
    # 2 MB is ~500k float32 weights; a 128-wide three-layer net is far below it
    net = _net(1, [64, 128, 128, 1], ["relu", "relu", "sigmoid"])
    assert len(to_tflite(net)) < 2 * 1024 * 1024


@pytest.mark.parametrize("data", [b"", b"TFL3", b"\0\0\0\0TFL3" + b"\0" * 40, b"x" * 100])
def test_garbage_refused(data):
    with pytest.raises(ModelError):
        TFLiteModel(data)


def test_truncated_model_refused():
    data = to_tflite(_net(2, [3, 4, 1], ["relu", "sigmoid"]))
    for cut in (8, len(data) // 2, len(data) - 1):
        with pytest.raises(ModelError):
            TFLiteModel(data[:cut])


def test_wrong_width_refused():
    model = TFLiteModel(to_tflite(_net(3, [3, 1], ["sigmoid"])))
    with pytest.raises(ModelError, match="3 features"):
        model.predict(np.zeros((2, 5)))
