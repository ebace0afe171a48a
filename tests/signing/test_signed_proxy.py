"""ProxyApp(trust=TrustedIndex): files are checked against the upstream's TUF metadata (and
patches against their envelopes) before they are stored, whatever the project page says."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from _signed_stack import build_stack, record

from _servers import flags, pki  # noqa: F401 (fixture)
from registry_core.index._simple import JSON_V1, SimpleFile, SimpleProject, render_project
from registry_core.proxy import ProxyApp

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pki):  # noqa: F811
    s = build_stack(tmp_path_factory.mktemp("signed-proxy"), pki)
    # a file whose bytes on the upstream (and on its page) are not the ones TUF lists
    evil_path = "pkg/pkg-9.9-py3-none-any.whl"
    evil = s.versions[2][1] + b"\0not what was released"
    (s.root / evil_path).write_bytes(evil)
    s.repo.add_targets([record(evil_path, s.versions[2][1])])
    files = [(p, d) for p, d in s.versions] + [(evil_path, evil)]
    page = SimpleProject(
        "pkg",
        tuple(
            SimpleFile(p.rsplit("/", 1)[1], s.url(p), {"sha256": hashlib.sha256(d).hexdigest()})
            for p, d in files
        ),
        versions=("1.0", "1.1", "1.2", "9.9"),
    )
    s.tamper.pages["/simple/pkg/"] = render_project(page, JSON_V1)
    yield s
    s.close()


def _proxy(stack, tmp_path, trusted) -> ProxyApp:
    return ProxyApp(
        f"https://127.0.0.1:{stack.files.port}",
        tmp_path / "cache",
        verify=stack.ca,
        flags=flags(QUIC_TRANSPORT=False),
        trust=trusted,
    )


def _get_all(app: ProxyApp, paths: list[str]) -> list[httpx.Response]:
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as c:
            out = [await c.get(p) for p in paths]
        await app.aclose()
        return out

    return asyncio.run(main())


def test_proxy_with_trust_serves_verified_files_and_deltas(stack, tmp_path):
    trusted = stack.trusted(tmp_path / "tuf")
    try:
        app = _proxy(stack, tmp_path, trusted)
        names = [p.rsplit("/", 1)[1] for p, _ in stack.versions]
        r0, r1 = _get_all(app, [f"/files/pkg/{names[0]}", f"/files/pkg/{names[1]}"])
        assert r0.status_code == 200 and r0.content == stack.versions[0][1]
        assert r1.status_code == 200 and r1.content == stack.versions[1][1]
        assert app.stats.deltas == 1  # the second came as a signed, verified patch
    finally:
        trusted.close()


def test_proxy_refuses_a_file_tuf_does_not_sign_even_if_the_page_does(stack, tmp_path):
    trusted = stack.trusted(tmp_path / "tuf")
    try:
        app = _proxy(stack, tmp_path, trusted)
        (r,) = _get_all(app, ["/files/pkg/pkg-9.9-py3-none-any.whl"])
        assert r.status_code == 502
        assert b"TUF" in r.content
        assert not (tmp_path / "cache" / "files" / "pkg" / "pkg-9.9-py3-none-any.whl").exists()
        assert app.stats.corrupt_refused >= 1
    finally:
        trusted.close()


def test_proxy_without_trust_takes_the_pages_word(stack, tmp_path):
    """The contrast: the same lying page is believed without a trust root."""
    app = ProxyApp(
        f"https://127.0.0.1:{stack.files.port}",
        tmp_path / "cache",
        verify=stack.ca,
        flags=flags(QUIC_TRANSPORT=False),
    )
    (r,) = _get_all(app, ["/files/pkg/pkg-9.9-py3-none-any.whl"])
    assert r.status_code == 200 and r.content.endswith(b"not what was released")
