"""Tenant isolation end to end: two tenants behind one MultiTenantApp on a real loopback server.

acme is reached by host (acme.test) and by path (/t/acme), globex (private) likewise. Every
cross-tenant attempt -- a token of one on the other by host and by path, crafted Host and
path combinations, the other's ETags in conditional and delta requests, listings, whoami,
uploads -- must get the uniform 404, byte-identical (headers minus Date) to an unknown
tenant's, and must leave the other tenant untouched. Then the role matrix with real clients:
a reader installs with pip but twine's upload is refused 403, an uploader uploads a new
release of an existing project but cannot create one, a maintainer can.
"""

from __future__ import annotations

import hashlib
import socket

import httpx
import pytest

from _dists import make_wheel
from _packages import build_project, client_env, run, tool
from registry_core.config import parse
from registry_core.flags import FeatureFlags
from registry_core.server import MultiTenantApp, start_server

JSON_V1 = "application/vnd.pypi.simple.v1+json"
UNIFORM = b"404 Not Found\n"

CONFIG = """
version = 2
[server]
tls = "plain-http"
port = 0
[storage]
directory = "{root}"

[tenants.acme]
plan = "enterprise"
domains = ["acme.test"]
[tenants.acme.roles]
"user:alice" = ["owner@*"]
"user:bob" = ["reader@main"]
"user:uma" = ["uploader@main"]
"user:max" = ["maintainer@main"]

[tenants.globex]
plan = "enterprise"
domains = ["globex.test"]
[tenants.globex.roles]
"user:carol" = ["owner@*"]
"""

ALL = "read,upload,create,yank:*"


def _token(app, tenant, owner):
    raw, _ = app.tenants[tenant].store.create_token(
        owner=owner, scopes=[_scope(tenant, ALL)], description=f"{owner} test token"
    )
    return raw


def _scope(tenant, text):
    from registry_core.auth import Scope

    return Scope.parse(tenant, text)


def _upload_form(filename, blob):
    data = {
        ":action": "file_upload",
        "protocol_version": "1",
        "sha256_digest": hashlib.sha256(blob).hexdigest(),
    }
    return {"data": data, "files": {"content": (filename, blob)}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tenants")
    config = parse(CONFIG.format(root=root), source="test")
    flags = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "QUIC_TRANSPORT": False})
    app = MultiTenantApp(config, flags=flags)
    handle = start_server(app, tls=False)
    tokens = {
        "alice": _token(app, "acme", "user:alice"),
        "bob": _token(app, "acme", "user:bob"),
        "uma": _token(app, "acme", "user:uma"),
        "max": _token(app, "acme", "user:max"),
        "carol": _token(app, "globex", "user:carol"),
    }
    client = httpx.Client(base_url=handle.url(), follow_redirects=False, timeout=30)
    # the same project name in both tenants, different bytes; one project only globex has
    acme_wheel = make_wheel("shared-pkg", "1.0", members={"shared_pkg/a.py": b"A = 1\n" * 50})
    globex_wheel = make_wheel("shared-pkg", "1.0", members={"shared_pkg/a.py": b"B = 2\n" * 50})
    secret = make_wheel("globex-secret", "1.0")
    name = "shared_pkg-1.0-py3-none-any.whl"
    for who, base, blob, filename in [
        ("alice", "/t/acme/main", acme_wheel, name),
        ("carol", "/t/globex/main", globex_wheel, name),
        ("carol", "/t/globex/main", secret, "globex_secret-1.0-py3-none-any.whl"),
    ]:
        r = client.post(
            base + "/legacy/", auth=("__token__", tokens[who]), **_upload_form(filename, blob)
        )
        assert r.status_code == 200, r.text
    try:
        yield {
            "app": app,
            "handle": handle,
            "client": client,
            "tokens": tokens,
            "acme_wheel": acme_wheel,
            "globex_wheel": globex_wheel,
            "wheel_name": name,
            "root": root,
        }
    finally:
        client.close()
        handle.stop()
        app.close()


def _shape(r: httpx.Response):
    """Status, headers (minus Date), body: what must not differ between two refusals."""
    headers = sorted((k.lower(), v) for k, v in r.headers.items() if k.lower() != "date")
    return r.status_code, headers, r.content


@pytest.fixture(scope="module")
def unknown(site):
    """The answer for a tenant that does not exist (by host and by path: the same)."""
    c = site["client"]
    by_path = c.get("/t/initech/main/simple/")
    by_host = c.get("/main/simple/", headers={"host": "initech.test"})
    assert by_path.status_code == 404 and by_path.content == UNIFORM
    assert _shape(by_path) == _shape(by_host)
    assert by_path.headers["content-type"] == "text/plain; charset=utf-8"
    return _shape(by_path)


def _auth(site, who):
    return {"authorization": "Bearer " + site["tokens"][who]}


def test_own_tenant_works_by_host_and_by_path(site):
    c = site["client"]
    for kwargs, prefix in [({"headers": {"host": "acme.test"}}, ""), ({}, "/t/acme")]:
        headers = {**kwargs.get("headers", {}), **_auth(site, "alice"), "accept": JSON_V1}
        r = c.get(f"{prefix}/main/simple/shared-pkg/", headers=headers)
        assert r.status_code == 200, r.text
        (f,) = r.json()["files"]
        # links are written under the base the request came in on
        assert f["url"] == f"{prefix}/main/shared-pkg/{site['wheel_name']}"
        got = c.get(f["url"], headers=headers)
        assert got.status_code == 200 and got.content == site["acme_wheel"]


@pytest.mark.parametrize(
    "path",
    [
        "/main/simple/",
        "/main/simple/shared-pkg/",
        "/main/simple/globex-secret/",
        "/main/shared-pkg/shared_pkg-1.0-py3-none-any.whl",
        "/main/shared-pkg/shared_pkg-1.0-py3-none-any.whl.metadata",
        "/main/",
        "/",
        "/_/whoami",
    ],
)
def test_token_of_acme_on_globex_is_the_uniform_404(site, unknown, path):
    c = site["client"]
    for who in ("alice", "bob", None):
        auth = _auth(site, who) if who else {}
        by_host = c.get(path, headers={"host": "globex.test", **auth})
        by_path = c.get(
            "/t/globex" + path.rstrip("/") + ("/" if path.endswith("/") else ""), headers=auth
        )
        assert _shape(by_host) == unknown, (who, path, by_host.text)
        assert _shape(by_path) == unknown, (who, path, by_path.text)
    # Basic credentials (what pip and twine send) the same
    r = c.get("/t/globex" + path, auth=("__token__", site["tokens"]["alice"]))
    assert _shape(r) == unknown


def test_token_of_globex_on_acme_is_the_uniform_404(site, unknown):
    c = site["client"]
    for path in ("/t/acme/main/simple/", "/t/acme/_/whoami", "/t/acme/main/simple/shared-pkg/"):
        assert _shape(c.get(path, headers=_auth(site, "carol"))) == unknown


@pytest.mark.parametrize(
    "host, path",
    [
        ("acme.test", "/t/globex/main/simple/"),  # a host-matched request is never re-routed
        ("acme.test", "/t/globex/main/simple/globex-secret/"),
        ("acme.test", "/t/globex/_/whoami"),
        ("unknown.test", "/main/simple/"),
        ("globex.test.evil", "/main/simple/"),
        ("evil-globex.test", "/main/simple/"),
        ("acme.test", "/t/glob%65x/main/simple/"),  # percent-encoded tenant part
        ("acme.test", "/t/globex%2Fmain/simple/"),
        ("127.0.0.1", "/t/acme/../globex/main/simple/"),
        ("127.0.0.1", "/t/acme/main/../../globex/main/simple/"),
        ("127.0.0.1", "/t/GLOBEX/main/simple/"),
        ("127.0.0.1", "/t//globex/main/simple/"),
    ],
)
def test_crafted_host_and_path_combinations(site, unknown, host, path):
    r = _raw(site, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{_bearer(site, 'alice')}")
    assert r == _raw(site, f"GET /t/initech/main/simple/ HTTP/1.1\r\nHost: {host}\r\n")
    assert r.startswith(b"HTTP/1.1 404 ") and r.endswith(b"\r\n\r\n" + UNIFORM)


@pytest.mark.parametrize("host", ["ACME.TEST", "acme.test:8443", "acme.test.", "Acme.Test.:1"])
def test_host_is_compared_lowercase_without_port_or_trailing_dot(site, host):
    r = site["client"].get("/_/whoami", headers={"host": host, **_auth(site, "alice")})
    assert r.status_code == 200 and r.json()["tenant"] == "acme"


@pytest.mark.parametrize(
    "path", ["/t/glob%65x/main/simple/", "/t/globex/m%61in/simple/", "/t/%67lobex/_/whoami"]
)
def test_tenant_and_index_names_must_be_spelled_plainly(site, path):
    """Even the tenant's own owner: a percent-encoded tenant or index name is not resolved."""
    r = _raw(site, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{_bearer(site, 'carol')}")
    assert r == _raw(site, "GET /t/initech/main/simple/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")


def test_absolute_form_and_duplicate_host_reveal_nothing(site, unknown):
    bearer = _bearer(site, "carol")
    refusals = [
        # absolute-form naming globex while Host says acme, and the other way round
        f"GET http://globex.test/main/simple/ HTTP/1.1\r\nHost: acme.test\r\n{bearer}",
        f"GET http://acme.test/main/simple/ HTTP/1.1\r\nHost: globex.test\r\n{bearer}",
        # two Host fields: which tenant is ambiguous, so none
        f"GET /main/simple/ HTTP/1.1\r\nHost: globex.test\r\nHost: acme.test\r\n{bearer}",
    ]
    for request in refusals:
        answer = _raw(site, request)
        status = answer.split(b" ", 2)[1]
        if status == b"400":  # refused by the HTTP layer before any tenant is looked at
            continue
        assert status == b"404" and answer.endswith(b"\r\n\r\n" + UNIFORM), answer


def test_etags_and_delta_bases_of_globex_mean_nothing_in_acme(site):
    c = site["client"]
    path = f"/main/shared-pkg/{site['wheel_name']}"
    theirs = c.get("/t/globex" + path, headers=_auth(site, "carol"))
    assert theirs.status_code == 200 and theirs.content == site["globex_wheel"]
    etag = theirs.headers["etag"]
    for headers in (
        {"if-none-match": etag},
        {"if-none-match": etag, "a-im": "rcdelta"},
    ):
        r = c.get("/t/acme" + path, headers={**headers, **_auth(site, "alice")})
        # acme's own bytes in full: no 304, no 226 against a base only globex holds
        assert r.status_code == 200, r.status_code
        assert r.content == site["acme_wheel"]
        assert r.headers["etag"] != etag


def test_listing_of_acme_never_shows_globex_projects(site):
    c = site["client"]
    for who in ("alice", "bob"):
        r = c.get("/t/acme/main/simple/", headers={**_auth(site, who), "accept": JSON_V1})
        assert r.status_code == 200
        assert [p["name"] for p in r.json()["projects"]] == ["shared-pkg"]
        html = c.get("/main/simple/", headers={"host": "acme.test", **_auth(site, who)})
        assert "globex" not in html.text
        # a project only globex has is acme's ordinary "no such project"
        r = c.get("/t/acme/main/simple/globex-secret/", headers=_auth(site, who))
        assert r.status_code == 404 and "globex" not in r.headers.get("content-type", "")


def test_whoami_tells_the_own_principal_and_never_the_token(site, unknown):
    c = site["client"]
    r = c.get("/t/acme/_/whoami", headers=_auth(site, "bob"))
    assert r.status_code == 200
    who = r.json()
    assert who["tenant"] == "acme" and who["subject"] == "user:bob"
    assert who["method"] == "token" and "reader@main" in who["roles"]
    assert site["tokens"]["bob"] not in r.text
    assert _shape(c.get("/t/globex/_/whoami", headers=_auth(site, "bob"))) == unknown
    assert _shape(c.get("/t/acme/_/whoami")) == unknown  # anonymous: acme is private


def test_uploads_across_tenants_are_the_uniform_404_and_store_nothing(site, unknown):
    c = site["client"]
    app = site["app"]
    blob = make_wheel("intruder", "1.0")
    form = _upload_form("intruder-1.0-py3-none-any.whl", blob)
    attempts = [
        c.post("/t/globex/main/legacy/", auth=("__token__", site["tokens"]["alice"]), **form),
        c.post(
            "/main/legacy/",
            headers={"host": "globex.test"},
            auth=("__token__", site["tokens"]["alice"]),
            **form,
        ),
        c.post("/t/globex/main/legacy/", **form),  # anonymous
        c.post("/t/globex/main/legacy/", auth=("__token__", "rc-unknown-" + "A" * 43), **form),
    ]
    for r in attempts:
        assert _shape(r) == unknown, r.text
    globex = app.tenants["globex"].indexes["main"][0]
    assert globex.file("intruder-1.0-py3-none-any.whl") is None
    assert [p.name for p in globex.projects()] == ["globex-secret", "shared-pkg"]


def test_storage_is_separate_per_tenant(site):
    root = site["root"]
    assert (root / "acme" / "main" / "shared-pkg" / site["wheel_name"]).read_bytes() == site[
        "acme_wheel"
    ]
    assert (root / "globex" / "main" / "shared-pkg" / site["wheel_name"]).read_bytes() == site[
        "globex_wheel"
    ]
    assert (root / "acme" / ".registry-core" / "tenant.sqlite3").is_file()
    assert (root / "globex" / ".registry-core" / "tenant.sqlite3").is_file()
    assert not (root / "acme" / "main" / "globex-secret").exists()
    # no live object is shared either: file servers (caches, single-flight keys), patch
    # stores, page caches, indexes and tenant stores are each tenant's own
    app = site["app"]
    a, g = app.tenants["acme"].entry("main"), app.tenants["globex"].entry("main")
    assert a.files is not g.files and a.files.cache is not g.files.cache
    assert a.files.patch_store.directory != g.files.patch_store.directory
    assert a.files.patch_store.directory.is_relative_to(root / "acme")
    assert a.index is not g.index and a.index.auth is not g.index.auth
    assert {id(x) for x in a.apps.values()}.isdisjoint(id(x) for x in g.apps.values())


# -- the role matrix with real clients -------------------------------------------------------


@pytest.fixture(scope="module")
def tool_project(site, tmp_path_factory):
    """acme-tool 1.0 uploaded by the owner, 1.1 built for the uploader's turn."""
    root = tmp_path_factory.mktemp("built")
    v1 = build_project(root, "acme-tool", "1.0", payload_kb=4)
    v2 = build_project(root, "acme-tool", "1.1", payload_kb=4)
    proc = _twine(site, "alice", v1.wheel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return v1, v2


def _twine(site, who, *paths):
    return run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            site["handle"].url("/t/acme/main/legacy/"),
            "-u",
            "__token__",
            "-p",
            site["tokens"][who],
            *map(str, paths),
        ],
        env=client_env(),
        check=False,
    )


def test_reader_installs_with_pip_but_cannot_upload(site, tool_project, tmp_path):
    v1, v2 = tool_project
    url = site["handle"].url("/t/acme/main/simple/")
    authed = url.replace("http://", f"http://__token__:{site['tokens']['bob']}@")
    target = tmp_path / "site"
    run(
        [
            tool("pip"),
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "--index-url",
            authed,
            "acme-tool",
        ],
        env=client_env(),
    )
    assert "VERSION = '1.0'" in (target / "acme_tool" / "__init__.py").read_text()
    proc = _twine(site, "bob", v2.wheel)
    assert proc.returncode != 0 and "403" in proc.stdout + proc.stderr
    assert site["tokens"]["bob"] not in proc.stdout + proc.stderr
    index = site["app"].tenants["acme"].indexes["main"][0]
    assert index.file(v2.wheel.name) is None


def test_uploader_uploads_an_existing_project_but_cannot_create_one(site, tool_project):
    _, v2 = tool_project
    proc = _twine(site, "uma", v2.wheel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = site["app"].tenants["acme"].indexes["main"][0]
    assert index.file(v2.wheel.name).uploader == "user:uma"
    c = site["client"]
    blob = make_wheel("uma-new", "1.0")
    r = c.post(
        "/t/acme/main/legacy/",
        auth=("__token__", site["tokens"]["uma"]),
        **_upload_form("uma_new-1.0-py3-none-any.whl", blob),
    )
    assert r.status_code == 403, r.text
    assert index.project("uma-new") is None


def test_maintainer_creates_a_project(site):
    c = site["client"]
    blob = make_wheel("max-new", "1.0")
    r = c.post(
        "/main/legacy/",
        headers={"host": "acme.test"},
        auth=("__token__", site["tokens"]["max"]),
        **_upload_form("max_new-1.0-py3-none-any.whl", blob),
    )
    assert r.status_code == 200, r.text
    index = site["app"].tenants["acme"].indexes["main"][0]
    assert index.file("max_new-1.0-py3-none-any.whl").uploader == "user:max"


# -- helpers ------------------------------------------------------------------------------


def _bearer(site, who):
    return f"Authorization: Bearer {site['tokens'][who]}\r\n"


def _raw(site, head: str) -> bytes:
    """Send one request exactly as written (Connection: close) and return the answer with
    its Date field removed."""
    port = site["handle"].port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall((head + "Connection: close\r\n\r\n").encode("latin-1"))
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = [ln for ln in head_part.split(b"\r\n") if not ln.lower().startswith(b"date:")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
