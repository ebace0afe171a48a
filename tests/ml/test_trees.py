"""TreeEnsemble: agrees with LightGBM's own predictions, round-trips, refuses bad trees."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import ModelError
from registry_core.ml._trees import TreeEnsemble

lgb = pytest.importorskip("lightgbm")


def _train(seed: int, objective: str, rows: int, cols: int, rounds: int, **params):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.15] = 0.0
    signal = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, -1])
    if objective == "binary":
        y = (signal + rng.normal(scale=0.5, size=rows) > 0).astype(float)
    elif objective == "poisson":
        y = rng.poisson(np.exp(0.3 * signal))
    elif objective == "multiclass":
        y = np.digitize(signal, [-0.5, 0.5])
        params["num_class"] = 3
    else:
        y = signal + rng.normal(scale=0.1, size=rows)
    p = {"objective": objective, "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 3, "seed": 1}
    p.update(params)
    booster = lgb.train(p, lgb.Dataset(X, y), num_boost_round=rounds)
    return booster, X


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**16),
    objective=st.sampled_from(["binary", "regression", "poisson", "multiclass"]),
    rows=st.integers(30, 200),
    cols=st.integers(1, 6),
    rounds=st.integers(1, 15),
    zero_as_missing=st.booleans(),
    use_missing=st.booleans(),
)
def test_predictions_equal_lightgbm(
    seed, objective, rows, cols, rounds, zero_as_missing, use_missing
):
    booster, X = _train(
        seed,
        objective,
        rows,
        cols,
        rounds,
        zero_as_missing=zero_as_missing,
        use_missing=use_missing,
    )
    model = TreeEnsemble.from_lightgbm(booster)
    rng = np.random.default_rng(seed + 1)
    probe = np.vstack([X, rng.normal(size=(20, cols)) * 3, np.full((1, cols), np.nan)])
    expected = booster.predict(probe)
    np.testing.assert_allclose(model.predict(probe), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        model.predict_raw(probe), booster.predict(probe, raw_score=True), rtol=0, atol=1e-9
    )
    if model.n_outputs == 1:
        singles = [model.predict_one(row.tolist()) for row in probe]
        np.testing.assert_allclose(singles, expected, rtol=0, atol=1e-9)
    back = TreeEnsemble.from_bytes(model.to_bytes())
    assert back == model
    np.testing.assert_array_equal(back.predict(probe), model.predict(probe))


def test_random_forest_mode_averages():
    booster, X = _train(
        3,
        "regression",
        200,
        3,
        8,
        boosting="rf",
        bagging_fraction=0.7,
        bagging_freq=1,
        feature_fraction=0.8,
    )
    model = TreeEnsemble.from_lightgbm(booster)
    assert model.average_output
    np.testing.assert_allclose(model.predict(X), booster.predict(X), atol=1e-9)
    np.testing.assert_allclose(
        [model.predict_one(r.tolist()) for r in X], booster.predict(X), atol=1e-9
    )


def test_feature_names_and_dump_dict():
    booster, X = _train(5, "binary", 100, 3, 4)
    model = TreeEnsemble.from_lightgbm(booster.dump_model())
    assert model.feature_names == ("Column_0", "Column_1", "Column_2")
    assert model.n_features == 3


def test_categorical_splits_are_refused():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 5, size=(300, 2)).astype(float)
    y = (X[:, 0] == 3).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 3},
        lgb.Dataset(X, y, categorical_feature=[0]),
        num_boost_round=3,
    )
    with pytest.raises(ModelError, match="categorical"):
        TreeEnsemble.from_lightgbm(booster)


def test_wrong_width_is_refused():
    booster, _ = _train(1, "binary", 60, 3, 2)
    model = TreeEnsemble.from_lightgbm(booster)
    with pytest.raises(ModelError, match="3 features"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(ModelError):
        model.predict_one([0.0])


def _stump(**over):
    arrays = dict(
        tree_start=[0, 3],
        feature=[0, -1, -1],
        threshold=[0.5, 0.0, 0.0],
        left=[1, 1, 2],
        right=[2, 1, 2],
        flags=[0, 0, 0],
        value=[0.0, -1.0, 1.0],
        n_features=1,
    )
    arrays.update(over)
    return TreeEnsemble(**arrays)


def test_hand_built_stump():
    model = _stump()
    np.testing.assert_array_equal(model.predict([[0.1], [0.9], [0.5]]), [-1.0, 1.0, -1.0])
    assert model.predict_one([np.nan]) == -1.0  # NaN -> 0.0 with missing type None


@pytest.mark.parametrize(
    "over, message",
    [
        (dict(left=[0, 1, 2]), "child"),  # a node its own child: a cycle
        (dict(left=[2, 1, 2]), "reached twice"),  # both children the same node
        (dict(right=[3, 1, 2]), "child"),  # outside the tree
        (dict(left=[1, 2, 2]), "child"),  # a leaf pointing elsewhere
        (dict(feature=[1, -1, -1]), "feature"),
        (dict(feature=[-2, -1, -1]), "feature"),
        (dict(tree_start=[0, 2]), "offsets"),
        (dict(value=[0.0, np.inf, 1.0]), "finite"),
        (dict(threshold=[np.nan, 0.0, 0.0]), "NaN"),
        (dict(flags=[3, 0, 0]), "flags"),
        (dict(feature_names=["a", "b"]), "feature names"),
    ],
)
def test_invalid_trees_are_refused(over, message):
    with pytest.raises(ModelError, match=message):
        _stump(**over)


def test_every_truncation_is_refused_and_flips_never_crash():
    booster, X = _train(2, "binary", 80, 2, 3)
    data = TreeEnsemble.from_lightgbm(booster).to_bytes()
    for cut in range(0, len(data), 7):
        with pytest.raises(ModelError):
            TreeEnsemble.from_bytes(data[:cut])
    with pytest.raises(ModelError):
        TreeEnsemble.from_bytes(data + b"\0")
    for pos in range(len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x41
        try:
            model = TreeEnsemble.from_bytes(bytes(flipped))
        except ModelError:
            continue
        model.predict(X)  # a flip that still validates is a valid (different) model


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data):
    with contextlib.suppress(ModelError):
        TreeEnsemble.from_bytes(b"RCTE\x01" + data)


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_compiled_trees_equal_lightgbm(zero_as_missing):
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("no C compiler: CompiledTrees is the optional accelerator")
    from registry_core.ml._trees import CompiledTrees

    booster, X = _train(7, "binary", 300, 5, 12, zero_as_missing=zero_as_missing)
    compiled = CompiledTrees(TreeEnsemble.from_lightgbm(booster))
    probe = np.vstack([X, np.full((1, 5), np.nan), np.zeros((1, 5))])
    expected = booster.predict(probe)
    np.testing.assert_allclose(compiled.predict(probe), expected, rtol=0, atol=1e-12)
    singles = [compiled.predict_one(r.tolist()) for r in probe]
    np.testing.assert_allclose(singles, expected, rtol=0, atol=1e-12)
    with pytest.raises(ModelError):
        compiled.predict_one([0.0])


def test_compiled_trees_refuse_multi_output():
    from registry_core.ml._trees import CompiledTrees

    booster, _ = _train(1, "multiclass", 90, 3, 2)
    with pytest.raises(ModelError, match="single-output"):
        CompiledTrees(TreeEnsemble.from_lightgbm(booster))
