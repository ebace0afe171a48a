"""Property tests for the DSSE encoder/decoder pair: statement -> envelope -> statement round
trips, PAE is injective, and no mutation or garbage ever verifies as something else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner

from registry_core.errors import InvalidArgumentError, SignatureError
from registry_core.signing import (
    pae,
    patch_statement,
    sign_envelope,
    verify_envelope,
    verify_patch_envelope,
)

ED = CryptoSigner.generate_ed25519()
PQ = CryptoSigner.generate_mldsa()
KEYS = {s.public_key.keyid: s.public_key for s in (ED, PQ)}

digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=200).filter(
    lambda s: "\x7f" not in s
)
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(names, digests, digests, digests)
def test_patch_statement_round_trip_ed25519(name, target, base, patch):
    statement = patch_statement(name, target, base, patch)
    envelope = sign_envelope(statement, [ED])
    assert verify_envelope(envelope, KEYS, 1, require_algorithms=["ed25519"]) == statement
    assert (
        verify_patch_envelope(
            envelope,
            KEYS,
            1,
            base_sha256=base,
            target_sha256=target,
            patch_sha256=patch,
            target_name=name,
        )
        == statement
    )


@settings(max_examples=25)
@given(names, digests, digests, digests)
def test_patch_statement_round_trip_hybrid(name, target, base, patch):
    statement = patch_statement(name, target, base, patch)
    envelope = sign_envelope(statement, [ED, PQ])
    assert verify_envelope(envelope, KEYS, 2, require_algorithms=["ed25519", "ml-dsa-65"]) == (
        statement
    )


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_any_statement_round_trips(extra):
    statement = dict(extra, _type="https://in-toto.io/Statement/v1")
    assert verify_envelope(sign_envelope(statement, [ED]), KEYS, 1) == statement


@given(st.text(max_size=30), st.binary(max_size=60), st.text(max_size=30), st.binary(max_size=60))
def test_pae_is_injective(t1, b1, t2, b2):
    if (t1, b1) != (t2, b2):
        assert pae(t1, b1) != pae(t2, b2)
    assert pae(t1, b1).startswith(b"DSSEv1 %d " % len(t1.encode()))


_ENVELOPE = sign_envelope(patch_statement("a/b-1.0.tar.gz", "1" * 64, "2" * 64, "3" * 64), [ED])
_STATEMENT = verify_envelope(_ENVELOPE, KEYS, 1)


@given(st.integers(0, len(_ENVELOPE) - 1), st.integers(1, 255))
def test_no_single_byte_mutation_verifies_as_something_else(pos, xor):
    mutated = bytearray(_ENVELOPE)
    mutated[pos] ^= xor
    try:
        statement = verify_envelope(bytes(mutated), KEYS, 1)
    except SignatureError:
        return
    # only a change the decoders normalise away (e.g. base64 padding bits) may pass
    assert statement == _STATEMENT


@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_garbage_is_a_signature_error_only(data):
    with pytest.raises(SignatureError):
        verify_envelope(data, KEYS, 1)


@given(st.text(st.characters(whitelist_categories=("Cs", "Cc")), min_size=1, max_size=5))
def test_unprintable_target_names_are_refused(name):
    with pytest.raises(InvalidArgumentError):
        patch_statement(name, "1" * 64, "2" * 64, "3" * 64)
