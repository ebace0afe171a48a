"""Transport(trust=TrustedIndex): signed delta fetches end to end over TLS on loopback.

The registry publishes TUF metadata (TufRepository, hybrid keys) and signs every patch
(RegistryApp(envelopes=PatchEnvelopes)); the client verifies through python-tuf's ngclient.
Every refusal must be a SignatureError with nothing written.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from _signed_stack import build_stack, record

from _servers import flags, pki  # noqa: F401 (fixture)
from registry_core.errors import SignatureError
from registry_core.signing import Keyring, patch_statement, sign_envelope
from registry_core.transport import Transport

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pki):  # noqa: F811
    s = build_stack(tmp_path_factory.mktemp("signed"), pki)
    yield s
    s.close()


@pytest.fixture
def trusted(stack, tmp_path):
    t = stack.trusted(tmp_path / "tuf-cache")
    yield t
    t.close()


@pytest.fixture(autouse=True)
def _untampered(stack):
    stack.tamper.mode = None
    yield
    stack.tamper.mode = None


def _fetch(stack, trusted, target: int, base: int | None, dest, **kw):
    async def go():
        async with Transport(verify=stack.ca, flags=flags(), http3=False, trust=trusted) as t:
            have = stack.versions[base][1] if base is not None else None
            data = await t.fetch(stack.url(stack.versions[target][0]), have=have, dest=dest, **kw)
            return data, dict(t.stats)

    return asyncio.run(go())


def test_signed_delta_fetch_succeeds(stack, trusted, tmp_path):
    dest = tmp_path / "out.whl"
    data, stats = _fetch(stack, trusted, 2, 1, dest)
    assert data == stack.versions[2][1]
    assert dest.read_bytes() == data
    assert stats["fetch_delta"] == 1 and stats["fetch_tuf_verified"] == 1
    assert stack.app.stats.envelopes_signed >= 1


def test_signed_full_fetch_and_linked_envelope(stack, trusted, tmp_path):
    data, stats = _fetch(stack, trusted, 0, None, tmp_path / "a")
    assert data == stack.versions[0][1] and stats["fetch_full"] == 1
    stack.tamper.mode = "link-only"  # the envelope only through its Link
    data, stats = _fetch(stack, trusted, 1, 0, tmp_path / "b")
    assert data == stack.versions[1][1]
    assert stats["fetch_delta"] == 1 and stats["fetch_envelopes_linked"] == 1


def test_signed_delta_fetch_over_http3(stack, pki, tmp_path):  # noqa: F811
    """The inline envelope (about 7 KB of field) crosses HTTP/3 (QPACK) as well."""
    from registry_core.server import start_server

    _, cert, key = pki
    h3 = start_server(stack.tamper, certfile=cert, keyfile=key, quic=True)
    trusted = stack.trusted(tmp_path / "c")
    trusted.target_base_url = f"https://127.0.0.1:{h3.port}/"

    async def go():
        async with Transport(verify=stack.ca, flags=flags(), http3=True, trust=trusted) as t:
            url = f"https://127.0.0.1:{h3.port}/{stack.versions[2][0]}"
            return await t.fetch(url, have=stack.versions[1][1]), dict(t.stats)

    try:
        data, stats = asyncio.run(go())
    finally:
        trusted.close()
        h3.stop()
    assert data == stack.versions[2][1]
    assert stats["connections_h3"] == 1 and stats["fetch_delta"] == 1
    assert stats["fetch_tuf_verified"] == 1


WHY = {  # each refusal names what is missing or wrong
    "flip": r"invalid signature by (ed25519|ml-dsa-65) key \w+, (ml-dsa-65|ed25519) key",
    "drop": "carries no envelope",
    "other-base": "base sha256",
    "foreign-keys": "0 of 1 required signatures valid for role 'patches'",
    "other-target": "names target",
}


@pytest.mark.parametrize("mode", ["flip", "drop", "other-base", "foreign-keys", "other-target"])
def test_bad_envelopes_fail_closed(stack, trusted, tmp_path, mode):
    # prime the patch (and its envelope) so the tampering applies to a 226
    _fetch(stack, trusted, 2, 1, None)
    target, base = stack.versions[2][1], stack.versions[1][1]
    patch_sha = stack.tamper.last_patch_sha
    assert patch_sha is not None
    if mode in ("other-base", "foreign-keys", "other-target"):
        if mode == "other-base":
            env = stack.envelope_for(stack.versions[2][0], target, stack.versions[0][1], patch_sha)
        elif mode == "other-target":
            env = stack.envelope_for(stack.versions[1][0], target, base, patch_sha)
        else:
            foreign = Keyring(tmp_path / "foreign", passphrase="x")
            foreign.generate_hybrid("patches")
            st = patch_statement(
                stack.versions[2][0],
                hashlib.sha256(target).hexdigest(),
                hashlib.sha256(base).hexdigest(),
                patch_sha.hex(),
            )
            env = sign_envelope(st, foreign.signers("patches"))
        stack.tamper.envelope = env
        stack.tamper.mode = "replace"
    else:
        stack.tamper.mode = mode
    dest = tmp_path / "never.whl"
    with pytest.raises(SignatureError, match=WHY[mode]):
        _fetch(stack, trusted, 2, 1, dest)
    assert not dest.exists()


def test_bytes_not_in_tuf_refused(stack, trusted, tmp_path):
    # a file the server holds whose bytes TUF does not list (listed with other bytes)
    path = "pkg/pkg-9.9-py3-none-any.whl"
    (stack.root / path).write_bytes(stack.versions[2][1] + b"\0tampered")
    stack.repo.add_targets([record(path, stack.versions[2][1])])
    stack.versions.append((path, b""))
    try:
        dest = tmp_path / "x.whl"
        with pytest.raises(SignatureError, match="TUF"):
            _fetch(stack, trusted, 3, None, dest)
        with pytest.raises(SignatureError):
            _fetch(stack, trusted, 3, 1, dest)
        assert not dest.exists()
        # and a path TUF does not list at all
        (stack.root / "pkg/unlisted.whl").write_bytes(b"nobody signed this")
        stack.versions.append(("pkg/unlisted.whl", b""))
        with pytest.raises(SignatureError, match="not a target"):
            _fetch(stack, trusted, 4, None, dest)
        assert not dest.exists()
    finally:
        del stack.versions[3:]


def test_precomputed_patches_are_signed_and_envelopes_persist(stack, tmp_path):
    """precompute() signs as it computes; a new app on the same directory serves the stored
    patch and envelope without diffing or signing again."""
    from registry_core.server import RegistryApp
    from registry_core.signing._client import PatchEnvelopes

    target, base = stack.versions[2], stack.versions[0]
    signed_before = stack.app.stats.envelopes_signed
    stack.app.precompute(target[0], [base[0]])
    assert stack.app.precompute_idle(60)
    assert stack.app.stats.envelopes_signed == signed_before + 1
    fresh = RegistryApp(stack.root, flags=flags(), envelopes=PatchEnvelopes(stack.keyring))
    try:
        headers = {
            "a-im": "rcdelta",
            "delta-engines": "zlib, miniz, recon, zstd-prefix",  # today's client: precomputed
            "if-none-match": '"' + hashlib.sha256(base[1]).hexdigest() + '"',
        }
        status, hdrs, body = asyncio.run(fresh.handle("GET", "/" + target[0], headers))
        assert status == 226
        assert fresh.patches_computed == 0 and fresh.stats.envelopes_signed == 0
        names = {k for k, _ in hdrs}
        assert {"delta-envelope", "link"} <= names
    finally:
        fresh.close()


def test_patch_key_rotation(stack, trusted, tmp_path):
    """After TufRepository.rotate_keys("patches") (old pair retired), the server signs with
    the new pair (stored envelopes by the old keys are signed again) and a client whose
    metadata predates the rotation refreshes once and verifies. Runs last: it rotates."""
    _fetch(stack, trusted, 2, 1, None)  # the client has metadata naming the old keys
    signed = stack.app.stats.envelopes_signed
    old_ids = set(trusted.patch_keys()[0])
    stack.repo.rotate_keys("patches")
    stack.app.envelopes.recheck = 0  # look at the keyring on the next patch
    refreshes = trusted.refreshes
    data, stats = _fetch(stack, trusted, 2, 1, tmp_path / "r.whl")
    assert data == stack.versions[2][1] and stats["fetch_delta"] == 1
    assert stack.app.stats.envelopes_signed == signed + 1
    assert trusted.refreshes == refreshes + 1
    assert not set(trusted.patch_keys()[0]) & old_ids


def test_no_usable_patch_key_sends_the_full_file(stack, tmp_path):
    """Every patches key retired: the patch cannot be signed, so it is not sent (200, full)."""
    from registry_core.server import RegistryApp
    from registry_core.signing._client import PatchEnvelopes

    keyring = Keyring(tmp_path / "k", passphrase="x")
    pair = keyring.generate_hybrid("patches")
    envelopes = PatchEnvelopes(keyring)
    envelopes.recheck = 0
    for info in pair:
        keyring.retire(info.key_id)
    app = RegistryApp(stack.root, flags=flags(), envelopes=envelopes, patch_store=False)
    try:
        target, base = stack.versions[2], stack.versions[1]
        headers = {"a-im": "rcdelta", "if-none-match": f'"{hashlib.sha256(base[1]).hexdigest()}"'}
        status, _, body = asyncio.run(app.handle("GET", "/" + target[0], headers))
        assert status == 200 and body == target[1]
        assert app.stats.envelopes_signed == 0
    finally:
        app.close()
