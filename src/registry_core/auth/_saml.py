"""SAML 2.0 service provider (Web Browser SSO: HTTP-Redirect request, HTTP-POST response).

pysaml2 (extra ``auth``) parses the XML with its defused parser and checks the signature with
xmlsec1 against the IdP metadata's certificate; on top of its checks this module insists on
what the Web SSO profile requires and pysaml2 leaves optional or lax: a signed *assertion*
(a response signature alone is refused), exactly one assertion, an AudienceRestriction naming
us, every bearer confirmation's Recipient equal to our ACS URL, a Destination (when present)
equal to it, an InResponseTo naming an outstanding request of ours (taken once from the tenant
store: no unsolicited responses, no second answer to one request), NotOnOrAfter present and in
the future within a bounded clock skew, and the assertion ID never seen before
(``store.first_use``). Errors are IdentityProviderError with a short reason: never the XML.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import logging
import re
import shutil
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import IdentityProviderError, InvalidArgumentError

if TYPE_CHECKING:
    from ._model import Identity
    from ._store import TenantStore

__all__ = ["MAX_RESPONSE_BYTES", "SAMLServiceProvider"]

_log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 256 * 1024  # the base64 SAMLResponse form field
MAX_CLOCK_SKEW_S = 300
PENDING_TTL_S = 600.0  # how long a login may stay at the IdP
_MAX_REPLAY_MEMORY_NS = 24 * 3600 * 10**9
_MAX_ID = 256
_MAX_NAME = 256
_MAX_GROUPS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PENDING_PREFIX = "saml:"
_DSIG = "http://www.w3.org/2000/09/xmldsig#"
_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
_ENC = "http://www.w3.org/2001/04/xmlenc#"
STRONG_SIGNATURES = frozenset(
    _MORE + a
    for a in ("rsa-sha256", "rsa-sha384", "rsa-sha512", "ecdsa-sha256", "ecdsa-sha384",
              "ecdsa-sha512")
)  # fmt: skip
STRONG_DIGESTS = frozenset((_ENC + "sha256", _MORE + "sha384", _ENC + "sha512"))
_EXTRA_HINT = "pip install 'registry-core[auth]'"


def _import_saml2() -> Any:
    try:
        import saml2
        import saml2.client
        import saml2.config
        import saml2.metadata
        import saml2.samlp
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test venv
        raise ImportError(f"SAML needs pysaml2: {_EXTRA_HINT}") from exc
    return saml2


class _WithholdXML(logging.Filter):
    """pysaml2 logs whole documents on some failures (the assertion: a credential, and
    personal data) and NameIDs as XML: such messages keep only the text before the XML."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is logging's business, not ours
            return True
        if "<" in text or len(text) > 500:
            record.msg = text.split("<", 1)[0][:200].rstrip() + " [SAML XML withheld]"
            record.args = ()
        return True


_WITHHOLD = _WithholdXML()


def _withhold_saml2_xml() -> None:
    """Put the filter on every pysaml2 logger (logger filters do not apply to children)."""
    for name in list(logging.root.manager.loggerDict):
        if name == "saml2" or name.startswith("saml2."):
            logger = logging.getLogger(name)
            if _WITHHOLD not in logger.filters:
                logger.addFilter(_WITHHOLD)


def _check_url(name: str, url: str) -> str:
    if not isinstance(url, str) or not url:
        raise InvalidArgumentError(f"{name} must be a non-empty string")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidArgumentError(f"{name} must be an absolute http(s) URL, got {url!r}")
    return url


def _reason(exc: BaseException) -> str:
    """A short, XML-free reason for a refusal from pysaml2 (its messages may quote the XML)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "<" in text or len(text) > 160:
        text = ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _clean(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise IdentityProviderError(f"SAML {what} is not text")
    value = value.strip()
    if not value or len(value) > _MAX_NAME or _CONTROL.search(value):
        raise IdentityProviderError(f"SAML {what} is empty, too long or has control characters")
    return value


def _group(value: object) -> str | None:
    """A group name usable as ``group:<name>``, else None (dropped, with a log line)."""
    from ._model import check_subject

    if isinstance(value, str):
        value = value.strip()
        try:
            check_subject("group:" + value)
            return value
        except InvalidArgumentError:
            pass
    _log.warning("SAML group dropped: not printable ASCII without spaces (%.40r)", value)
    return None


class SAMLServiceProvider:
    """One tenant's SAML SP: the AuthnRequest redirect, the ACS check, our metadata.

    ``idp_metadata_xml``: the IdP's metadata (one IdP entity with an HTTP-Redirect SSO
    endpoint and a signing certificate). ``clock_skew_s``: 0..300 seconds of tolerance on
    NotBefore/NotOnOrAfter. ``sp_certfile``/``sp_keyfile``: optional; then AuthnRequests are
    signed and encrypted assertions can be decrypted. ``xmlsec_binary``: default the
    ``xmlsec1`` on PATH (missing: InvalidArgumentError saying how to install it).
    Thread-safe: the ACS check runs in worker threads.
    """

    def __init__(
        self,
        entity_id: str,
        acs_url: str,
        idp_metadata_xml: str,
        store: TenantStore,
        *,
        groups_attribute: str = "groups",
        username_attribute: str | None = None,
        clock_skew_s: float = 60,
        sp_certfile: str | None = None,
        sp_keyfile: str | None = None,
        xmlsec_binary: str | None = None,
    ) -> None:
        if not isinstance(entity_id, str) or not entity_id or len(entity_id) > 1024:
            raise InvalidArgumentError("entity_id must be a non-empty string (a URI)")
        self.entity_id = entity_id
        self.acs_url = _check_url("acs_url", acs_url)
        if isinstance(clock_skew_s, bool) or not isinstance(clock_skew_s, (int, float)):
            raise InvalidArgumentError("clock_skew_s must be a number of seconds")
        if not 0 <= clock_skew_s <= MAX_CLOCK_SKEW_S:
            raise InvalidArgumentError(
                f"clock_skew_s must be within 0..{MAX_CLOCK_SKEW_S} seconds, got {clock_skew_s}"
            )
        if (sp_certfile is None) != (sp_keyfile is None):
            raise InvalidArgumentError("sp_certfile and sp_keyfile go together")
        if not isinstance(idp_metadata_xml, str) or not idp_metadata_xml.strip():
            raise InvalidArgumentError("idp_metadata_xml must be the IdP's metadata XML")
        xmlsec = xmlsec_binary or shutil.which("xmlsec1")
        if not xmlsec or not shutil.which(xmlsec):
            raise InvalidArgumentError(
                "SAML needs the xmlsec1 program to check signatures: install it "
                "(Debian/Ubuntu: apt-get install xmlsec1; macOS: brew install libxmlsec1) "
                "or pass xmlsec_binary"
            )
        self.store = store
        self.groups_attribute = groups_attribute
        self.username_attribute = username_attribute
        self.clock_skew_s = clock_skew_s
        self._saml2 = _import_saml2()
        self._lock = threading.Lock()
        self._config = self._make_config(xmlsec, idp_metadata_xml, sp_certfile, sp_keyfile)
        self._client = self._saml2.client.Saml2Client(config=self._config)
        _withhold_saml2_xml()  # after the client: its modules and their loggers exist now
        idps = list(self._client.metadata.identity_providers())
        if len(idps) != 1:
            raise InvalidArgumentError(
                f"idp_metadata_xml must describe exactly one identity provider, found {len(idps)}"
            )
        self.idp_entity_id: str = idps[0]
        if not self._client.metadata.certs(self.idp_entity_id, "idpsso", "signing"):
            raise InvalidArgumentError("the IdP metadata has no signing certificate")
        try:
            self._client.metadata.single_sign_on_service(
                self.idp_entity_id, self._saml2.BINDING_HTTP_REDIRECT
            )[0]
        except (IndexError, KeyError, TypeError) as exc:
            raise InvalidArgumentError(
                "the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding"
            ) from exc
        self._has_key = sp_keyfile is not None

    def __repr__(self) -> str:
        return f"SAMLServiceProvider(entity_id={self.entity_id!r}, idp={self.idp_entity_id!r})"

    def _make_config(
        self, xmlsec: str, idp_xml: str, certfile: str | None, keyfile: str | None
    ) -> Any:
        saml2 = self._saml2
        conf: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": xmlsec,
            "metadata": {"inline": [idp_xml]},
            "accepted_time_diff": int(self.clock_skew_s),
            "allow_unknown_attributes": True,
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(self.acs_url, saml2.BINDING_HTTP_POST)]
                    },
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "want_assertions_or_response_signed": False,
                    "allow_unsolicited": False,
                    "authn_requests_signed": keyfile is not None,
                    "allow_unknown_attributes": True,
                }
            },
        }
        if certfile is not None and keyfile is not None:
            conf["cert_file"] = certfile
            conf["key_file"] = keyfile
            conf["encryption_keypairs"] = [{"cert_file": certfile, "key_file": keyfile}]
        config = saml2.config.SPConfig()
        try:
            config.load(conf)
        except Exception as exc:
            raise InvalidArgumentError(f"bad SAML configuration: {_reason(exc)}") from exc
        return config

    # -- login ----------------------------------------------------------------------------

    def login_redirect(self, relay_state: str = "/", *, browser_key: str | None = None) -> str:
        """The IdP URL (HTTP-Redirect binding) carrying a new AuthnRequest.

        ``relay_state`` is where to go after the login: a local path only
        (InvalidArgumentError otherwise). The request ID is kept in the tenant store for
        PENDING_TTL_S with the relay state; the response must answer it, once.
        ``browser_key``: a secret the browser keeps (a cookie); when given, the response is
        accepted only with the same key (a response obtained by someone else cannot sign
        this browser in: login CSRF). Only its SHA-256 is stored.
        """
        from ._oidc import safe_next_path  # the one open-redirect check (OIDC's next too)

        if not relay_state or safe_next_path(relay_state, default="") != relay_state:
            raise InvalidArgumentError("relay_state must be a local path such as '/main/'")
        relay = relay_state
        saml2 = self._saml2
        with self._lock:
            req_id, info = self._client.prepare_for_authenticate(
                entityid=self.idp_entity_id,
                relay_state=relay,
                binding=saml2.BINDING_HTTP_REDIRECT,
                sign=self._has_key,
            )
        location = dict(info["headers"])["Location"]
        pending = {"relay_state": relay}
        if browser_key is not None:
            pending["browser"] = hashlib.sha256(browser_key.encode()).hexdigest()
        self.store.put_pending(_PENDING_PREFIX + req_id, pending, ttl_s=PENDING_TTL_S)
        return str(location)

    def complete(
        self, saml_response: str, relay_state: str | None, *, browser_key: str | None = None
    ) -> Identity:
        """Check the HTTP-POST ``SAMLResponse``; the Identity it vouches for.

        IdentityProviderError on any failure (the message never includes the assertion).
        """
        return self.complete_login(saml_response, relay_state, browser_key=browser_key)[0]

    def complete_login(
        self, saml_response: str, relay_state: str | None, *, browser_key: str | None = None
    ) -> tuple[Identity, str]:
        """As :meth:`complete`, plus the local path stored with the request (where to go).

        A RelayState that differs from the one we sent is refused; the path returned is ours,
        never the posted one.
        """
        if not isinstance(saml_response, str) or not saml_response:
            raise IdentityProviderError("SAMLResponse is missing")
        if len(saml_response) > MAX_RESPONSE_BYTES:
            raise IdentityProviderError("SAMLResponse is too large")
        try:
            xml = base64.b64decode(saml_response, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise IdentityProviderError("SAMLResponse is not base64") from exc
        response = self._peek(xml)
        req_id = response.in_response_to
        if not req_id:
            raise IdentityProviderError("unsolicited SAML response refused (no InResponseTo)")
        if len(req_id) > _MAX_ID or _CONTROL.search(req_id):
            raise IdentityProviderError("SAML InResponseTo is malformed")
        pending = self.store.take_pending(_PENDING_PREFIX + req_id)
        if pending is None:
            raise IdentityProviderError(
                "SAML response to an unknown, expired or already answered request"
            )
        relay = pending.get("relay_state", "/")
        if relay_state is not None and relay_state != relay:
            raise IdentityProviderError("SAML RelayState does not match the request")
        expected = pending.get("browser")
        if expected is not None:
            given = hashlib.sha256((browser_key or "").encode()).hexdigest()
            if browser_key is None or not hmac.compare_digest(given, expected):
                raise IdentityProviderError(
                    "SAML sign-in must finish in the browser that started it"
                )
        parsed = self._verify(saml_response, req_id, relay)
        identity, expires_ns = self._identity(parsed)
        now_ns = time.time_ns()
        expires_ns = min(expires_ns, now_ns + _MAX_REPLAY_MEMORY_NS)
        assertion_id = parsed.assertion.id
        if not assertion_id or len(assertion_id) > _MAX_ID:
            raise IdentityProviderError("SAML assertion has no usable ID")
        if not self.store.first_use("saml", assertion_id, expires_ns=expires_ns, now_ns=now_ns):
            raise IdentityProviderError("SAML assertion replayed")
        return identity, relay

    def _peek(self, xml: bytes) -> Any:
        """The Response parsed (pysaml2's defused parser), to find its InResponseTo before
        anything is checked; structure limits that need no signature come here too."""
        try:
            response = self._saml2.samlp.response_from_string(xml)
        except Exception as exc:
            raise IdentityProviderError(
                f"SAMLResponse is not a SAML Response: {_reason(exc)}"
            ) from None
        if response is None:
            raise IdentityProviderError("SAMLResponse is not a SAML Response")
        if len(response.assertion) + len(response.encrypted_assertion) != 1:
            raise IdentityProviderError("SAML response must carry exactly one assertion")
        if response.encrypted_assertion and not self._has_key:
            raise IdentityProviderError(
                "SAML assertion is encrypted but this service provider has no key (sp_keyfile)"
            )
        return response

    def _verify(self, saml_response: str, req_id: str, relay: str) -> Any:
        saml2 = self._saml2
        _withhold_saml2_xml()  # loggers of modules pysaml2 imported since
        try:
            with self._lock:
                parsed = self._client.parse_authn_request_response(
                    saml_response, saml2.BINDING_HTTP_POST, outstanding={req_id: relay}
                )
                if parsed is not None and parsed.name_id is not None:
                    # pysaml2 remembers every person in an unbounded in-memory cache: forget
                    self._client.users.remove_person(parsed.name_id)
        except IdentityProviderError:
            raise
        except Exception as exc:
            raise IdentityProviderError(f"SAML response refused: {_reason(exc)}") from None
        if parsed is None or parsed.assertion is None:
            raise IdentityProviderError("SAML response refused: no usable assertion")
        response = parsed.response
        if response.destination and response.destination != self.acs_url:
            raise IdentityProviderError("SAML response Destination is not our ACS URL")
        assertion = parsed.assertion
        signature = getattr(assertion, "signature", None)
        if not signature:
            raise IdentityProviderError("SAML assertion is not signed")
        info = signature.signed_info
        method = info.signature_method.algorithm if info and info.signature_method else None
        digests = [r.digest_method.algorithm if r.digest_method else None for r in info.reference]
        if method not in STRONG_SIGNATURES or not digests or not STRONG_DIGESTS.issuperset(digests):
            raise IdentityProviderError(
                "SAML assertion signature uses a weak or unknown algorithm (SHA-256 or better)"
            )
        issuer = assertion.issuer.text.strip() if assertion.issuer and assertion.issuer.text else ""
        if issuer != self.idp_entity_id:
            raise IdentityProviderError("SAML assertion Issuer is not the configured IdP")
        conditions = assertion.conditions
        audiences = [
            (a.text or "").strip()
            for r in (conditions.audience_restriction if conditions else [])
            for a in r.audience
        ]
        if self.entity_id not in audiences:
            raise IdentityProviderError("SAML assertion audience is not this service provider")
        bearers = [
            c
            for c in assertion.subject.subject_confirmation
            if c.method == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
        ]
        if not bearers:
            raise IdentityProviderError("SAML assertion has no bearer subject confirmation")
        for conf in bearers:
            data = conf.subject_confirmation_data
            if data is None or data.recipient != self.acs_url:
                raise IdentityProviderError("SAML assertion Recipient is not our ACS URL")
            if data.in_response_to != req_id:
                raise IdentityProviderError("SAML assertion answers another request")
        return parsed

    def _identity(self, parsed: Any) -> tuple[Identity, int]:
        from saml2.time_util import str_to_time

        from ._model import Identity, check_subject

        assertion = parsed.assertion
        limits = [assertion.conditions.not_on_or_after] if assertion.conditions else []
        limits += [
            c.subject_confirmation_data.not_on_or_after
            for c in parsed.assertion.subject.subject_confirmation
        ]
        stamps = [calendar.timegm(str_to_time(v)) for v in limits if v]
        if not stamps:
            raise IdentityProviderError("SAML assertion has no NotOnOrAfter")
        expires_ns = int((min(stamps) + self.clock_skew_s) * 10**9)
        try:
            ava: Mapping[str, list[Any]] = parsed.get_identity() or {}
        except Exception as exc:
            raise IdentityProviderError(f"SAML attributes refused: {_reason(exc)}") from None
        if self.username_attribute is not None:
            values = ava.get(self.username_attribute) or []
            if len(values) != 1:
                raise IdentityProviderError(
                    f"SAML attribute {self.username_attribute!r} must have exactly one value"
                )
            name = _clean(values[0], f"attribute {self.username_attribute!r}")
        else:
            name_id = parsed.name_id
            name = _clean(name_id.text if name_id is not None else None, "NameID")
        raw_groups = ava.get(self.groups_attribute) or []
        if len(raw_groups) > _MAX_GROUPS:
            raise IdentityProviderError(f"SAML assertion has more than {_MAX_GROUPS} groups")
        groups = frozenset(g for g in (_group(v) for v in raw_groups) if g is not None)
        email = self._first(ava, "mail", "email", "emailAddress")
        display = self._first(ava, "displayName", "cn", "name")
        subject = f"user:{name}"
        try:
            check_subject(subject)
        except InvalidArgumentError:
            raise IdentityProviderError(
                "SAML user name is not usable (printable ASCII without spaces, at most 295)"
            ) from None
        identity = Identity(
            subject=subject,
            issuer=self.idp_entity_id,
            method="saml",
            email=email,
            name=display,
            groups=groups,
        )
        return identity, expires_ns

    @staticmethod
    def _first(ava: Mapping[str, list[Any]], *names: str) -> str | None:
        for key in names:
            values = ava.get(key) or []
            if values and isinstance(values[0], str):
                try:
                    return _clean(values[0], key)
                except IdentityProviderError:
                    return None
        return None

    # -- metadata -------------------------------------------------------------------------

    def metadata_xml(self) -> bytes:
        """Our SP metadata (entity ID, ACS URL, requested signed assertions) for the IdP."""
        ed = self._saml2.metadata.entity_descriptor(self._config)
        if ed.extensions is not None:  # advertise only the algorithms we accept
            strong = STRONG_SIGNATURES | STRONG_DIGESTS
            ed.extensions.extension_elements = [
                e
                for e in ed.extensions.extension_elements
                if "Algorithm" not in e.attributes or e.attributes["Algorithm"] in strong
            ]
        return str(ed).encode("utf-8")
