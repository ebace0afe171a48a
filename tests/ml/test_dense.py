"""DenseNet: numpy forward pass, checked byte form."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import ModelError
from registry_core.ml._dense import ACTIVATIONS, DenseNet


def random_net(seed: int, widths: list[int], acts: list[str]) -> DenseNet:
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(a, b)), rng.normal(size=b), act)
        for a, b, act in zip(widths, widths[1:], acts, strict=False)
    ]
    return DenseNet(layers, feature_names=[f"x{i}" for i in range(widths[0])])


nets = st.builds(
    random_net,
    st.integers(0, 2**16),
    st.lists(st.integers(1, 12), min_size=2, max_size=5),
    st.lists(st.sampled_from(["linear", "relu", "sigmoid"]), min_size=4, max_size=4),
).map(lambda n: n)


@given(net=nets, rows=st.integers(1, 8), seed=st.integers(0, 100))
def test_round_trip_and_forward(net, rows, seed):
    back = DenseNet.from_bytes(net.to_bytes())
    assert back == net
    x = np.random.default_rng(seed).normal(size=(rows, net.n_features))
    out = net.predict(x)
    np.testing.assert_array_equal(back.predict(x), out)
    # the forward pass by hand, in float64, agrees to float32 rounding
    h = x
    for w, b, act in net.layers:
        z = h @ w.astype(np.float64) + b
        h = {"linear": z, "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z))}[act]
    ref = h[:, 0] if net.n_outputs == 1 else h
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    if net.n_outputs == 1:
        assert net.predict_one(x[0].tolist()) == pytest.approx(float(out[0]), abs=1e-6)


def test_softmax_last_layer_sums_to_one():
    net = random_net(1, [3, 5, 4], ["relu", "softmax"])
    p = net.predict(np.random.default_rng(0).normal(size=(10, 3)))
    assert p.shape == (10, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_sigmoid_is_stable_for_large_inputs():
    net = DenseNet([(np.array([[1.0]]), np.array([0.0]), "sigmoid")])
    out = net.predict([[1e4], [-1e4], [0.0]])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [1.0, 0.0, 0.5])


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "layers"),
        ([(np.ones((2, 3)), np.ones(2), "relu")], "W must be"),
        ([(np.ones((2, 3)), np.ones(3), "tanh")], "activation"),
        ([(np.ones((2, 3)), np.ones(3), "relu"), (np.ones((2, 1)), np.ones(1), "relu")], "takes"),
        ([(np.ones((2, 3)), np.ones(3), "softmax"), (np.ones((3, 1)), np.ones(1), "relu")], "last"),
        ([(np.full((2, 1), np.nan), np.ones(1), "relu")], "finite"),
    ],
)
def test_bad_layers_are_refused(layers, message):
    with pytest.raises(ModelError, match=message):
        DenseNet(layers)


def test_inputs_checked():
    net = random_net(0, [3, 1], ["sigmoid"])
    with pytest.raises(ModelError, match="3 features"):
        net.predict(np.zeros((1, 2)))
    with pytest.raises(ModelError, match="finite"):
        net.predict([[np.nan, 0, 0]])


def test_truncation_and_garbage_refused():
    data = random_net(0, [4, 6, 1], ["relu", "sigmoid"]).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(ModelError):
            DenseNet.from_bytes(data[:cut])
    with pytest.raises(ModelError):
        DenseNet.from_bytes(data + b"\0")
    assert set(ACTIVATIONS) == {"linear", "relu", "sigmoid", "softmax"}


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data):
    with contextlib.suppress(ModelError):
        DenseNet.from_bytes(b"RCDN\x01" + data)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("activation", ["relu", "logistic", "identity"])
def test_from_sklearn_folds_the_scaler(kind, activation):
    import warnings

    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) * [1, 10, 100, 0.1] + [0, 5, 50, 0]
    signal = X[:, 0] + X[:, 1] / 10
    if kind == "regression":
        est, y = (
            MLPRegressor(
                hidden_layer_sizes=(6,), activation=activation, max_iter=50, random_state=0
            ),
            signal,
        )
    else:
        y = (signal > 0.5).astype(int) + (kind == "multiclass") * (signal > 3).astype(int)
        est = MLPClassifier(
            hidden_layer_sizes=(6, 3), activation=activation, max_iter=50, random_state=0
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), est).fit(X, y)
    net = DenseNet.from_sklearn(pipe)
    if kind == "regression":
        want = pipe.predict(X)
    elif kind == "binary":
        want = pipe.predict_proba(X)[:, 1]
    else:
        want = pipe.predict_proba(X)
    np.testing.assert_allclose(net.predict(X), want, rtol=1e-4, atol=1e-4)


def test_from_sklearn_refuses_what_it_cannot_convert():
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier

    with pytest.raises(ModelError, match="not a fitted"):
        DenseNet.from_sklearn(MLPClassifier())
    mlp = MLPClassifier(hidden_layer_sizes=(3,), activation="tanh", max_iter=5, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(np.random.default_rng(0).normal(size=(20, 2)), [0, 1] * 10)
    with pytest.raises(ModelError, match="tanh"):
        DenseNet.from_sklearn(mlp)
