"""ModelRegistry: models as signed wheels in our own index; promotion, rollback, checked loads."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _packages import client_env, run, tool
from _servers import pki  # noqa: F401 (the session fixture)
from registry_core.audit import MemorySink
from registry_core.auth import Principal
from registry_core.errors import (
    InvalidArgumentError,
    ModelError,
    NotFoundError,
    PermissionDeniedError,
)
from registry_core.index import Index
from registry_core.ml._artifact import ModelArtifact
from registry_core.ml._registry import ModelRegistry, build_wheel, model_project, wheel_filename


def _artifact(tag: str = "a", **over) -> ModelArtifact:
    fields = dict(
        kind="tree-ensemble",
        payload=b"payload-" + tag.encode(),
        metrics={"brier": 0.1, "accuracy": 0.9},
        data_sha256="ab" * 32,
        feature_names=("x", "y"),
        card=f"# model {tag}\n",
        created=1_700_000_000.0,
    )
    fields.update(over)
    return ModelArtifact(**fields)


def _store(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir(exist_ok=True)
    return tmp_path / "store"


@pytest.fixture()
def index(tmp_path):
    with Index(_store(tmp_path)) as idx:
        yield idx


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    pytest.importorskip("securesystemslib")
    from registry_core.signing import Keyring

    ring = Keyring(tmp_path_factory.mktemp("keys"), insecure_plaintext=True)
    ring.generate_hybrid("models")
    return ring


def test_publish_stores_a_real_wheel_in_the_index(tmp_path):
    sink = MemorySink()
    index = Index(_store(tmp_path), audit=sink)
    reg = ModelRegistry(index, state_dir=tmp_path / "state")
    v1 = reg.publish(_artifact("one"), name="next-download")
    v2 = reg.publish(_artifact("two"), name="next-download")
    assert (v1.version, v2.version) == ("1", "2")
    files = index.files(model_project("next-download"))
    assert [f.filename for f in files] == [
        "rc_model_next_download-1-py3-none-any.whl",
        "rc_model_next_download-2-py3-none-any.whl",
    ]
    assert files[1].sha256 == v2.sha256 and files[1].version == "2"
    meta = index.metadata(files[1].filename).decode()
    assert "Name: rc-model-next-download" in meta and "Version: 2" in meta
    wheel = index.storage.read(files[1].path)
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        names = zf.namelist()
        art = ModelArtifact.from_bytes(zf.read("rc_model_next_download/model.rcml"))
        record = zf.read("rc_model_next_download-2.dist-info/RECORD").decode()
    assert art.version == "2" and art.name == "next-download" and art.payload == b"payload-two"
    assert "rc_model_next_download-2.dist-info/WHEEL" in names
    assert "rc_model_next_download/model.rcml,sha256=" in record
    kinds = [e.kind for e in sink.events]
    assert kinds == ["upload", "ml.model.publish"] * 2  # the index audits the upload too
    index.close()


def test_wheel_is_deterministic():
    art = _artifact(name="m", version="3")
    assert build_wheel(art, None) == build_wheel(art, None)
    assert wheel_filename("m-x", 3) == "rc_model_m_x-3-py3-none-any.whl"


def test_promote_rollback_history_and_load(index, tmp_path):
    sink = MemorySink()
    reg = ModelRegistry(index, state_dir=tmp_path / "state", audit=sink)
    for tag in "abc":
        reg.publish(_artifact(tag), name="m")
    with pytest.raises(NotFoundError):
        reg.load("m")
    assert reg.current("m") is None
    reg.promote("m", 1)
    reg.promote("m", "3")
    reg.promote("m", 2, stage="staging")
    assert reg.load("m").payload == b"payload-c"
    assert reg.load("m", "staging").payload == b"payload-b"
    assert reg.stage_history("m") == ["1", "3"]
    back = reg.rollback("m")
    assert back.version == "1" and reg.load("m").payload == b"payload-a"
    with pytest.raises(InvalidArgumentError, match="no earlier version"):
        reg.rollback("m")
    stages = {v.version: v.stages for v in reg.history("m")}
    assert stages == {"1": ("production",), "2": ("staging",), "3": ()}
    assert reg.names() == ["m"]
    with pytest.raises(NotFoundError):
        reg.promote("m", 9)
    kinds = [e.kind for e in sink.events if e.kind.startswith("ml.")]
    assert kinds == ["ml.model.publish"] * 3 + ["ml.model.promote"] * 3 + ["ml.model.rollback"]
    # a second registry over the same index and state sees the same pointers
    assert ModelRegistry(index, state_dir=tmp_path / "state").load("m").payload == b"payload-a"


def test_signed_models_verify_and_unsigned_are_refused(index, tmp_path, keyring):
    trusted = keyring.public_keys("models")
    signer = keyring.signers("models")
    algs = ("ed25519", "ml-dsa-65")
    signing = ModelRegistry(index, state_dir=tmp_path / "s", signer=signer)
    v = signing.publish(_artifact("signed"), name="sig")
    assert v.signed
    signing.promote("sig", v.version)
    verifying = ModelRegistry(
        index, state_dir=tmp_path / "s", trusted_keys=trusted, threshold=2, require_algorithms=algs
    )
    assert verifying.load("sig").payload == b"payload-signed"
    # unsigned: refused by a verifying registry, fine for a plain one
    plain = ModelRegistry(index, state_dir=tmp_path / "s")
    u = plain.publish(_artifact("unsigned"), name="sig")
    plain.promote("sig", u.version)
    assert plain.load("sig").payload == b"payload-unsigned"
    with pytest.raises(ModelError, match="not signed"):
        verifying.load("sig")
    # signed by a key that is not trusted
    from registry_core.signing import Keyring

    other = Keyring(tmp_path / "other", insecure_plaintext=True)
    other.generate("models", "ed25519")
    rogue = ModelRegistry(index, state_dir=tmp_path / "s", signer=other.signers("models"))
    r = rogue.publish(_artifact("rogue"), name="sig")
    rogue.promote("sig", r.version)
    with pytest.raises(ModelError, match="signatures valid"):
        verifying.load("sig")


def test_tampering_is_detected(tmp_path):
    with Index(_store(tmp_path)) as index:
        reg = ModelRegistry(index, state_dir=tmp_path / "state")
        v = reg.publish(_artifact("x"), name="t")
        record = index.file(v.filename)
        path = tmp_path / "store" / record.path
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(ModelError, match="does not match"):
            reg.load_version("t", v.version)


def test_pinned_digest_is_checked_against_the_index(index, tmp_path):
    reg = ModelRegistry(index, state_dir=tmp_path / "state")
    v = reg.publish(_artifact("x"), name="p")
    state = tmp_path / "state" / "models" / "p.json"
    state.write_text(state.read_text().replace(v.sha256, "0" * 64))
    with pytest.raises(ModelError, match="published as"):
        reg.load_version("p", "1")
    state.write_text("not json")
    with pytest.raises(ModelError, match="not JSON"):
        reg.history("p")


def test_publish_is_authorized_by_the_index(index, tmp_path):
    reg = ModelRegistry(index, state_dir=tmp_path / "state")
    stranger = Principal(tenant=index.tenant, subject="user:eve", method="token")
    with pytest.raises(PermissionDeniedError):
        reg.publish(_artifact(), name="guarded", principal=stranger)
    assert index.files(model_project("guarded")) == []
    assert reg.history("guarded") == []
    reg.publish(_artifact(), name="guarded")
    with pytest.raises(PermissionDeniedError):
        reg.promote("guarded", 1, principal=stranger)


def test_versions_stay_monotonic_across_state_loss(index, tmp_path):
    ModelRegistry(index, state_dir=tmp_path / "a").publish(_artifact("1"), name="mono")
    # a registry with fresh state still continues from the index's versions
    v = ModelRegistry(index, state_dir=tmp_path / "b").publish(_artifact("2"), name="mono")
    assert v.version == "2"


@pytest.mark.parametrize("name", ["", "A", "-x", "x-", "a--b", "x" * 65, "a/b"])
def test_bad_names_refused(index, tmp_path, name):
    with pytest.raises(InvalidArgumentError):
        ModelRegistry(index, state_dir=tmp_path).publish(_artifact(), name=name)


def test_pip_downloads_the_model_from_our_index(tmp_path, pki):  # noqa: F811
    from registry_core.server import IndexApp, start_server

    ca, cert, key = pki
    with Index(_store(tmp_path)) as index:
        reg = ModelRegistry(index, state_dir=tmp_path / "state")
        reg.publish(_artifact("1"), name="dl")
        v2 = reg.publish(_artifact("2"), name="dl")
        app = IndexApp(index)
        handle = start_server(app, certfile=cert, keyfile=key, quic=False)
        try:
            out = tmp_path / "dl"
            env = client_env(
                REQUESTS_CA_BUNDLE=ca, CURL_CA_BUNDLE=ca, SSL_CERT_FILE=ca, SSL_CERT_DIR=""
            )
            run(
                [
                    tool("pip"),
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--index-url",
                    handle.url() + "simple/",
                    "--cert",
                    ca,
                    "--retries",
                    "0",
                    "-d",
                    str(out),
                    "rc-model-dl",
                ],
                env=env,
            )
        finally:
            handle.stop()
            app.close()
        got = list(out.iterdir())
        assert [p.name for p in got] == [v2.filename]
        assert hashlib.sha256(got[0].read_bytes()).hexdigest() == v2.sha256
