"""SAML sign-in end to end: a v2 config, build_app, a real server, httpx as the browser.

The tenant ``acme`` is private and trusts a pysaml2 IdP (tests/auth/_saml_idp.py) whose
metadata file the config names; its IdP group ``engineering`` maps to ``uploader@main``.
GET /_/saml/login -> 302 to the IdP -> the IdP's signed answer posted to /_/saml/acs -> the
session cookie -> /_/whoami shows the user, groups and roles, and the private index opens.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))

from _saml_idp import XMLSEC, SamlIdP

from registry_core.config import parse
from registry_core.server import start_server
from registry_core.server._auth_middleware import NOT_FOUND_BODY

HANG = 30.0  # a generous bound on each request: only a hang would reach it


@pytest.fixture(autouse=True)
def _xmlsec():
    if XMLSEC is None:
        if os.environ.get("CI") == "true":
            pytest.fail("xmlsec1 is missing (scripts/install_system_deps.sh installs it)")
        pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if XMLSEC is None:
        pytest.skip("xmlsec1 is not installed")
    from registry_core.server._tenancy import build_app

    root = tmp_path_factory.mktemp("saml-tenancy")
    idp = SamlIdP(root / "idp")
    metadata = root / "idp-metadata.xml"
    metadata.write_text(idp.metadata_xml(), encoding="utf-8")
    port = _free_port()  # the ACS URL in the config needs the port before the server starts
    origin = f"http://127.0.0.1:{port}"
    text = f"""
version = 2
[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"
[storage]
directory = "{root / "data"}"
[tenants.acme]
public = false
[tenants.acme.saml]
entity_id = "{origin}/t/acme/_/saml/metadata"
idp_metadata = "{metadata}"
[tenants.acme.group_roles]
"engineering" = ["uploader@main"]
"""
    app = build_app(parse(text, source="saml-test.toml"))
    try:
        with start_server(app, tls=False, port=port) as srv:
            assert srv.url("/").rstrip("/") == origin
            with httpx.Client(base_url=origin, timeout=HANG) as client:
                r = client.get("/t/acme/_/saml/metadata")
            assert r.status_code == 200, r.text
            idp.trust_sp(r.text)
            yield idp, origin
    finally:
        app.close()


def test_saml_sign_in_opens_the_private_index(site):
    idp, origin = site
    with httpx.Client(base_url=origin, timeout=HANG) as anonymous:
        for path in ("/t/acme/main/simple/", "/t/acme/_/whoami"):
            r = anonymous.get(path)
            assert r.status_code == 404 and r.content == NOT_FOUND_BODY
    with httpx.Client(base_url=origin, timeout=HANG) as browser:
        r = browser.get("/t/acme/_/saml/login", params={"next": "/t/acme/main/simple/"})
        assert r.status_code == 302, r.text
        answer = idp.answer(r.headers["location"], user="alice@example.com")
        assert answer.action == f"{origin}/t/acme/_/saml/acs"
        done = browser.post(answer.action, data=answer.form())
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/t/acme/main/simple/"
        me = browser.get("/t/acme/_/whoami")
        assert me.status_code == 200, me.text
        who = me.json()
        assert who["tenant"] == "acme"
        assert who["subject"] == "user:alice@example.com"
        assert who["method"] == "session"
        assert who["groups"] == ["group:engineering"]
        assert "uploader@main" in who["roles"]
        assert "rc_session" not in me.text
        assert browser.get("/t/acme/main/simple/").status_code == 200
        # the same answer posted again is refused; the session stays as it was
        assert browser.post(answer.action, data=answer.form()).status_code == 401
        out = browser.get("/t/acme/_/logout")
        assert out.status_code == 200
        r = browser.get("/t/acme/_/whoami")
        assert r.status_code == 404 and r.content == NOT_FOUND_BODY


def test_forged_answer_signs_nobody_in(site):
    idp, origin = site
    with httpx.Client(base_url=origin, timeout=HANG) as browser:
        r = browser.get("/t/acme/_/saml/login")
        answer = idp.answer(r.headers["location"], forged=True)
        done = browser.post(answer.action, data=answer.form())
        assert done.status_code == 401 and "SAML sign-in refused" in done.text
        r = browser.get("/t/acme/_/whoami")
        assert r.status_code == 404 and r.content == NOT_FOUND_BODY


def test_default_next_is_the_tenant_home(site):
    idp, origin = site
    with httpx.Client(base_url=origin, timeout=HANG) as browser:
        r = browser.get("/t/acme/_/saml/login", params={"next": "https://evil.test/"})
        answer = idp.answer(r.headers["location"], groups=())
        done = browser.post(answer.action, data=answer.form())
        assert done.status_code == 303 and done.headers["location"] == "/t/acme/"
