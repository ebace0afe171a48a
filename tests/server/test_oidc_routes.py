"""OIDC sign-in and trusted publishing end to end: a real registry and a real provider.

The registry (``build_app`` of a v2 configuration, hypercorn on loopback, plain HTTP) serves a
private tenant ``acme`` under ``/t/acme``; the OIDC provider (authlib's server components,
tests/auth/_oidc_idp.py) runs on loopback too. The browser is httpx following no redirect:
login -> provider -> callback -> session cookie -> the private index. A CI job asks for the
audience, has the provider mint its ID token, exchanges it at ``/_/oidc/mint-token`` and
uploads a real wheel with twine; the minted token cannot upload another project.
"""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "auth"))

from _oidc_idp import OIDCProvider

from _packages import build_project, client_env, run, tool
from registry_core.config import parse
from registry_core.server import start_server
from registry_core.server._tenancy import build_app

pytestmark = pytest.mark.network

SECRET_ENV = "RC_TEST_OIDC_SECRET"
SECRET = "client-secret-for-the-test"
REPO = "acme/widget"
ALICE = {"sub": "u-alice", "email": "alice@example.com", "groups": ["engineering"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int, issuer: str) -> str:
    return f"""
version = 2

[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"
public_url = "http://127.0.0.1:{port}"

[storage]
directory = "{root}"

[tenants.acme]
public = false

# no role for "publisher:widget-release" here: build_app binds each publisher itself

[tenants.acme.group_roles]
engineering = ["reader@main"]

[tenants.acme.oidc]
issuer = "{issuer}"
client_id = "registry"
client_secret_env = "{SECRET_ENV}"
scopes = ["openid", "email", "groups"]
allow_http = true

[[tenants.acme.publishers]]
name = "widget-release"
issuer = "{issuer}"
index = "main"
project = "widget"
repository = "{REPO}"
workflow = "release.yml"
environment = "pypi"
create = true
allow_http = true
"""


class Site:
    def __init__(self, idp: OIDCProvider, url: str) -> None:
        self.idp = idp
        self.url = url.rstrip("/")
        self.base = f"{self.url}/t/acme"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("oidc-site")
    port = _free_port()
    mp = pytest.MonkeyPatch()
    mp.setenv(SECRET_ENV, SECRET)
    with OIDCProvider() as idp:
        idp.register_client("registry", [f"http://127.0.0.1:{port}/t/acme/_/oidc/callback"], SECRET)
        idp.current_user = dict(ALICE)
        app = build_app(parse(_config(root, port, idp.issuer), source="test.toml"))
        handle = start_server(app, host="127.0.0.1", port=port, tls=False)
        try:
            yield Site(idp, handle.url())
        finally:
            handle.stop()
            mp.undo()


def _sign_in(site: Site, http: httpx.Client, next_path: str) -> httpx.Response:
    """login -> provider -> callback; the callback's response (a 303 with the cookie)."""
    login = http.get(f"{site.base}/_/oidc/login", params={"next": next_path})
    assert login.status_code == 302, login.text
    assert login.headers["location"].startswith(site.idp.issuer + "/authorize?")
    at_idp = http.get(login.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    callback = at_idp.headers["location"]
    assert callback.startswith(f"{site.base}/_/oidc/callback?")
    return http.get(callback)


def test_browser_sign_in_reaches_the_private_index(site):
    with httpx.Client() as http:
        assert http.get(f"{site.base}/main/simple/").status_code == 404
        done = _sign_in(site, http, "/t/acme/main/simple/")
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/t/acme/main/simple/"
        cookie = done.headers["set-cookie"]
        assert cookie.startswith("rc_session=")
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "path", "samesite", "max-age"} <= attrs
        assert "Path=/t/acme/" in cookie and "SameSite=Lax" in cookie
        assert "secure" not in attrs  # plain HTTP on loopback only
        sid = cookie.split(";")[0].split("=", 1)[1]
        http.cookies.set("rc_session", sid)
        who = http.get(f"{site.base}/_/whoami")
        assert who.status_code == 200, who.text
        doc = who.json()
        assert doc["subject"] == "user:alice@example.com"
        assert "group:engineering" in doc["groups"]
        assert sid not in who.text
        assert http.get(f"{site.base}/main/simple/").status_code == 200


def test_replayed_callback_and_forged_state_refused(site):
    with httpx.Client() as http:
        login = http.get(f"{site.base}/_/oidc/login")
        callback = http.get(login.headers["location"]).headers["location"]
        assert http.get(callback).status_code == 303
        again = http.get(callback)
        assert again.status_code == 401 and "state" in again.text
        code = parse_qs(urlsplit(callback).query)["code"][0]
        assert code not in again.text
        forged = http.get(
            f"{site.base}/_/oidc/callback", params={"code": "x" * 40, "state": "y" * 43}
        )
        assert forged.status_code == 401 and "set-cookie" not in forged.headers


def test_no_open_redirect(site):
    with httpx.Client() as http:
        for target in ("https://evil.example/", "//evil.example/", "/t/globex/main/"):
            done = _sign_in(site, http, target)
            assert done.status_code == 303
            assert done.headers["location"] == "/t/acme/"


def test_provider_error_is_a_401(site):
    site.idp.current_user = None  # the user declines
    try:
        with httpx.Client() as http:
            done = _sign_in(site, http, "/t/acme/")
            assert done.status_code == 401 and "access_denied" in done.text
    finally:
        site.idp.current_user = dict(ALICE)


def test_unknown_oidc_routes_are_the_uniform_404(site):
    with httpx.Client() as http:
        for method, path in [("GET", "/_/oidc/nope"), ("POST", "/_/oidc/login")]:
            resp = http.request(method, f"{site.base}{path}")
            assert resp.status_code == 404 and resp.content == b"404 Not Found\n"


def _ci_token(site: Site, audience: str, **over: Any) -> str:
    claims = {
        "sub": f"repo:{REPO}:environment:pypi",
        "repository": REPO,
        "repository_owner": "acme",
        "workflow_ref": f"{REPO}/.github/workflows/release.yml@refs/tags/v1.0",
        "job_workflow_ref": f"{REPO}/.github/workflows/release.yml@refs/tags/v1.0",
        "environment": "pypi",
        "jti": str(uuid.uuid4()),
    }
    claims.update(over)
    return site.idp.mint(claims, audience=audience)


def _upload(site: Site, token: str, path: Path, *, check: bool = True):
    return run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            f"{site.base}/main/legacy/",
            str(path),
        ],
        env=client_env(TWINE_USERNAME="__token__", TWINE_PASSWORD=token),
        check=check,
        timeout=120,
    )


def test_trusted_publishing_with_twine(site, tmp_path):
    widget = build_project(tmp_path, "widget", "1.0", payload_kb=4)
    gadget = build_project(tmp_path, "gadget", "1.0", payload_kb=4)
    with httpx.Client() as http:
        audience = http.get(f"{site.base}/_/oidc/audience").json()["audience"]
        assert audience
        ci = _ci_token(site, audience)
        minted = http.post(f"{site.base}/_/oidc/mint-token", json={"token": ci})
        assert minted.status_code == 200, minted.text
        doc = minted.json()
        assert doc["success"] is True and doc["token"].startswith("rc-")
        assert isinstance(doc["expires"], int)
        # the same CI token again: replay
        again = http.post(f"{site.base}/_/oidc/mint-token", json={"token": ci})
        assert again.status_code == 401 and again.json()["success"] is False
        assert ci not in again.text
        # another repository's job
        other = _ci_token(site, audience, repository="evil/widget")
        refused = http.post(f"{site.base}/_/oidc/mint-token", json={"token": other})
        assert refused.status_code == 401
        # malformed requests
        bad = http.post(f"{site.base}/_/oidc/mint-token", content=b"{not json")
        assert bad.status_code == 422
        big = http.post(f"{site.base}/_/oidc/mint-token", content=b"x" * (128 * 1024))
        assert big.status_code == 413
    token = doc["token"]
    _upload(site, token, widget.wheel)
    with httpx.Client() as http:
        page = http.get(f"{site.base}/main/simple/widget/", auth=("__token__", token))
        # upload-only (least privilege): the private index stays invisible to it
        assert page.status_code == 404
    proc = _upload(site, token, gadget.wheel, check=False)
    assert proc.returncode != 0
    assert "403" in proc.stdout + proc.stderr or "404" in proc.stdout + proc.stderr
