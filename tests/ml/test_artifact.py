"""ModelArtifact: the byte form round-trips and every corruption is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import ModelError
from registry_core.ml import ModelArtifact

kinds = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@given(
    kind=kinds,
    payload=st.binary(max_size=2000),
    metrics=st.dictionaries(st.text(max_size=10), st.floats(allow_nan=False, allow_infinity=False)),
    seed=st.integers(0, 2**31),
    card=st.text(max_size=200),
)
def test_round_trip(kind, payload, metrics, seed, card):
    art = ModelArtifact(
        kind=kind,
        payload=payload,
        metrics=metrics,
        seed=seed,
        card=card,
        feature_names=("a", "b"),
        data_sha256="00" * 32,
    )
    back = ModelArtifact.from_bytes(art.to_bytes())
    assert back == art
    assert back.sha256 == art.sha256


def test_every_truncation_and_bit_flip_is_refused():
    data = ModelArtifact(kind="next-download", payload=b"x" * 64, metrics={"brier": 0.1}).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(ModelError):
            ModelArtifact.from_bytes(data[:cut])
    for i in [*range(9), len(data) - 1, len(data) - 30]:
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(ModelError):
            ModelArtifact.from_bytes(bytes(bad))


@pytest.mark.parametrize("kind", ["", "Upper", "a b", "x" * 65])
def test_bad_kind(kind):
    with pytest.raises(ModelError):
        ModelArtifact(kind=kind, payload=b"")


def test_non_finite_metric_refused():
    with pytest.raises(ModelError):
        ModelArtifact(kind="k", payload=b"", metrics={"loss": float("nan")})
