"""Key rotations of the TUF repository, followed by python-tuf's ngclient over loopback HTTP:
root rotations signed by the old and the new root keys (in phase 1 and phase 2), a root
signed by new keys alone refused, rotations of every other role's keys, and a rotation away
from expired root keys."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from securesystemslib.signer import MLDSA_65_1, CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater, UpdaterConfig

from _servers import make_versions
from registry_core.index import Index
from registry_core.server import IndexApp, start_server
from registry_core.signing import Keyring, TufRepository

PASS = "rotation tests"
ROLES = ("root", "targets", "snapshot", "timestamp", "bins", "patches")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def wheels():
    return make_versions(2)


@pytest.fixture
def registry(tmp_path, wheels):
    """A served registry with one uploaded wheel; yields a function making one per keyring."""
    stack = []

    def make(keyring=None, **repo_kw):
        keyring = keyring or Keyring(tmp_path / f"keys{len(stack)}", passphrase=PASS)
        root = tmp_path / f"reg{len(stack)}"
        root.mkdir()
        index = Index(root)
        repo = TufRepository(index.storage.state_dir / "tuf", keyring, fsync=False, **repo_kw)
        repo.init()
        repo.attach(index)
        token, _ = index.create_token()
        record = index.upload("pkg-1.0-py3-none-any.whl", io.BytesIO(wheels[0][1]), token=token)
        app = IndexApp(index, tuf=repo)  # IndexApp wraps the repository in a TufApp
        server = start_server(app, tls=False)
        url = server.__enter__().url().rstrip("/")
        stack.append((server, app, index))
        clients = tmp_path / f"clients{len(stack)}"
        clients.mkdir()

        def updater(name="client"):
            (clients / name).mkdir(exist_ok=True)
            return Updater(
                str(clients / name),
                url + "/tuf/",
                str(clients),
                url + "/",
                config=UpdaterConfig(prefix_targets_with_hash=False),
                bootstrap=repo.trusted_root(),
            )

        return repo, keyring, record, updater, clients

    yield make
    for server, app, index in reversed(stack):
        server.__exit__(None, None, None)
        app.close()
        index.close()


def trusted_root_version(clients, name="client") -> int:
    return Metadata.from_bytes((clients / name / "root.json").read_bytes()).signed.version


def test_root_rotations_followed_by_ngclient(registry, tmp_path, wheels):
    repo, keyring, record, updater, clients = registry()
    client = updater()
    client.refresh()
    v1_keys = set(repo.metadata("root").signed.roles["root"].keyids)
    repo.rotate_root()
    root2 = repo.metadata("root")
    v2_keys = set(root2.signed.roles["root"].keyids)
    assert root2.signed.version == 2 and not v1_keys & v2_keys and len(v2_keys) == 2
    # signed by the old pair and the new pair
    assert set(root2.signatures) == v1_keys | v2_keys
    # the old root keys are retired: they can never sign again
    assert {k.key_id for k in keyring.keys("root")} == v2_keys
    repo.rotate_root()
    # an existing client (trusting v1) and a new one (bootstrapped with 1.root.json) follow
    for name in ("client", "new"):
        u = updater(name)
        u.refresh()
        assert trusted_root_version(clients, name) == 3
        info = u.get_targetinfo(record.path)
        out = u.download_target(info, str(tmp_path / f"{name}.whl"))
        assert Path(out).read_bytes() == wheels[0][1]


def test_root_rotation_in_phase_2(registry):
    repo, keyring, record, updater, clients = registry(phases={"root": 2})
    updater().refresh()
    repo.rotate_root()
    root = repo.metadata("root")
    assert root.signed.roles["root"].threshold == 2 and len(root.signatures) == 4
    u = updater()
    u.refresh()
    assert trusted_root_version(clients) == 2


def test_root_signed_by_new_keys_alone_refused(registry):
    repo, keyring, record, updater, clients = registry()
    updater().refresh()
    current = repo.metadata("root")
    new = Metadata.from_bytes(current.to_bytes())
    strangers = [CryptoSigner.generate_ed25519(), CryptoSigner.generate_mldsa(MLDSA_65_1)]
    for keyid in list(new.signed.roles["root"].keyids):
        new.signed.revoke_key(keyid, "root")
    for s in strangers:
        new.signed.add_key(s.public_key, "root")
    new.signed.version += 1
    new.signatures.clear()
    for s in strangers:
        new.sign(s, append=True)
    (repo.metadata_dir / "2.root.json").write_bytes(new.to_bytes(JSONSerializer(compact=True)))
    with pytest.raises(UnsignedMetadataError):
        updater().refresh()


def test_phase_2_root_rotation_needs_both_old_keys(registry):
    repo, keyring, record, updater, clients = registry(phases={"root": 2})
    updater().refresh()
    current = repo.metadata("root")
    new = Metadata.from_bytes(current.to_bytes())
    fresh = [CryptoSigner.generate_ed25519(), CryptoSigner.generate_mldsa(MLDSA_65_1)]
    old_ids = list(new.signed.roles["root"].keyids)
    for keyid in old_ids:
        new.signed.revoke_key(keyid, "root")
    for s in fresh:
        new.signed.add_key(s.public_key, "root")
    new.signed.version += 1
    new.signatures.clear()
    old_ed = next(k for k in old_ids if current.signed.keys[k].keytype == "ed25519")
    for s in [keyring.signer(old_ed), *fresh]:  # the old ML-DSA signature is missing
        new.sign(s, append=True)
    (repo.metadata_dir / "2.root.json").write_bytes(new.to_bytes(JSONSerializer(compact=True)))
    with pytest.raises(UnsignedMetadataError):
        updater().refresh()


@pytest.mark.parametrize("role", ["targets", "snapshot", "timestamp", "bins", "patches"])
def test_rotating_a_role_key_pair_is_followed(registry, role, tmp_path, wheels):
    repo, keyring, record, updater, clients = registry()
    updater().refresh()
    old = set(repo._current_keyids(role))
    old_patch_keys = repo.patch_keys()[0]
    repo.rotate_keys(role)
    new = set(repo._current_keyids(role))
    assert new and not old & new
    assert {k.key_id for k in keyring.keys(role)} == new  # the old pair is retired
    if role == "patches":
        assert set(repo.patch_keys()[0]) == new != set(old_patch_keys)
    u = updater()
    u.refresh()
    info = u.get_targetinfo(record.path)
    assert Path(u.download_target(info, str(tmp_path / "x.whl"))).read_bytes() == wheels[0][1]
    expected_root = 2 if role in ("targets", "snapshot", "timestamp") else 1
    assert trusted_root_version(clients) == expected_root


def test_rotation_away_from_expired_root_keys(registry, tmp_path):
    clock = Clock()
    keyring = Keyring(tmp_path / "clocked-keys", passphrase=PASS, clock=clock)
    for role in ROLES:
        keyring.generate_hybrid(role, valid_days=30 if role == "root" else 365)
    repo, keyring, record, updater, clients = registry(keyring)
    updater().refresh()
    clock.now += timedelta(days=31)  # the root pair has expired
    assert keyring.keys("root") == []
    repo.rotate_root()  # the expired keys still sign the rotation that replaces them
    assert trusted_root_version(clients) == 1
    u = updater()
    u.refresh()
    assert trusted_root_version(clients) == 2
    assert u.get_targetinfo(record.path) is not None
