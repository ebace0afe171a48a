"""MultiTenantApp's own behaviour over a real loopback server (httpx): public tenants and
indexes, a bad token where the index is visible (401) or not (404), project-scoped readers,
rate limits (429 with Retry-After and RateLimit headers, a dead Redis: reads fail open,
uploads fail closed 503), sessions (whoami, group roles, logout), the tenant home page, the
access log (tenant, never a token), the lifespan forwarded to every index app, and the
configuration it refuses."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket

import httpx
import pytest

from _dists import make_wheel
from registry_core.auth import Identity, Principal, Scope, TenantStore
from registry_core.auth._ratelimit import (
    MemoryRateLimiter,
    Plan,
    RedisRateLimiter,
    TieredLimiter,
)
from registry_core.config import parse
from registry_core.errors import ConfigError, InvalidArgumentError
from registry_core.index import Index
from registry_core.server import (
    PRINCIPAL_KEY,
    AuthMiddleware,
    IndexApp,
    MultiTenantApp,
    start_server,
)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
UNIFORM = b"404 Not Found\n"
WHEEL = "shared_pkg-1.0-py3-none-any.whl"

CONFIG = """
version = 2
[server]
tls = "plain-http"
[storage]
directory = "{root}"

[tenants.acme]
public = true
[[tenants.acme.indexes]]
name = "main"
[[tenants.acme.indexes]]
name = "internal"
public = false
[tenants.acme.roles]
"user:alice" = ["owner@*"]
"user:pat" = ["reader@internal/shared-pkg"]
[tenants.acme.group_roles]
"engineering" = ["maintainer@internal"]

[tenants.globex]
"""


def _form(filename, blob):
    return {
        "data": {
            ":action": "file_upload",
            "protocol_version": "1",
            "sha256_digest": hashlib.sha256(blob).hexdigest(),
        },
        "files": {"content": (filename, blob)},
    }


def _serve(tmp_path, text=CONFIG, **kw):
    config = parse(text.format(root=tmp_path / "root"), source="test")
    app = MultiTenantApp(config, **kw)
    try:
        handle = start_server(app, tls=False)
    except BaseException:
        app.close()
        raise
    return app, handle


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    app, handle = _serve(tmp_path_factory.mktemp("app"))
    store = app.tenants["acme"].store
    tokens = {
        who: store.create_token(
            owner=f"user:{who}", scopes=[Scope.parse("acme", "read,upload,create:*")]
        )[0]
        for who in ("alice", "pat", "nobody")
    }
    client = httpx.Client(base_url=handle.url(), timeout=30)
    blob = make_wheel("shared-pkg", "1.0")
    for index in ("main", "internal"):
        r = client.post(
            f"/t/acme/{index}/legacy/", auth=("__token__", tokens["alice"]), **_form(WHEEL, blob)
        )
        assert r.status_code == 200, r.text
    try:
        yield app, handle, client, tokens
    finally:
        client.close()
        handle.stop()
        app.close()


def _bearer(tokens, who):
    return {"authorization": f"Bearer {tokens[who]}"}


def test_public_index_reads_anonymously_private_one_is_the_uniform_404(site):
    _, _, c, _ = site
    assert c.get("/t/acme/main/simple/shared-pkg/").status_code == 200
    assert c.get(f"/t/acme/main/shared-pkg/{WHEEL}").status_code == 200
    r = c.get("/t/acme/internal/simple/shared-pkg/")
    assert r.status_code == 404 and r.content == UNIFORM
    # anonymous upload to the public index: 401 (it may see the index); to the private: 404
    form = _form(WHEEL, b"x")
    assert c.post("/t/acme/main/legacy/", **form).status_code == 401
    assert c.post("/t/acme/internal/legacy/", **form).content == UNIFORM


def test_bad_token_is_401_where_the_index_is_visible_else_404(site):
    _, _, c, _ = site
    bad = {"authorization": "Bearer rc-unknown-" + "A" * 43}
    r = c.get("/t/acme/main/simple/", headers=bad)
    assert r.status_code == 401 and "basic" in r.headers["www-authenticate"].lower()
    assert "A" * 43 not in r.text
    r = c.get("/t/acme/internal/simple/", headers=bad)
    assert r.status_code == 404 and r.content == UNIFORM
    # globex (private, no public index): the uniform 404, like an unknown tenant
    r = c.get("/t/globex/main/simple/", headers=bad)
    assert r.content == UNIFORM and r.content == c.get("/t/nope/main/simple/").content
    # a malformed Authorization field is no way around it either
    r = c.get("/t/globex/main/simple/", headers={"authorization": "Digest x"})
    assert r.status_code == 404 and r.content == UNIFORM


def test_project_scoped_reader_sees_the_project_not_the_index(site):
    _, _, c, tokens = site
    pat = _bearer(tokens, "pat")
    assert c.get("/t/acme/internal/simple/shared-pkg/", headers=pat).status_code == 200
    assert c.get(f"/t/acme/internal/shared-pkg/{WHEEL}", headers=pat).status_code == 200
    assert c.get(f"/t/acme/internal/shared-pkg/{WHEEL}.metadata", headers=pat).status_code == 200
    r = c.get("/t/acme/internal/simple/", headers=pat)  # the listing names every project
    assert r.status_code == 404 and r.content == UNIFORM
    # no role at all on internal: its pages are the uniform 404, even signed in
    r = c.get("/t/acme/internal/simple/shared-pkg/", headers=_bearer(tokens, "nobody"))
    assert r.status_code == 404 and r.content == UNIFORM
    # an upload where it may not even read: 404 (not 403)
    r = c.post(
        "/t/acme/internal/legacy/",
        auth=("__token__", tokens["nobody"]),
        **_form("other-1.0-py3-none-any.whl", make_wheel("other", "1.0")),
    )
    assert r.status_code == 404 and r.content == UNIFORM
    # ... and 403 where it may read the project
    r = c.post(
        "/t/acme/internal/legacy/",
        auth=("__token__", tokens["pat"]),
        **_form("shared_pkg-1.1-py3-none-any.whl", make_wheel("shared-pkg", "1.1")),
    )
    assert r.status_code == 403


def test_session_whoami_group_roles_and_logout(site):
    app, _, c, _ = site
    runtime = app.tenants["acme"]
    raw = runtime.sign_in(
        Identity(
            subject="user:dana@example.com",
            issuer="https://idp.example",
            method="oidc",
            groups=frozenset({"engineering"}),
        )
    )
    cookie = {"cookie": f"rc_session={raw}"}
    who = c.get("/t/acme/_/whoami", headers=cookie).json()
    assert who["subject"] == "user:dana@example.com" and who["method"] == "session"
    assert who["groups"] == ["group:engineering"]
    assert "maintainer@internal" in who["roles"] and raw not in str(who)
    # the group role opens the private index
    assert c.get("/t/acme/internal/simple/", headers=cookie).status_code == 200
    out = c.post("/t/acme/_/logout", headers=cookie)
    assert out.status_code == 200 and "rc_session=;" in out.headers["set-cookie"]
    assert "Max-Age=0" in out.headers["set-cookie"]
    # the session is gone: anonymous again, and the private index is hidden again
    assert c.get("/t/acme/internal/simple/", headers=cookie).content == UNIFORM
    assert c.get("/t/acme/_/whoami", headers=cookie).json()["subject"] == "anonymous"


def test_tenant_home_lists_the_indexes_the_caller_may_read(site):
    _, _, c, tokens = site
    anon = c.get("/t/acme/")
    assert anon.status_code == 200 and "/t/acme/main/simple/" in anon.text
    assert "internal" not in anon.text
    assert "internal" in c.get("/t/acme/", headers=_bearer(tokens, "alice")).text
    assert c.get("/t/globex/").content == UNIFORM
    assert c.post("/t/acme/").content == UNIFORM  # the home page is read-only
    assert c.get("/t/acme/nosuchindex/simple/").content == UNIFORM
    assert c.get("/t/acme/_/nosuchroute").content == UNIFORM
    assert c.get("/t/acme/_/oidc/login").content == UNIFORM  # no OIDC configured


def test_index_links_and_redirects_live_under_the_base(site):
    _, _, c, _ = site
    r = c.get("/t/acme/main/simple/Shared_Pkg/", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/t/acme/main/simple/shared-pkg/"
    home = c.get("/t/acme/main/")
    assert 'href="/t/acme/main/simple/"' in home.text
    page = c.get("/t/acme/main/simple/shared-pkg/", headers={"accept": JSON_V1}).json()
    assert page["files"][0]["url"] == f"/t/acme/main/shared-pkg/{WHEEL}"


def test_access_log_carries_the_tenant_and_never_a_token(site, caplog):
    _, _, c, tokens = site
    with caplog.at_level(logging.INFO, logger="registry_core.server.access"):
        c.get("/t/acme/main/simple/?token=" + tokens["alice"], headers=_bearer(tokens, "alice"))
        c.get("/t/nope/")
    records = [
        r
        for r in caplog.records
        if r.name == "registry_core.server.access"
        and r.getMessage().split()[1] in ("/t/acme/main/simple/", "/t/nope/")
    ]
    assert [(r.tenant, r.status) for r in records] == [("acme", 200), ("-", 404)]
    assert records[0].subject == "user:alice"
    for r in records:
        assert tokens["alice"] not in r.getMessage()


def test_rate_limited_reads_get_429_with_retry_after_and_ratelimit_headers(tmp_path):
    frozen = [10**12]  # the limiter's clock does not move: nothing refills during the test
    plans = {"free": Plan("free", rate=1.0, burst=2, upload_rate=0.1, upload_burst=1)}
    limiter = TieredLimiter(
        MemoryRateLimiter(clock=lambda: frozen[0]), plans, clock=lambda: frozen[0]
    )
    text = CONFIG.replace("[tenants.globex]\n", "")
    app, handle = _serve(tmp_path, text, limiter=limiter)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            ok = [c.get("/t/acme/main/simple/") for _ in range(2)]
            assert [r.status_code for r in ok] == [200, 200]
            assert ok[0].headers["ratelimit-policy"].startswith('"free-read"')
            assert "ratelimit" in ok[0].headers
            limited = c.get("/t/acme/main/simple/")
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.headers["ratelimit"].startswith('"free-read"')
            # the uniform 404 of a private or unknown place is never rate limited (a 429
            # there would tell that something exists)
            for _ in range(5):
                assert c.get("/t/acme/internal/simple/").content == UNIFORM
    finally:
        handle.stop()
        app.close()


def test_dead_redis_reads_fail_open_uploads_fail_closed(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limiter = TieredLimiter(RedisRateLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.2))
    text = CONFIG.replace("[tenants.globex]\n", "")
    app, handle = _serve(tmp_path, text, limiter=limiter)
    store = app.tenants["acme"].store
    raw, _ = store.create_token(
        owner="user:alice", scopes=[Scope.parse("acme", "read,upload,create:*")]
    )
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            assert c.get("/t/acme/main/simple/").status_code == 200
            r = c.post(
                "/t/acme/main/legacy/",
                auth=("__token__", raw),
                **_form(WHEEL, make_wheel("shared-pkg", "1.0")),
            )
            assert r.status_code == 503 and "retry-after" in r.headers
        assert app.tenants["acme"].indexes["main"][0].file(WHEEL) is None
    finally:
        handle.stop()
        app.close()


def test_lifespan_reaches_every_index_app(tmp_path):
    config = parse(CONFIG.format(root=tmp_path / "root"), source="test")
    app = MultiTenantApp(config)
    sent: list[dict] = []

    async def run():
        inbox: asyncio.Queue = asyncio.Queue()
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})

        async def send(message):
            sent.append(message)

        await asyncio.wait_for(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send), 30
        )

    try:
        asyncio.run(run())
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]
        # every index app saw the shutdown: its upload threads are stopped
        for runtime in app.tenants.values():
            for _, index_app in runtime.indexes.values():
                assert index_app._upload_pool._shutdown
    finally:
        app.close()
        app.close()  # idempotent


def test_config_the_app_cannot_serve_is_refused(tmp_path):
    """A path prefix other than /t/<name>: refused (by the parser, or by the app when a
    Config is built by hand) before anything is created."""
    import dataclasses

    config = parse(CONFIG.format(root=tmp_path / "root"), source="test")
    globex = dataclasses.replace(config.tenants["globex"], path_prefix="/g")
    odd = dataclasses.replace(config, tenants={**config.tenants, "globex": globex})
    with pytest.raises(ConfigError, match="path_prefix"):
        MultiTenantApp(odd)
    assert not (tmp_path / "root").exists()


def test_auth_middleware_authorizes_a_standalone_index_app(tmp_path):
    """One IndexApp behind AuthMiddleware: the principal comes from the store, reads need
    ``read`` (this store has no public binding), a bad token is 401."""
    store = TenantStore(tmp_path / "tenant.sqlite3", tenant="default")
    (tmp_path / "idx").mkdir()
    index = Index(tmp_path / "idx", auth=store)
    raw, _ = index.create_token()
    index_app = IndexApp(index, base_path="/pkgs")
    handle = start_server(AuthMiddleware(index_app, store), tls=False)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            assert c.get("/simple/").content == UNIFORM
            r = c.get("/simple/", headers={"authorization": f"Bearer {raw}"})
            assert r.status_code == 200
            home = c.get("/", headers={"authorization": f"Bearer {raw}"})
            assert 'href="/pkgs/simple/"' in home.text
            bad = c.get("/simple/", headers={"authorization": "Bearer rc-x-" + "B" * 43})
            assert bad.status_code == 401
    finally:
        handle.stop()
        index_app.close()
        index.close()
        store.close()


def test_index_app_base_path_is_checked(tmp_path):
    (tmp_path / "idx").mkdir()
    with Index(tmp_path / "idx") as index:
        for bad in ("pkgs", "/pkgs/"):
            with pytest.raises(InvalidArgumentError, match="base_path"):
                IndexApp(index, base_path=bad)


def test_principal_of_another_tenant_in_scope_reads_nothing(tmp_path):
    """Defence in depth: even a principal of another tenant put in the scope by a buggy
    middleware is refused by the index (the decision point checks the tenant)."""
    (tmp_path / "idx").mkdir()
    with Index(tmp_path / "idx", tenant="acme") as index:
        app = IndexApp(index)
        sent: list[dict] = []

        async def send(m):
            sent.append(m)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/simple/",
            "headers": [],
            "query_string": b"",
            PRINCIPAL_KEY: Principal.local("globex"),
        }
        asyncio.run(app(scope, receive, send))
        app.close()
    assert sent[0]["status"] == 404 and sent[1]["body"] == UNIFORM
