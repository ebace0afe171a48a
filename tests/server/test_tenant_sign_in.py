"""Sign-in on a tenant reached by its own domain: the OIDC redirect URI is the domain's, the
session cookie's path is the base the request came in on ("/" by host), and the session opens
the tenant's private index by host. A real provider (tests/auth/_oidc_idp.py) and a real
registry on loopback; the host is sent as a Host field (no DNS needed)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "auth"))

from _oidc_idp import OIDCProvider

from registry_core.config import parse
from registry_core.server import build_app, start_server

pytestmark = pytest.mark.network

SECRET_ENV = "RC_TEST_TENANT_OIDC_SECRET"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONFIG = """
version = 2
[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"
[storage]
directory = "{root}"

[tenants.acme]
domains = ["acme.test"]
[tenants.acme.group_roles]
engineering = ["reader@main"]
[tenants.acme.oidc]
issuer = "{issuer}"
client_id = "registry"
client_secret_env = "{env}"
scopes = ["openid", "email", "groups"]
allow_http = true

[tenants.globex]
domains = ["globex.test"]
"""


def test_oidc_sign_in_by_host_sets_a_root_cookie_for_that_host(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "s3cret-for-the-test")
    port = _free_port()
    with OIDCProvider() as idp:
        callback = f"http://acme.test:{port}/_/oidc/callback"
        idp.register_client("registry", [callback], "s3cret-for-the-test")
        idp.current_user = {"sub": "u-1", "email": "eve@example.com", "groups": ["engineering"]}
        text = CONFIG.format(port=port, root=tmp_path / "root", issuer=idp.issuer, env=SECRET_ENV)
        app = build_app(parse(text, source="test"))
        handle = start_server(app, host="127.0.0.1", port=port, tls=False)
        acme = {"host": f"acme.test:{port}"}
        try:
            with httpx.Client(base_url=handle.url(), timeout=30) as http:
                assert http.get("/main/simple/", headers=acme).status_code == 404
                login = http.get("/_/oidc/login", params={"next": "/main/simple/"}, headers=acme)
                assert login.status_code == 302, login.text
                at_idp = http.get(login.headers["location"])
                assert at_idp.status_code == 302, at_idp.text
                back = urlsplit(at_idp.headers["location"])
                assert f"{back.scheme}://{back.netloc}{back.path}" == callback
                done = http.get(f"{back.path}?{back.query}", headers=acme)
                assert done.status_code == 303, done.text
                assert done.headers["location"] == "/main/simple/"
                cookie = done.headers["set-cookie"]
                assert "Path=/;" in cookie and "HttpOnly" in cookie
                sid = cookie.split(";")[0].split("=", 1)[1]
                session = {**acme, "cookie": f"rc_session={sid}"}
                who = http.get("/_/whoami", headers=session).json()
                assert who["tenant"] == "acme" and who["subject"] == "user:eve@example.com"
                assert http.get("/main/simple/", headers=session).status_code == 200
                # the session is acme's: on globex it is nobody's (the uniform 404)
                other = {"host": "globex.test", "cookie": f"rc_session={sid}"}
                r = http.get("/_/whoami", headers=other)
                assert r.status_code == 404 and r.content == b"404 Not Found\n"
                # globex has no OIDC: its sign-in route is the uniform 404 too
                assert http.get("/_/oidc/login", headers=other).content == b"404 Not Found\n"
        finally:
            handle.stop()
            app.close()
