"""An Index and IndexApp on S3Storage (moto's server) with SQLite in a local state directory:
twine uploads over HTTPS, pip installs, the files live in the bucket and nothing else does,
a second Index on the same bucket and database sees them, and a tampered object is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from _moto import moto  # noqa: F401 (the session fixture)
from _packages import build_project, client_env, run, tool
from _servers import pki  # noqa: F401 (the session fixture)
from registry_core.auth import TenantStore
from registry_core.index import Index, SQLiteIndexDB
from registry_core.server import IndexApp, start_server
from registry_core.storage import S3Storage


def _env(ca: str) -> dict[str, str]:
    return client_env(REQUESTS_CA_BUNDLE=ca, CURL_CA_BUNDLE=ca, SSL_CERT_FILE=ca, SSL_CERT_DIR="")


def _pip(url: str, ca: str, target: Path, *args: str, check: bool = True):
    return run(
        [
            tool("pip"),
            "install",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            str(target),
            "--index-url",
            url + "simple/",
            "--cert",
            ca,
            "--report",
            str(target) + ".report.json",
            "--retries",
            "0",
            "--no-cache-dir",
            *args,
        ],
        env=_env(ca),
        check=check,
    )


@pytest.fixture()
def s3_index(tmp_path, moto):  # noqa: F811
    bucket = moto.bucket()
    state = tmp_path / "state"
    state.mkdir()

    def make() -> Index:
        storage = S3Storage(bucket, prefix="acme/main", endpoint_url=moto.endpoint_url)
        return Index(
            storage,
            db=SQLiteIndexDB(state / "index.sqlite3"),
            auth=TenantStore(state / "tenant.sqlite3", tenant="default"),
        )

    return make, bucket, state


def test_twine_upload_pip_install_on_s3(tmp_path, s3_index, moto, pki):  # noqa: F811
    make, bucket, state = s3_index
    ca, cert, key = pki
    built = build_project(tmp_path / "b", "gamma", "1.0", payload_kb=16)
    index = make()
    token, _ = index.create_token(description="s3 test")
    app = IndexApp(index)
    handle = start_server(app, certfile=cert, keyfile=key, quic=False)
    try:
        url = handle.url()
        proc = run(
            [
                tool("twine"),
                "upload",
                "--non-interactive",
                "--disable-progress-bar",
                "--repository-url",
                url + "legacy/",
                "--cert",
                ca,
                "-u",
                "__token__",
                "-p",
                token,
                str(built.wheel),
                str(built.sdist),
            ],
            env=_env(ca),
        )
        assert token not in proc.stdout + proc.stderr
        target = tmp_path / "t"
        _pip(url, ca, target, "gamma")
        report = json.loads(Path(str(target) + ".report.json").read_text())
        assert [i["metadata"]["name"] for i in report["install"]] == ["gamma"]
        assert (target / "gamma" / "__init__.py").exists()

        # the files are objects in the bucket (digests as metadata); no database in it
        rec = index.file(built.wheel.name)
        assert rec is not None
        client = moto.client()
        head = client.head_object(Bucket=bucket, Key=f"acme/main/{rec.path}")
        assert head["Metadata"]["sha256"] == hashlib.sha256(built.wheel.read_bytes()).hexdigest()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert all(k.startswith("acme/main/") for k in keys)
        artifacts = sorted(index.storage.walk())
        assert len(artifacts) == 2 and not any("sqlite" in k for k in keys)
        assert sorted(p.name for p in state.iterdir() if p.suffix == ".sqlite3") == [
            "index.sqlite3",
            "tenant.sqlite3",
        ]

        # a tampered wheel in the bucket is never served: pip fails, nothing installed
        client.put_object(
            Bucket=bucket,
            Key=f"acme/main/{rec.path}",
            Body=b"PK" + b"\0" * 100,
            Metadata={"sha256": rec.sha256},
        )
        bad = tmp_path / "t2"
        proc = _pip(url, ca, bad, "gamma", check=False)
        assert proc.returncode != 0 and "500" in proc.stdout + proc.stderr  # refused
        assert not (bad / "gamma").exists()
    finally:
        handle.stop()
        app.close()
        index.close()


def test_second_index_on_the_same_bucket_and_database_sees_the_files(tmp_path, s3_index):
    make, _, _ = s3_index
    built = build_project(tmp_path / "b", "delta-pkg", "1.0", payload_kb=4)
    first = make()
    token, _ = first.create_token(description="s3 test")
    with open(built.wheel, "rb") as f:
        first.upload(built.wheel.name, f, token=token)
    first.close()
    with make() as second:
        rec = second.file(built.wheel.name)
        assert rec is not None
        assert second.storage.read(rec.path) == built.wheel.read_bytes()
        report = second.rebuild()
        assert report.unchanged == 1 and report.rejected == ()


def test_registry_app_serves_full_bodies_and_ranges_from_s3(moto):  # noqa: F811
    import asyncio

    from registry_core.server import RegistryApp

    store = S3Storage(moto.bucket(), endpoint_url=moto.endpoint_url)
    data = bytes(range(256)) * 8192  # 2 MiB: streamed, not prefetched
    store.put("p/r-1.0.tar.gz", data)
    app = RegistryApp(store)

    async def go():
        full = await app.handle("GET", "/p/r-1.0.tar.gz", {})
        part = await app.handle("GET", "/p/r-1.0.tar.gz", {"Range": "bytes=1000000-1000099"})
        missing = await app.handle("GET", "/p/none.tar.gz", {})
        return full, part, missing

    (s1, h1, b1), (s2, _, b2), (s3, _, _) = asyncio.run(go())
    assert s1 == 200 and b1 == data
    digest = dict(h1)["repr-digest"]
    assert digest.startswith("sha-256=")
    assert s2 == 206 and b2 == data[1_000_000:1_000_100]
    assert s3 == 404
