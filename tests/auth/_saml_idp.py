"""A real SAML 2.0 identity provider for the SAML tests: pysaml2's server side, in-process.

``SamlIdP`` is ``saml2.server.Server`` configured in code with its own RSA key and self-signed
certificate (made with cryptography into a temporary directory). ``answer`` takes the URL the
service provider redirected the browser to (HTTP-Redirect binding), decodes the AuthnRequest
with pysaml2 and returns the HTTP-POST form the browser would post to the SP's ACS: a Response
carrying a signed assertion for a chosen user and groups. Knobs produce the refused cases:
unsigned, response-only signature, signed by another key (forged), expired, wrong or no audience,
wrong recipient/destination, unsolicited (no InResponseTo), a fixed assertion ID (to replay an
assertion into a new login).

The response is made unsigned by pysaml2, the knobs are applied to its objects, then the
assertion (and optionally the response) is signed with pysaml2's own xmlsec1 signer: the
signatures are real, only the content is chosen.
"""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

XMLSEC = shutil.which("xmlsec1")
IDP_ENTITY = "https://idp.test/saml/metadata"
IDP_SSO = "https://idp.test/saml/sso"


def make_key_pair(directory: Path, name: str, common_name: str) -> tuple[Path, Path]:
    """A 2048-bit RSA key and a self-signed certificate for it: (certfile, keyfile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def _server(directory: Path, name: str, sp_metadata: str | None):
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.server import Server

    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    if not certfile.exists():
        make_key_pair(directory, name, "idp.test")
    conf = {
        "entityid": IDP_ENTITY,
        "xmlsec_binary": XMLSEC,
        "key_file": str(keyfile),
        "cert_file": str(certfile),
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [
                        (IDP_SSO, BINDING_HTTP_REDIRECT),
                        (IDP_SSO, BINDING_HTTP_POST),
                    ]
                },
                "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": None}},
                "name_id_format": ["urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"],
            }
        },
        "metadata": {"inline": [sp_metadata]} if sp_metadata else {},
        "allow_unknown_attributes": True,
    }
    config = IdPConfig()
    config.load(conf)
    return Server(config=config)


@dataclass
class Answer:
    """What the IdP's page posts to the SP: the form action and its fields."""

    action: str
    saml_response: str  # base64, as in the form
    relay_state: str | None
    xml: str  # the decoded response (for the tests' own assertions)

    def form(self) -> dict[str, str]:
        fields = {"SAMLResponse": self.saml_response}
        if self.relay_state is not None:
            fields["RelayState"] = self.relay_state
        return fields


def _shift(seconds: float) -> str:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class SamlIdP:
    """pysaml2's IdP with its own key; ``forger`` is the same entity with another key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.server = _server(directory, "idp", None)
        self._forger = None
        self.sp_metadata: str | None = None

    def metadata_xml(self) -> str:
        """This IdP's metadata (entity, SSO endpoints, signing certificate) for the SP."""
        from saml2.metadata import entity_descriptor

        return str(entity_descriptor(self.server.config))

    def trust_sp(self, sp_metadata: str) -> None:
        """Load the SP's metadata (what a real IdP admin does when registering the SP)."""
        self.sp_metadata = sp_metadata
        self.server = _server(self.directory, "idp", sp_metadata)

    def _forger_server(self):
        if self._forger is None:
            self._forger = _server(self.directory, "forger", self.sp_metadata)
        return self._forger

    def request_from_redirect(self, url: str):
        """Decode the AuthnRequest of the SP's redirect (HTTP-Redirect binding)."""
        from saml2 import BINDING_HTTP_REDIRECT

        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == IDP_SSO, url
        query = parse_qs(parts.query)
        req = self.server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        relay = query.get("RelayState", [None])[0]
        return req.message, relay

    def answer(
        self,
        redirect_url: str | None,
        *,
        user: str = "alice@example.com",
        groups: tuple[str, ...] = ("engineering",),
        attributes: dict[str, list[str]] | None = None,
        sign_assertion: bool = True,
        sign_response: bool = False,
        forged: bool = False,
        expired: bool = False,
        audience: str | None = None,
        no_audience: bool = False,
        recipient: str | None = None,
        destination: str | None = None,
        unsolicited: bool = False,
        in_response_to: str | None = None,
        assertion_id: str | None = None,
        relay_state: str | None = ...,  # type: ignore[assignment]
        acs_url: str | None = None,
        sp_entity_id: str | None = None,
        sig_alg: str | None = None,
        digest_alg: str | None = None,
    ) -> Answer:
        """The HTTP-POST answer to the request in ``redirect_url`` (None: unsolicited, give
        ``acs_url`` and ``sp_entity_id``)."""
        from saml2 import samlp
        from saml2.s_utils import sid
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID

        if redirect_url is not None:
            request, relay = self.request_from_redirect(redirect_url)
            acs = request.assertion_consumer_service_url
            sp_entity = request.issuer.text
            req_id = request.id
        else:
            relay, req_id = None, None
            acs, sp_entity = acs_url, sp_entity_id
        if relay_state is not ...:
            relay = relay_state
        if unsolicited:
            req_id = None
        if in_response_to is not None:
            req_id = in_response_to
        identity = {"mail": [user], "groups": list(groups), **(attributes or {})}
        xml = self.server.create_authn_response(
            identity,
            req_id,
            acs,
            sp_entity,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
            sign_response=False,
            sign_assertion=False,
        )
        response = samlp.response_from_string(str(xml))
        assertion = response.assertion[0]
        if assertion_id is not None:
            assertion.id = assertion_id
        if unsolicited:
            response.in_response_to = None
        for conf in assertion.subject.subject_confirmation:
            data = conf.subject_confirmation_data
            if unsolicited:
                data.in_response_to = None
            if recipient is not None:
                data.recipient = recipient
            if expired:
                data.not_on_or_after = _shift(-600)
        if expired:
            assertion.conditions.not_on_or_after = _shift(-600)
            assertion.conditions.not_before = _shift(-1200)
        if audience is not None:
            assertion.conditions.audience_restriction[0].audience[0].text = audience
        if no_audience:
            assertion.conditions.audience_restriction = []
        if destination is not None:
            response.destination = destination
        if not response.id:
            response.id = sid()
        server = self._forger_server() if forged else self.server
        text = self._sign(server, response, sign_assertion, sign_response, sig_alg, digest_alg)
        encoded = base64.b64encode(text.encode()).decode()
        return Answer(acs, encoded, relay, text)

    def answer_encrypted(
        self, redirect_url: str, sp_cert: Path, *, sign_assertion: bool = True, user: str = "alice"
    ) -> Answer:
        """A response whose assertion is signed (or not) then encrypted for ``sp_cert``, made
        by pysaml2's own IdP path (sign, then encrypt)."""
        from saml2.saml import NAMEID_FORMAT_UNSPECIFIED, NameID
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

        request, relay = self.request_from_redirect(redirect_url)
        xml = str(
            self.server.create_authn_response(
                {"groups": ["eng"]},
                request.id,
                request.assertion_consumer_service_url,
                request.issuer.text,
                name_id=NameID(format=NAMEID_FORMAT_UNSPECIFIED, text=user),
                authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
                sign_response=False,
                sign_assertion=sign_assertion,
                encrypt_assertion=True,
                encrypt_cert_assertion=sp_cert.read_text(),
                sign_alg=SIG_RSA_SHA256,
                digest_alg=DIGEST_SHA256,
            )
        )
        assert "EncryptedAssertion" in xml and "<ns1:Assertion " not in xml
        encoded = base64.b64encode(xml.encode()).decode()
        return Answer(request.assertion_consumer_service_url, encoded, relay, xml)

    @staticmethod
    def _sign(
        server, response, sign_assertion: bool, sign_response: bool, sig_alg, digest_alg
    ) -> str:
        from saml2.sigver import pre_signature_part
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

        assertion = response.assertion[0]
        sec = server.sec
        algs = {"sign_alg": sig_alg or SIG_RSA_SHA256, "digest_alg": digest_alg or DIGEST_SHA256}
        if sign_assertion:
            assertion.signature = pre_signature_part(assertion.id, sec.my_cert, 1, **algs)
        if sign_response:
            response.signature = pre_signature_part(response.id, sec.my_cert, 2, **algs)
        text = str(response)
        if sign_assertion:
            text = sec.sign_statement(
                text, "urn:oasis:names:tc:SAML:2.0:assertion:Assertion", node_id=assertion.id
            )
        if sign_response:
            text = sec.sign_statement(
                text, "urn:oasis:names:tc:SAML:2.0:protocol:Response", node_id=response.id
            )
        return text
