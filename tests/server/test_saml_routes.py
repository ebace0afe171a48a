"""The SAML routes (server/_saml_routes.handle) over real HTTP, driven by httpx.

A plain-HTTP loopback server (start_server, tls=False) mounts ``handle`` for one tenant at
``/t/acme/_/saml/`` next to a small session probe (what the session cookie proves, read back
through the real TenantStore). The browser is an httpx client with its cookie jar; the IdP is
pysaml2's server side (tests/auth/_saml_idp.py). Full tenancy (MultiTenantApp, /_/whoami) is
covered in test_saml_routes_tenancy.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))

from _saml_idp import XMLSEC, SamlIdP

from registry_core.audit import MemorySink
from registry_core.auth import TenantStore
from registry_core.auth._saml import SAMLServiceProvider
from registry_core.server import start_server
from registry_core.server._auth_middleware import NOT_FOUND_BODY
from registry_core.server._saml_routes import MAX_FORM_BYTES, _secure, handle

BASE = "/t/acme"
HANG = 30.0  # a generous bound on each request: only a hang would reach it


@pytest.fixture(autouse=True)
def _xmlsec():
    if XMLSEC is None:
        if os.environ.get("CI") == "true":
            pytest.fail("xmlsec1 is missing (scripts/install_system_deps.sh installs it)")
        pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1)")


class ProbeApp:
    """``/t/acme/_/saml/*`` -> handle; ``/t/acme/_/probe`` -> the session's principal."""

    def __init__(self, runtime):
        self.runtime = runtime

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        prefix = BASE + "/_/saml/"
        if path.startswith(prefix):
            await handle(self.runtime, scope, receive, send, path[len(prefix) - 1 :])
            return
        cookies = dict(
            part.strip().split("=", 1)
            for k, v in scope["headers"]
            if k == b"cookie"
            for part in v.decode().split(";")
            if "=" in part
        )
        principal = self.runtime.store.session(cookies.get("rc_session"))
        body = json.dumps(
            None
            if principal is None
            else {"subject": principal.subject, "groups": sorted(principal.groups)}
        ).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if XMLSEC is None:
        pytest.skip("xmlsec1 is not installed")
    root = tmp_path_factory.mktemp("saml-site")
    store = TenantStore(root / "tenant.sqlite3", tenant="acme")
    runtime = SimpleNamespace(
        name="acme",
        base=BASE,
        store=store,
        saml=None,
        config=SimpleNamespace(session_ttl_s=3600),
        audit=MemorySink(),
    )

    def sign_in(identity):  # what TenantRuntime.sign_in does
        store.record_login(identity)
        return store.create_session(identity, ttl_s=runtime.config.session_ttl_s)

    runtime.sign_in = sign_in
    idp = SamlIdP(root / "idp")
    with start_server(ProbeApp(runtime), tls=False) as srv:
        origin = srv.url("/").rstrip("/")
        runtime.saml = SAMLServiceProvider(
            f"{origin}{BASE}/_/saml/metadata",
            f"{origin}{BASE}/_/saml/acs",
            idp.metadata_xml(),
            store,
        )
        with httpx.Client(base_url=origin, timeout=HANG) as client:
            metadata = client.get(f"{BASE}/_/saml/metadata")
        assert metadata.status_code == 200
        assert metadata.headers["content-type"] == "application/samlmetadata+xml"
        idp.trust_sp(metadata.text)
        yield SimpleNamespace(origin=origin, idp=idp, runtime=runtime, store=store)
    store.close()


def browser(site):
    return httpx.Client(base_url=site.origin, timeout=HANG, follow_redirects=False)


def start(client, next_path=BASE + "/main/"):
    r = client.get(f"{BASE}/_/saml/login", params={"next": next_path})
    assert r.status_code == 302, r.text
    assert r.headers["cache-control"] == "no-store"
    return r


def test_login_acs_session(site):
    with browser(site) as client:
        r = start(client)
        binding = r.headers["set-cookie"]
        assert binding.startswith("rc_saml=") and "HttpOnly" in binding
        assert f"Path={BASE}/_/saml/" in binding and "Secure" not in binding  # plain loopback
        answer = site.idp.answer(r.headers["location"], user="bob@example.com", groups=("eng",))
        assert answer.relay_state == BASE + "/main/"
        done = client.post(answer.action, data=answer.form())
        assert done.status_code == 303, done.text
        assert done.headers["location"] == BASE + "/main/"
        cookies = done.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("rc_session="))
        assert "HttpOnly" in session and "SameSite=Lax" in session and f"Path={BASE}/" in session
        assert "Max-Age=3600" in session
        assert any(c.startswith("rc_saml=;") and "Max-Age=0" in c for c in cookies)
        probe = client.get(f"{BASE}/_/probe").json()
        assert probe == {"subject": "user:bob@example.com", "groups": ["group:eng"]}
    assert [u["subject"] for u in site.store.users()] == ["user:bob@example.com"]
    # the same form posted again (a replay) is refused
    with browser(site) as client:
        again = client.post(answer.action, data=answer.form())
    assert again.status_code == 401


def test_open_redirect_refused(site):
    with browser(site) as client:
        r = start(client, "https://evil.test/steal")
        answer = site.idp.answer(r.headers["location"])
        assert answer.relay_state == BASE + "/"
        done = client.post(answer.action, data={**answer.form(), "RelayState": "//evil.test/"})
        assert done.status_code == 401 and "RelayState" in done.text


def test_refusal_is_401_without_the_assertion(site):
    sink = site.runtime.audit
    before = len(sink.events)
    with browser(site) as client:
        r = start(client)
        answer = site.idp.answer(r.headers["location"], forged=True)
        done = client.post(answer.action, data=answer.form())
        assert done.status_code == 401
        assert done.text.startswith("SAML sign-in refused:")
        assert "<" not in done.text and "alice" not in done.text
        assert not any(c.startswith("rc_session=") for c in done.headers.get_list("set-cookie"))
        assert client.get(f"{BASE}/_/probe").json() is None
    events = sink.events[before:]
    assert [e.kind for e in events] == ["login.failed"]
    assert events[0].tenant == "acme" and events[0].outcome == "failed"


def test_response_posted_by_another_browser_refused(site):
    with browser(site) as victim, browser(site) as attacker:
        answer = site.idp.answer(start(attacker).headers["location"], user="mallory@example.com")
        done = victim.post(answer.action, data=answer.form())
        assert done.status_code == 401 and "browser" in done.text
        assert victim.get(f"{BASE}/_/probe").json() is None


def test_unsolicited_refused(site):
    acs = f"{site.origin}{BASE}/_/saml/acs"
    entity = f"{site.origin}{BASE}/_/saml/metadata"
    answer = site.idp.answer(None, acs_url=acs, sp_entity_id=entity)
    with browser(site) as client:
        done = client.post(answer.action, data=answer.form())
    assert done.status_code == 401 and "unsolicited" in done.text


def test_form_limits(site):
    with browser(site) as client:
        big = client.post(
            f"{BASE}/_/saml/acs",
            content=b"SAMLResponse=" + b"A" * MAX_FORM_BYTES,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert big.status_code == 413

        def chunks():
            for _ in range(MAX_FORM_BYTES // 65536 + 2):
                yield b"A" * 65536

        streamed = client.post(
            f"{BASE}/_/saml/acs",
            content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert streamed.status_code == 413
        assert streamed.headers["connection"] == "close"  # the rest of the body is not read
        json_body = client.post(f"{BASE}/_/saml/acs", json={"SAMLResponse": "x"})
        assert json_body.status_code == 415
        twice = client.post(
            f"{BASE}/_/saml/acs",
            content=b"SAMLResponse=a&SAMLResponse=b",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert twice.status_code == 400
        none = client.post(f"{BASE}/_/saml/acs", data={"RelayState": "/"})
        assert none.status_code == 400


def test_methods_and_unknown_paths(site):
    with browser(site) as client:
        assert client.get(f"{BASE}/_/saml/acs").status_code == 405
        assert client.post(f"{BASE}/_/saml/login").status_code == 405
        assert client.head(f"{BASE}/_/saml/metadata").content == b""
        for path in ("nope", "login/extra", ""):
            r = client.get(f"{BASE}/_/saml/{path}")
            assert r.status_code == 404 and r.content == NOT_FOUND_BODY


def test_tenant_without_saml_is_not_found(site):
    runtime = SimpleNamespace(name="globex", base="/t/globex", saml=None)
    with start_server(ProbeApp(runtime), tls=False) as srv, httpx.Client(timeout=HANG) as client:
        for path in ("login", "metadata", "acs"):
            r = client.get(srv.url(f"{BASE}/_/saml/{path}"))
            assert r.status_code == 404 and r.content == NOT_FOUND_BODY


@pytest.mark.parametrize(
    "scheme, host, secure",
    [
        ("https", "127.0.0.1", True),
        ("http", "127.0.0.1", False),
        ("http", "::1", False),
        ("http", "localhost", False),
        ("http", "10.0.0.5", True),
        ("http", "registry.example", True),
    ],
)
def test_secure_cookie_unless_plain_loopback(scheme, host, secure):
    assert _secure({"scheme": scheme, "server": (host, 80)}) is secure
