"""TrustedIndex: python-tuf's ngclient over our SyncTransport against TufRepository metadata
served over TLS on loopback. Lookups, refresh on a miss, the patches role's keys, ngclient's
verified download, and refusals (rollback, freeze, wrong root, tampered target) as
SignatureError naming ngclient's reason."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from _signed_stack import PASSPHRASE, build_stack, record

from _servers import pki  # noqa: F401 (fixture)
from registry_core.errors import SignatureError
from registry_core.server import RegistryApp, start_server
from registry_core.signing import Keyring
from registry_core.signing._client import TrustedIndex
from registry_core.signing._tuf import TufRepository
from registry_core.transport import Transport

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pki):  # noqa: F811
    s = build_stack(tmp_path_factory.mktemp("trusted"), pki)
    yield s
    s.close()


def test_targetinfo_patch_keys_and_refresh_on_miss(stack, tmp_path):
    with stack.trusted(tmp_path / "c") as t:
        path, data = stack.versions[1]
        assert t.ready(path) is None  # nothing looked up yet
        info = t.targetinfo(path)
        assert info.length == len(data)
        assert t.verify_target(path, data) == info
        keys, threshold = t.patch_keys()
        assert threshold == 1  # phase 1: either signature of the hybrid pair
        algorithms = sorted(stack.keyring.key(k).algorithm for k in keys)
        assert algorithms == ["ed25519", "ml-dsa-65"]
        assert t.ready(path) == info  # fresh and known: no I/O needed
        assert t.refreshes == 1
        # a file published after the refresh is found by one more refresh
        new = "pkg/pkg-2.0-py3-none-any.whl"
        stack.repo.add_targets([record(new, b"two")])
        assert t.targetinfo(new).length == 3 and t.refreshes == 2
        with pytest.raises(SignatureError, match="not a target"):
            t.targetinfo("pkg/never-published.whl")
        with pytest.raises(SignatureError, match="sha256"):
            t.verify_target(path, data[:-1] + b"!")
        with pytest.raises(SignatureError, match="bytes"):
            t.verify_target(path, data + b"!")


def test_target_path_mapping(stack, tmp_path):
    with stack.trusted(tmp_path / "c") as t:
        assert t.target_path(stack.url("pkg/a%2Bb.whl")) == "pkg/a+b.whl"
        for bad in ("https://elsewhere.test/pkg/a.whl", stack.url("pkg/../x"), stack.url("")):
            with pytest.raises(SignatureError):
                t.target_path(bad)


def test_ngclient_verified_download(stack, tmp_path):
    with stack.trusted(tmp_path / "c") as t:
        path, data = stack.versions[0]
        dest = tmp_path / "dl.whl"
        assert t.download(path, dest) == str(dest)
        assert dest.read_bytes() == data
        # a target whose served bytes differ from the signed ones
        evil = "pkg/pkg-7.0-py3-none-any.whl"
        (stack.root / evil).write_bytes(b"evil bytes")
        stack.repo.add_targets([record(evil, b"good bytes")])
        with pytest.raises(SignatureError, match="refused"):
            t.download(evil, tmp_path / "evil.whl")


def test_rollback_is_refused(stack, tmp_path):
    ts = stack.tuf_dir / "timestamp.json"
    old = ts.read_bytes()
    with stack.trusted(tmp_path / "c", max_age=0) as t:
        t.refresh()
        stack.repo.add_targets([record("pkg/pkg-3.0-py3-none-any.whl", b"three")])
        t.refresh()  # the client has seen the newer timestamp
        new = ts.read_bytes()
        try:
            ts.write_bytes(old)  # the server (or a man in the middle) serves the older one
            with pytest.raises(SignatureError, match="refused"):
                t.refresh()
        finally:
            ts.write_bytes(new)
        t.refresh()


def test_wrong_root_and_frozen_metadata_are_refused(stack, tmp_path, pki):  # noqa: F811
    # a root of another repository: the served metadata is signed by keys it does not trust
    other = TufRepository(tmp_path / "other", Keyring(tmp_path / "ok", passphrase=PASSPHRASE))
    other.init()
    with (
        TrustedIndex(
            other.trusted_root(), stack.metadata_url, tmp_path / "c1", verify=stack.ca
        ) as t,
        pytest.raises(SignatureError, match="refused"),
    ):
        t.refresh()
    # a repository whose timestamp expired a day ago (freeze: nobody re-signed it)
    past = datetime.now(timezone.utc) - timedelta(days=3)
    frozen = TufRepository(
        tmp_path / "frozen", Keyring(tmp_path / "fk", passphrase=PASSPHRASE), clock=lambda: past
    )
    frozen.init()
    _, cert, key = pki
    handle = start_server(
        RegistryApp(tmp_path / "frozen", patch_store=False), certfile=cert, keyfile=key, quic=False
    )
    try:
        with (
            TrustedIndex(
                frozen.trusted_root(),
                f"https://127.0.0.1:{handle.port}/",
                tmp_path / "c2",
                verify=stack.ca,
            ) as t,
            pytest.raises(SignatureError, match="[Ee]xpired"),
        ):
            t.refresh()
    finally:
        handle.stop()


def test_unreachable_metadata_fails_closed(stack, tmp_path):
    with (
        TrustedIndex(
            stack.repo.trusted_root(),
            stack.metadata_url + "nothing-here/",
            tmp_path / "c",
            verify=stack.ca,
        ) as t,
        pytest.raises(SignatureError, match="could not be fetched"),
    ):
        t.refresh()


def test_envelope_urls(stack, tmp_path):
    """A stored envelope is served at its well-known URL; an unknown one is 404."""
    with stack.trusted(tmp_path / "c") as t:

        async def go():
            async with Transport(verify=stack.ca, http3=False, trust=t) as c:
                r = await c.request(
                    "GET",
                    stack.url(stack.versions[2][0]),
                    headers={
                        "a-im": "rcdelta",
                        "if-none-match": '"' + record("", stack.versions[1][1]).sha256 + '"',
                    },
                )
                assert r.status == 226, r.status
                link = r.headers["link"].split(";")[0].strip("<>")
                env = await c.get(stack.url(link.lstrip("/")))
                missing = await c.get(stack.url(link.lstrip("/").replace(".dsse", "0.dsse")))
                unknown = await c.get(
                    stack.url(".well-known/registry-core/envelopes/" + "ab" * 64 + ".dsse")
                )
                return r, env, missing, unknown

        r, env, missing, unknown = asyncio.run(go())
        assert env.status == 200 and env.headers["content-type"].startswith("application/vnd.dsse")
        assert missing.status == 404 and unknown.status == 404


def test_cheap_import():
    """trust= costs nothing until used (cryptography comes with aioquic, not with us)."""
    code = (
        "import sys, registry_core, registry_core.index, registry_core.transport, "
        "registry_core.proxy, registry_core.server\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tuf', 'securesystemslib') or m.startswith('registry_core.signing')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cache_dir_survives_a_new_client(stack, tmp_path):
    """ngclient's cached versions persist: a second TrustedIndex on the same cache dir keeps
    the rollback protection (it starts from what the first one saw)."""
    cache = tmp_path / "c"
    with stack.trusted(cache) as t:
        t.refresh()
    assert (cache / "timestamp.json").is_file()
    with stack.trusted(cache) as t2:
        t2.refresh()
        assert t2.targetinfo(stack.versions[0][0]).length == len(stack.versions[0][1])
    shutil.rmtree(cache)


def test_phase_2_and_required_algorithms_for_patch_envelopes(stack, tmp_path, pki):  # noqa: F811
    """Phase 2 (threshold 2 of the hybrid pair): an Ed25519-only envelope is refused; in
    phase 1 it passes unless the client requires ML-DSA-65 itself."""
    import hashlib

    from registry_core.signing import patch_statement, sign_envelope
    from registry_core.signing._tuf import ROLES

    h = [hashlib.sha256(x).hexdigest() for x in (b"target", b"base", b"patch")]
    path = "pkg/pkg-1.0-py3-none-any.whl"
    statement = patch_statement(path, h[0], h[1], h[2])

    def check(t: TrustedIndex, keyring: Keyring) -> None:
        eds = [s for s in keyring.signers("patches") if s.public_key.keytype == "ed25519"]
        env = sign_envelope(statement, eds)
        kw = {"target_path": path, "base_sha256": h[1], "target_sha256": h[0], "patch_sha256": h[2]}
        if t.patch_keys()[1] == 2 or t.require_algorithms:
            with pytest.raises(SignatureError, match="ml-dsa-65"):
                t.verify_patch(env, **kw)
        else:
            t.verify_patch(env, **kw)
        t.verify_patch(sign_envelope(statement, keyring.signers("patches")), **kw)

    with stack.trusted(tmp_path / "p1") as t:
        check(t, stack.keyring)
    with stack.trusted(tmp_path / "p1r", require_algorithms=("ml-dsa-65",)) as t:
        check(t, stack.keyring)
    keyring = Keyring(tmp_path / "k2", passphrase=PASSPHRASE)
    repo = TufRepository(tmp_path / "phase2", keyring, phases=dict.fromkeys(ROLES, 2))
    repo.init()
    _, cert, key = pki
    handle = start_server(
        RegistryApp(tmp_path / "phase2", patch_store=False), certfile=cert, keyfile=key, quic=False
    )
    try:
        with TrustedIndex(
            repo.trusted_root(),
            f"https://127.0.0.1:{handle.port}/",
            tmp_path / "p2",
            verify=stack.ca,
        ) as t:
            assert t.patch_keys()[1] == 2
            check(t, keyring)
    finally:
        handle.stop()
