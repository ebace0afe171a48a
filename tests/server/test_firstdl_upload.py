"""First downloads end to end: twine uploads a setuptools-built wheel and sdist to IndexApp on
a real loopback hypercorn server; the upload queues each file's EXPANDED patch; a client that
holds nothing and names ``expanded`` gets ``226`` with a patch that ``apply(b"", patch)``
turns into the exact file, and one that does not name it gets the file (docs/wire.md
section 3, "First downloads"). Waits are events (``precompute_idle``), never sleeps.
"""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest

from _packages import build_project, client_env, run, tool
from registry_core.delta import DeltaAggregator
from registry_core.flags import FeatureFlags
from registry_core.index import Index
from registry_core.server import IndexApp, RegistryApp, start_server

ON = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": True})
EMPTY = hashlib.sha256(b"").hexdigest()
TODAY = "zlib, miniz, recon, zstd-prefix, expanded, exe"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_project(tmp_path_factory.mktemp("built"), "First_Dl", "1.0", payload_kb=96)


@pytest.fixture()
def site(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    index = Index(store)
    raw, _ = index.create_token()
    # min_delta_saving=0: the small generated sdist saves under the default 10 %, and this
    # test follows every uploaded file to its 226 (the threshold is tested apart)
    files = RegistryApp(index.storage, flags=ON, min_delta_saving=0.0)
    app = IndexApp(index, files=files, serial_ttl=0)
    handle = start_server(app, tls=False)
    client = httpx.Client(base_url=handle.url(), timeout=60)
    try:
        yield index, files, raw, handle, client
    finally:
        client.close()
        handle.stop()
        app.close()
        index.close()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_twine_upload_then_first_download_is_a_verified_226(site, built):
    index, files, raw, handle, client = site
    run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            handle.url().rstrip("/") + "/legacy/",
            str(built.wheel),
            str(built.sdist),
        ],
        env=client_env(TWINE_USERNAME="__token__", TWINE_PASSWORD=raw),
    )
    assert files.precompute_idle(timeout=300)
    assert files.stats.first_downloads_computed == 2  # once per uploaded file, after upload
    for path in (built.wheel, built.sdist):
        data = path.read_bytes()
        sha = hashlib.sha256(data).digest()
        record = index.file(path.name)
        assert record is not None
        url = "/" + record.path
        r = client.get(url, headers={"a-im": "rcdelta", "delta-engines": TODAY})
        assert r.status_code == 226, (path.name, r.status_code)
        h = r.headers
        assert h["im"] == "rcdelta"
        assert h["delta-base"] == f'"{EMPTY}"'
        assert h["etag"] == f'"{sha.hex()}"'
        assert h["repr-digest"] == f"sha-256=:{_b64(sha)}:"
        assert h["content-digest"] == f"sha-256=:{_b64(hashlib.sha256(r.content).digest())}:"
        assert h["content-type"] == "application/vnd.registry-core.patch"
        assert h["cache-control"] == "no-transform"
        assert set(h["vary"].replace(" ", "").split(",")) == {
            "a-im",
            "if-none-match",
            "delta-engines",
        }
        assert len(r.content) < len(data)
        rebuilt = DeltaAggregator().apply(b"", r.content)
        assert hashlib.sha256(rebuilt).digest() == sha and rebuilt == data
        # a client that does not name ``expanded`` (today's delta client, a plain one): the file
        for headers in (
            {"a-im": "rcdelta", "delta-engines": "zlib, miniz, recon, zstd-prefix"},
            {},
        ):
            plain = client.get(url, headers=headers)
            assert plain.status_code == 200 and plain.content == data
    assert files.stats.first_downloads_served == 2
    assert files.stats.first_downloads_scheduled == 0  # nothing was left to a request
