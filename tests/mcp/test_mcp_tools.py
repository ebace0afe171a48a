"""The MCP tools' logic (registry_core.mcp._tools.RegistryTools, no SDK in the way) against a
real index: served on loopback (``IndexApp`` over ``start_server(tls=False)``, releases built
by setuptools) and the same index directory opened locally."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _mcp_harness import Site
from _packages import build_project
from registry_core.errors import (
    PermissionDeniedError,
    ProjectNotFoundError,
    UploadRejectedError,
)
from registry_core.flags import FeatureFlags
from registry_core.mcp import RegistryTools

pytestmark = pytest.mark.network


@pytest.fixture(params=["remote", "local"])
def tools(request, site, work):
    where = {"registry": site.url} if request.param == "remote" else {"directory": site.directory}
    t = RegistryTools(roots=[work], flags=FeatureFlags(), **where)
    yield t
    asyncio.run(t.aclose())


def run(coro):
    return asyncio.run(coro)


def wheel(site: Site, key: str) -> str:
    return site.releases[key].wheel.name


def test_search_versions_metadata(tools, site) -> None:
    async def go():
        found = await tools.search_projects("ALP")
        assert (found.total, found.projects) == (1, ["alpha"])
        assert (await tools.search_projects("", limit=1)).total == 2
        versions = await tools.list_versions("Alpha")
        assert versions.latest == "1.1"
        assert [(v.version, v.files, v.yanked) for v in versions.versions] == [
            ("1.1", 2, False),
            ("1.0", 2, False),
        ]
        meta = await tools.project_metadata("alpha")
        assert (meta.project, meta.version, meta.summary) == ("alpha", "1.1", "a test package")
        assert meta.uri == f"registry://{tools.name}/alpha/1.1"
        assert {f.filename for f in meta.files} == {
            wheel(site, "alpha-1.1"),
            site.releases["alpha-1.1"].sdist.name,
        }
        wheel_info = next(f for f in meta.files if f.kind == "wheel")
        blob = site.releases["alpha-1.1"].wheel.read_bytes()
        assert wheel_info.sha256 == hashlib.sha256(blob).hexdigest()
        assert wheel_info.size == len(blob) and wheel_info.has_metadata
        old = await tools.project_metadata("alpha", "1.0")
        assert old.version == "1.0"
        with pytest.raises(ProjectNotFoundError, match="no version '9.9'"):
            await tools.project_metadata("alpha", "9.9")
        with pytest.raises(ProjectNotFoundError, match="no project 'nope'"):
            await tools.list_versions("nope")

    run(go())


def test_plan_upgrade(tools, site) -> None:
    async def go():
        plan = await tools.plan_upgrade(
            ["alpha>=1.1", "beta", "gamma", "alpha-old==1.0; python_version < '3'"],
            {"alpha": "1.0"},
            compute_deltas=True,
        )
        alpha, beta, gamma, skipped = plan.entries
        assert (alpha.action, alpha.version, alpha.installed) == ("upgrade", "1.1", "1.0")
        assert alpha.filename == wheel(site, "alpha-1.1") and alpha.base == wheel(site, "alpha-1.0")
        assert alpha.full_bytes == site.releases["alpha-1.1"].wheel.stat().st_size
        assert alpha.delta_bytes is not None and 0 < alpha.delta_bytes < alpha.full_bytes / 2
        assert alpha.transfer_bytes == alpha.delta_bytes
        assert (beta.action, beta.base, beta.delta_bytes) == ("install", None, None)
        assert beta.transfer_bytes == beta.full_bytes > 0
        assert (gamma.action, gamma.reason) == ("unavailable", "no such project in the index")
        assert skipped.action == "skip"
        assert plan.changes == 2
        assert plan.transfer_bytes == alpha.delta_bytes + beta.full_bytes
        assert plan.full_bytes == alpha.full_bytes + beta.full_bytes
        same = await tools.plan_upgrade(["alpha"], {"alpha": "1.1"})
        assert same.entries[0].action == "keep" and same.changes == 0
        remembered = await tools.plan_upgrade(["alpha"], {"alpha": "1.0"})
        assert remembered.entries[0].delta_bytes == alpha.delta_bytes  # computed once, kept
        fresh = (
            RegistryTools(registry=tools.base_url)
            if tools.base_url
            else RegistryTools(directory=tools.directory)
        )
        unknown = await fresh.plan_upgrade(["alpha"], {"alpha": "1.0"})
        assert unknown.entries[0].delta_bytes is None  # nothing precomputed, not asked to diff
        assert unknown.entries[0].transfer_bytes == unknown.entries[0].full_bytes
        await fresh.aclose()

    run(go())


def test_fetch_diff_apply_inspect(tools, site, work) -> None:
    new = site.releases["alpha-1.1"].wheel.read_bytes()

    async def go():
        got = await tools.fetch("alpha", "1.1", have_path=wheel(site, "alpha-1.0"))
        assert got.sha256 == hashlib.sha256(new).hexdigest() and got.size == len(new)
        assert got.mime_type == "application/zip" and got.path is None
        assert tools.blobs.get("artifact", got.sha256).data == new
        if tools.local:
            assert got.how == "local"
        else:
            assert got.how == "delta" and got.transferred_bytes < len(new) / 2
        sdist = await tools.fetch("alpha", filename=site.releases["alpha-1.0"].sdist.name)
        assert sdist.mime_type == "application/gzip"
        patch = await tools.diff(wheel(site, "alpha-1.0"), wheel(site, "alpha-1.1"))
        assert (
            patch.uri
            == f"registry://{tools.name}/-/patch/{tools.blobs.get('patch', patch.uri[-64:]).sha256}"
        )
        assert patch.target_sha256 == got.sha256 and patch.size < len(new)
        info = await tools.inspect_patch(patch.uri)
        assert (info.method, info.size) == (patch.method, patch.size)
        rebuilt = await tools.apply(wheel(site, "alpha-1.0"), patch.uri)
        assert rebuilt.sha256 == got.sha256 and rebuilt.how == "patch"
        stats = await tools.cache_stats()
        assert stats.resources["entries"] >= 3
        assert stats.build_cache is None
        assert sorted(p.name for p in work.iterdir()) == sorted(
            [wheel(site, "alpha-1.0"), wheel(site, "alpha-1.1")]
        )  # nothing written without output paths

    run(go())


def test_verify_and_flags(tools, site, work) -> None:
    async def go():
        ok = await tools.verify(wheel(site, "alpha-1.1"))
        assert ok.ok and ok.reason == "sha256 matches the index"
        bad = await tools.verify(wheel(site, "alpha-1.0"), filename=wheel(site, "alpha-1.1"))
        assert not bad.ok and bad.expected_sha256 == ok.sha256
        flags = await tools.flags_tool()
        assert {f.name for f in flags.flags} >= {"DELTA_AGGREGATOR", "INCREMENTAL_CACHE"}
        assert flags.overridden == []
        with pytest.raises(PermissionDeniedError, match="allow_write"):
            await tools.flags_tool({"DELTA_AGGREGATOR": False})

    run(go())


def test_writes_with_allow_write(site, tmp_path) -> None:
    """publish (local and remote), output paths and flag overrides, only with allow_write."""
    work = tmp_path / "w"
    work.mkdir()
    built = {v: build_project(tmp_path / "b", "gamma-pkg", v, payload_kb=4) for v in ("2.0", "2.1")}
    shutil.copy(built["2.0"].wheel, work)
    shutil.copy(built["2.1"].sdist, work)
    shutil.copy(built["2.1"].wheel, work)
    raw = built["2.0"].wheel.read_bytes()

    async def go():
        remote = RegistryTools(registry=site.url, roots=[work], allow_write=True, token=site.token)
        local = RegistryTools(
            directory=site.directory, roots=[work], allow_write=True, token=site.token
        )
        try:
            pub = await remote.publish(built["2.0"].wheel.name)
            assert (pub.project, pub.version, pub.size) == ("gamma-pkg", "2.0", len(raw))
            again = await remote.publish(built["2.0"].wheel.name)  # same bytes: idempotent
            assert again.sha256 == pub.sha256
            assert [v.version for v in (await remote.list_versions("gamma-pkg")).versions] == [
                "2.0"
            ]
            assert (await local.list_versions("gamma-pkg")).latest == "2.0"
            pub2 = await remote.publish(built["2.1"].sdist.name)  # the pages cached above go stale
            assert pub2.filename == built["2.1"].sdist.name
            assert [v.version for v in (await remote.list_versions("gamma-pkg")).versions] == [
                "2.1",
                "2.0",
            ]
            pub3 = await local.publish(built["2.1"].wheel.name)
            assert pub3.filename == built["2.1"].wheel.name
            listed = await local.list_versions("gamma-pkg")
            assert [(v.version, v.files) for v in listed.versions] == [("2.1", 2), ("2.0", 1)]
            got = await remote.fetch("gamma-pkg", "2.0", output_path="copy.whl")
            assert (work / "copy.whl").read_bytes() == raw and got.path == str(
                (work / "copy.whl").resolve()
            )
            patch = await local.diff(built["2.0"].wheel.name, "copy.whl", output_path="p.rcp")
            assert (work / "p.rcp").read_bytes() == local.blobs.get("patch", patch.uri[-64:]).data
            out = await local.apply(built["2.0"].wheel.name, "p.rcp", output_path="again.whl")
            assert (work / "again.whl").read_bytes() == raw and out.filename == "again.whl"
            flags = await local.flags_tool({"DELTA_AGGREGATOR": False})
            assert flags.overridden == ["DELTA_AGGREGATOR"]
            state = {f.name: f for f in flags.flags}["DELTA_AGGREGATOR"]
            assert (state.value, state.source) == ("False", "override")
            bad = RegistryTools(registry=site.url, roots=[work], allow_write=True, token="rc-x-y")
            with pytest.raises(UploadRejectedError) as err:
                await bad.publish(built["2.0"].wheel.name)
            assert err.value.status in (401, 403) and "rc-x-y" not in str(err.value)
            await bad.aclose()
            noauth = RegistryTools(registry=site.url, roots=[work], allow_write=True)
            with pytest.raises(PermissionDeniedError, match="token"):
                await noauth.publish(built["2.0"].wheel.name)
        finally:
            await remote.aclose()
            await local.aclose()

    run(go())


def test_security_report(site, tmp_path) -> None:
    """From the TUF metadata of a local registry directory; refused for a remote registry."""
    from registry_core.signing import Keyring
    from registry_core.signing._tuf import TufRepository

    remote = RegistryTools(registry=site.url)
    with pytest.raises(Exception, match="local index directory"):
        run(remote.security_report())
    registry = tmp_path / "registry"
    registry.mkdir()
    repo = TufRepository(
        registry / ".registry-core" / "tuf",
        Keyring(tmp_path / "keys", passphrase="mcp-test-passphrase"),
        fsync=False,
    )
    repo.init()
    from registry_core.index import Index

    index = Index(registry)
    raw, _ = index.create_token()
    wheel_path = site.releases["beta-1.0"].wheel
    with open(wheel_path, "rb") as f:
        index.upload(wheel_path.name, f, token=raw)
    repo.sync(index)
    index.close()
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(wheel_path, work)
    (work / "other").mkdir()
    (work / "other" / wheel_path.name).write_bytes(b"not the signed bytes")
    local = RegistryTools(directory=registry, roots=[work])
    report = run(local.security_report())
    assert 0.0 <= report["compliance_score"] <= 1.0 and report["keys_total"] > 0
    assert "passphrase" not in str(report)
    good = run(local.verify(wheel_path.name))
    assert (good.ok, good.signed) == (True, True), good
    assert good.signature == "matches the signed TUF targets metadata"
    bad = run(local.verify(f"other/{wheel_path.name}"))
    assert (bad.ok, bad.signed) == (False, False)
    run(local.aclose())
    unsigned = RegistryTools(directory=site.directory, roots=[work])
    plain = run(unsigned.verify(wheel_path.name))
    assert (plain.ok, plain.signed) == (True, None)
    run(unsigned.aclose())


def test_configuration_refused(tmp_path) -> None:
    from registry_core.errors import InvalidArgumentError

    for kwargs in (
        {},
        {"registry": "http://x", "directory": tmp_path},
        {"registry": "ftp://x"},
        {"registry": "https://user:secret@example.test/"},
        {"registry": "https://example.test/?token=secret"},
        {"directory": tmp_path / "missing"},
        {"directory": tmp_path, "max_bytes": 0},
        {"directory": tmp_path, "roots": [tmp_path / "missing"]},
    ):
        with pytest.raises(InvalidArgumentError):
            RegistryTools(**kwargs)
    t = RegistryTools(registry="https://example.test/simple/", token="rc-secret-token")
    assert t.base_url == "https://example.test" and t.name == "example.test"
    assert "rc-secret-token" not in repr(t)
