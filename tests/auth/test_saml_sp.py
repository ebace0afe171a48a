"""SAMLServiceProvider against a real pysaml2 IdP (tests/auth/_saml_idp.py), in-process.

The accepted case, then every refusal the Web SSO profile asks for: unsigned assertion,
response-only signature, another key (forged), expired, wrong audience, wrong recipient and
destination, unsolicited, an unknown request, replay (same response; same assertion ID in a
new login), weak algorithms, RelayState tampering, another browser, oversize and non-XML
input, entity expansion. Messages never quote the assertion.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys

import pytest
from _saml_idp import XMLSEC, SamlIdP
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.auth import TenantStore
from registry_core.auth._saml import MAX_RESPONSE_BYTES, SAMLServiceProvider
from registry_core.errors import IdentityProviderError, InvalidArgumentError

ENTITY = "https://rc.test/_/saml/metadata"
ACS = "https://rc.test/_/saml/acs"


@pytest.fixture(autouse=True)
def _xmlsec():
    if XMLSEC is None:
        if os.environ.get("CI") == "true":
            pytest.fail("xmlsec1 is missing (scripts/install_system_deps.sh installs it)")
        pytest.skip("xmlsec1 is not installed (apt-get install xmlsec1)")


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    if XMLSEC is None:
        pytest.skip("xmlsec1 is not installed")
    idp = SamlIdP(tmp_path_factory.mktemp("idp"))
    store = TenantStore(None, tenant="acme")
    sp = SAMLServiceProvider(ENTITY, ACS, idp.metadata_xml(), store)
    idp.trust_sp(sp.metadata_xml().decode())
    store.close()
    return idp


@pytest.fixture
def store():
    with TenantStore(None, tenant="acme") as s:
        yield s


@pytest.fixture
def sp(idp, store):
    return SAMLServiceProvider(ENTITY, ACS, idp.metadata_xml(), store)


def login(sp, idp, next_path="/main/", *, key=None, **knobs):
    url = sp.login_redirect(next_path, browser_key=key)
    return idp.answer(url, **knobs)


def refused(sp, answer, match, *, relay=..., key=None):
    relay_state = answer.relay_state if relay is ... else relay
    with pytest.raises(IdentityProviderError, match=match) as info:
        sp.complete_login(answer.saml_response, relay_state, browser_key=key)
    message = str(info.value)
    assert "<" not in message and answer.saml_response[:40] not in message
    assert info.value.status == 401
    return message


def test_signed_assertion_signs_in(sp, idp, store):
    answer = login(sp, idp, "/main/simple/", user="alice@example.com", groups=("eng", "ops"))
    identity, next_path = sp.complete_login(answer.saml_response, answer.relay_state)
    assert next_path == "/main/simple/"
    assert identity.subject == "user:alice@example.com"
    assert identity.issuer == idp.server.config.entityid
    assert identity.method == "saml"
    assert identity.email == "alice@example.com"
    assert identity.groups == frozenset({"eng", "ops"})
    # pysaml2's per-person cache is emptied after each login (no unbounded growth)
    assert not sp._client.users.cache._db


def test_complete_returns_the_identity(sp, idp):
    answer = login(sp, idp, groups=())
    identity = sp.complete(answer.saml_response, None)  # an IdP that drops RelayState
    assert identity.groups == frozenset()


def test_response_and_assertion_both_signed_is_accepted(sp, idp):
    answer = login(sp, idp, sign_response=True)
    assert sp.complete(answer.saml_response, answer.relay_state).subject.startswith("user:")


def test_unsigned_assertion_refused(sp, idp):
    refused(sp, login(sp, idp, sign_assertion=False), "Signature missing")


def test_response_signature_alone_is_not_enough(sp, idp):
    refused(sp, login(sp, idp, sign_assertion=False, sign_response=True), "Signature missing")


def test_signed_by_another_key_refused(sp, idp):
    refused(sp, login(sp, idp, forged=True), "verify signature")


def test_expired_assertion_refused(sp, idp):
    refused(sp, login(sp, idp, expired=True), "too old")


def test_wrong_audience_refused(sp, idp):
    refused(sp, login(sp, idp, audience="https://other.test/sp"), "Audience")


def test_missing_audience_refused(sp, idp):
    # pysaml2 accepts an assertion without AudienceRestriction; the Web SSO profile does not
    refused(sp, login(sp, idp, no_audience=True), "audience is not this service provider")


def test_wrong_recipient_refused(sp, idp):
    refused(sp, login(sp, idp, recipient="https://other.test/acs"), "Recipient")


def test_wrong_destination_refused(sp, idp):
    refused(sp, login(sp, idp, destination="https://other.test/acs"), "refused")


def test_unsolicited_refused(sp, idp):
    answer = idp.answer(None, acs_url=ACS, sp_entity_id=ENTITY)
    refused(sp, answer, "unsolicited")


def test_unsolicited_with_pending_request_refused(sp, idp):
    sp.login_redirect("/")  # a request is outstanding, but the answer names none
    refused(sp, login(sp, idp, unsolicited=True), "unsolicited")


def test_answer_to_unknown_request_refused(sp, idp):
    refused(sp, login(sp, idp, in_response_to="id-never-asked"), "unknown, expired")


def test_same_response_twice_refused(sp, idp):
    answer = login(sp, idp)
    sp.complete(answer.saml_response, answer.relay_state)
    refused(sp, answer, "already answered")


def test_assertion_id_replayed_into_new_login_refused(sp, idp):
    first = login(sp, idp, assertion_id="id-replayed-assertion")
    sp.complete(first.saml_response, first.relay_state)
    second = login(sp, idp, assertion_id="id-replayed-assertion")
    refused(sp, second, "replayed")


def test_sha1_signature_refused(sp, idp):
    from saml2.xmldsig import DIGEST_SHA1, SIG_RSA_SHA1

    answer = login(sp, idp, sig_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1)
    refused(sp, answer, "weak")


def test_tampered_relay_state_refused(sp, idp):
    refused(sp, login(sp, idp), "RelayState", relay="https://evil.test/")


def test_other_browser_refused(sp, idp):
    answer = login(sp, idp, key="secret-of-the-browser-that-started")
    refused(sp, answer, "browser", key="another-browser")
    answer = login(sp, idp, key="secret-of-the-browser-that-started")
    refused(sp, answer, "browser", key=None)


def test_same_browser_accepted(sp, idp):
    answer = login(sp, idp, key="k" * 43)
    assert sp.complete(answer.saml_response, answer.relay_state, browser_key="k" * 43)


def _wrapped(answer, *, keep_id: bool):
    """Signature wrapping: an unsigned assertion for mallory carries alice's signature (its
    Reference names alice's assertion, hidden in Advice, or the same ID is reused)."""
    from saml2 import samlp
    from saml2.saml import Advice, assertion_from_string

    response = samlp.response_from_string(answer.xml)
    signed = response.assertion[0]
    evil = assertion_from_string(str(signed))
    evil.subject.name_id.text = "mallory@example.com"
    if not keep_id:
        evil.id = "id-evil"
    evil.advice = Advice(assertion=[assertion_from_string(str(signed))])
    response.assertion = [evil]
    return base64.b64encode(str(response).encode()).decode()


@pytest.mark.parametrize("keep_id", [False, True])
def test_signature_wrapping_refused(sp, idp, keep_id):
    answer = login(sp, idp)
    with pytest.raises(IdentityProviderError, match="SignatureError"):
        sp.complete(_wrapped(answer, keep_id=keep_id), answer.relay_state)


def test_pysaml2_logs_carry_no_xml(sp, idp, caplog):
    """pysaml2 logs the whole document on a signature failure and the NameID as XML."""
    caplog.set_level(logging.DEBUG)
    answer = login(sp, idp)
    with pytest.raises(IdentityProviderError):
        sp.complete(_wrapped(answer, keep_id=False), answer.relay_state)
    answer = login(sp, idp, user="carol@example.com")
    sp.complete(answer.saml_response, answer.relay_state)
    saml2_records = [r for r in caplog.records if r.name.startswith("saml2")]
    assert saml2_records  # pysaml2 did log
    for record in caplog.records:
        text = record.getMessage()
        assert "<ns" not in text and "Assertion ID=" not in text, text[:200]
        assert answer.saml_response[:40] not in text


def test_concurrent_logins_from_threads(idp, tmp_path):
    """The server checks responses in worker threads: each login gets its own identity."""
    from concurrent.futures import ThreadPoolExecutor

    with TenantStore(tmp_path / "tenant.sqlite3", tenant="acme") as store:
        sp = SAMLServiceProvider(ENTITY, ACS, idp.metadata_xml(), store)
        answers = {f"u{i}@example.com": login(sp, idp, user=f"u{i}@example.com") for i in range(6)}

        def check(item):
            user, answer = item
            return user, sp.complete(answer.saml_response, answer.relay_state).subject

        with ThreadPoolExecutor(max_workers=3) as pool:
            results = dict(pool.map(check, answers.items()))
    assert results == {user: f"user:{user}" for user in answers}


def test_username_attribute(idp, store):
    sp = SAMLServiceProvider(ENTITY, ACS, idp.metadata_xml(), store, username_attribute="uid")
    answer = login(sp, idp, attributes={"uid": ["alice"]})
    assert sp.complete(answer.saml_response, answer.relay_state).subject == "user:alice"
    refused(sp, login(sp, idp), "exactly one value")  # no uid attribute


def test_unusable_names_and_groups(sp, idp):
    refused(sp, login(sp, idp, user="alice smith"), "not usable")
    answer = login(sp, idp, groups=("ok-group", "Domain Users"))
    assert sp.complete(answer.saml_response, answer.relay_state).groups == {"ok-group"}


@pytest.mark.parametrize(
    "payload, match",
    [
        ("", "missing"),
        ("A" * (MAX_RESPONSE_BYTES + 1), "too large"),
        ("not base64 at all!", "not base64"),
        (base64.b64encode(b"<html>no</html>").decode(), "not a SAML Response"),
    ],
)
def test_garbage_refused(sp, payload, match):
    with pytest.raises(IdentityProviderError, match=match):
        sp.complete(payload, None)


def test_entity_expansion_refused(sp):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x" '
        'Version="2.0" IssueInstant="2026-01-01T00:00:00Z">&c;</samlp:Response>'
    )
    with pytest.raises(IdentityProviderError, match="not a SAML Response"):
        sp.complete(base64.b64encode(bomb.encode()).decode(), None)


def test_two_assertions_refused(sp, idp):
    from saml2 import samlp

    answer = login(sp, idp)
    response = samlp.response_from_string(answer.xml)
    response.assertion.append(response.assertion[0])
    doubled = base64.b64encode(str(response).encode()).decode()
    with pytest.raises(IdentityProviderError, match="exactly one assertion"):
        sp.complete(doubled, answer.relay_state)


def test_login_redirect_targets_the_idp(sp, idp, store):
    url = sp.login_redirect("/main/")
    request, relay = idp.request_from_redirect(url)
    assert relay == "/main/"
    assert request.issuer.text == ENTITY
    assert request.assertion_consumer_service_url == ACS
    assert store.take_pending("saml:" + request.id) == {"relay_state": "/main/"}


@pytest.mark.parametrize(
    "bad", ["https://evil.test/", "//evil.test/x", "/\\evil.test", "main/", "/a\nb", ""]
)
def test_login_redirect_refuses_non_local_relay_state(sp, bad):
    with pytest.raises(InvalidArgumentError, match="local path"):
        sp.login_redirect(bad)


@settings(max_examples=60)
@given(text=st.text(alphabet=st.sampled_from("/\\.:%@?#aZ09 \n\t"), max_size=24))
def test_relay_state_accepted_only_when_it_stays_on_site(idp, text):
    """Whatever relay state login_redirect accepts resolves to this site (no open redirect)."""
    from urllib.parse import urljoin, urlsplit

    with TenantStore(None, tenant="acme") as store:
        sp = SAMLServiceProvider(ENTITY, ACS, idp.metadata_xml(), store)
        try:
            url = sp.login_redirect(text)
        except InvalidArgumentError:
            return
    assert idp.request_from_redirect(url)[1] == text
    target = urlsplit(urljoin("https://rc.test/t/acme/", text))
    assert target.netloc == "rc.test" and target.scheme == "https"


def test_metadata(sp):
    from saml2.md import entity_descriptor_from_string

    xml = sp.metadata_xml()
    ed = entity_descriptor_from_string(xml)
    assert ed.entity_id == ENTITY
    spsso = ed.spsso_descriptor[0]
    assert spsso.want_assertions_signed == "true"
    assert spsso.assertion_consumer_service[0].location == ACS
    assert b"sha1" not in xml and b"md5" not in xml


def test_configuration_errors(idp, store, tmp_path):
    md = idp.metadata_xml()
    with pytest.raises(InvalidArgumentError, match="clock_skew_s"):
        SAMLServiceProvider(ENTITY, ACS, md, store, clock_skew_s=3600)
    with pytest.raises(InvalidArgumentError, match="acs_url"):
        SAMLServiceProvider(ENTITY, "/relative", md, store)
    with pytest.raises(InvalidArgumentError, match="xmlsec1"):
        SAMLServiceProvider(ENTITY, ACS, md, store, xmlsec_binary=str(tmp_path / "nope"))
    with pytest.raises(InvalidArgumentError, match="go together"):
        SAMLServiceProvider(ENTITY, ACS, md, store, sp_certfile="x.crt")
    with pytest.raises(InvalidArgumentError, match="exactly one identity provider"):
        sp = SAMLServiceProvider(ENTITY, ACS, md, store)
        SAMLServiceProvider(ENTITY, ACS, sp.metadata_xml().decode(), store)  # an SP, no IdP


def test_signed_authn_requests_with_sp_key(idp, store, tmp_path):
    from _saml_idp import make_key_pair

    cert, key = make_key_pair(tmp_path, "sp", "rc.test")
    sp = SAMLServiceProvider(
        ENTITY, ACS, idp.metadata_xml(), store, sp_certfile=str(cert), sp_keyfile=str(key)
    )
    url = sp.login_redirect("/")
    assert "Signature=" in url and "SigAlg=" in url
    assert b"KeyDescriptor" in sp.metadata_xml()


@pytest.fixture
def sp_keys(tmp_path):
    from _saml_idp import make_key_pair

    return make_key_pair(tmp_path, "sp", "rc.test")


def test_encrypted_signed_assertion_accepted(idp, store, sp_keys):
    cert, key = sp_keys
    sp = SAMLServiceProvider(
        ENTITY, ACS, idp.metadata_xml(), store, sp_certfile=str(cert), sp_keyfile=str(key)
    )
    answer = idp.answer_encrypted(sp.login_redirect("/"), cert)
    identity = sp.complete(answer.saml_response, answer.relay_state)
    assert identity.subject == "user:alice" and identity.groups == {"eng"}


def test_encrypted_unsigned_assertion_refused(idp, store, sp_keys):
    cert, key = sp_keys
    sp = SAMLServiceProvider(
        ENTITY, ACS, idp.metadata_xml(), store, sp_certfile=str(cert), sp_keyfile=str(key)
    )
    answer = idp.answer_encrypted(sp.login_redirect("/"), cert, sign_assertion=False)
    refused(sp, answer, "Signature missing for assertion")


def test_encrypted_assertion_without_our_key_refused(sp, idp, sp_keys):
    cert, _ = sp_keys
    answer = idp.answer_encrypted(sp.login_redirect("/"), cert)
    refused(sp, answer, "encrypted but this service provider has no key")


def test_repr_is_short(sp):
    assert repr(sp) == f"SAMLServiceProvider(entity_id={ENTITY!r}, idp={sp.idp_entity_id!r})"


def test_import_registry_core_does_not_import_saml2():
    code = (
        "import sys, registry_core, registry_core.auth, registry_core.server; "
        "bad = [m for m in ('saml2', 'registry_core.auth._saml') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
