"""OpenID Connect relying party: authorization code + PKCE for people, ID-token validation.

:func:`validate_id_token` is the pure check (signature with an allow-listed asymmetric
algorithm, then iss/aud/azp/exp/iat/nbf/nonce with a bounded leeway); :class:`JWKSCache` keeps
an issuer's keys, refetching once on an unknown ``kid`` (rotation) but at most every
``min_refresh_s``; :class:`OIDCRelyingParty` runs the login: state, nonce and the PKCE
verifier are kept one-time in the tenant store (``put_pending``/``take_pending``).

Every failure is an :class:`~registry_core.errors.IdentityProviderError` whose message names
what was wrong, never a token, code or secret. joserfc and httpx are imported lazily (the
``auth`` extra).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from ..errors import IdentityProviderError, InvalidArgumentError
from ._model import Identity, check_subject

if TYPE_CHECKING:
    import httpx
    from joserfc.jwk import KeySet

    from ._store import TenantStore

__all__ = [
    "DEFAULT_ALGORITHMS",
    "JWKSCache",
    "OIDCRelyingParty",
    "check_issuer_url",
    "fetch_json",
    "safe_next_path",
    "unverified_claims",
    "validate_id_token",
]

#: asymmetric only: never "none", never HS* (a public key must not become an HMAC secret)
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_TOKEN_BYTES = 16 * 1024
MAX_LEEWAY_S = 300.0
MAX_GROUPS = 256
MAX_GROUP_CHARS = 256
PENDING_TTL_S = 600.0
_HTTP_TIMEOUT_S = 10.0
_MAX_DOC_BYTES = 256 * 1024


def _extra() -> None:
    try:
        import httpx  # noqa: F401
        import joserfc  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError(
            "OIDC needs joserfc and httpx: pip install 'registry-core[auth]'"
        ) from exc


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _split(token: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified; IdentityProviderError if malformed."""
    if not isinstance(token, str) or not token:
        raise IdentityProviderError("ID token missing")
    if len(token) > MAX_TOKEN_BYTES:
        raise IdentityProviderError("ID token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise IdentityProviderError("ID token is not a signed JWT (compact JWS)")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IdentityProviderError("ID token is malformed") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise IdentityProviderError("ID token is malformed")
    return header, claims


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of ``token`` WITHOUT verification (to pick the issuer's keys); bounded."""
    return _split(token)[1]


def _allowed(algorithms: Sequence[str]) -> tuple[str, ...]:
    allowed = tuple(a for a in algorithms if a in _ASYMMETRIC)
    if not allowed or len(allowed) != len(tuple(algorithms)):
        raise InvalidArgumentError(
            f"algorithms must be asymmetric JWS algorithms from {sorted(_ASYMMETRIC)}"
        )
    return allowed


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise IdentityProviderError(f"ID token has no {name!r} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IdentityProviderError(f"ID token claim {name!r} is not a number")
    return float(value)


def validate_id_token(
    token: str,
    *,
    keys: KeySet,
    issuer: str,
    audience: str,
    nonce: str | None,
    now_s: float,
    leeway_s: float = 60,
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
) -> dict[str, Any]:
    """The verified claims of ``token``; IdentityProviderError on any failure.

    Checks, in order: compact JWS, ``alg`` in the (asymmetric) allow-list, signature by a key
    of ``keys`` (by ``kid``), ``iss`` == ``issuer``, ``audience`` in ``aud`` (and ``azp`` ==
    ``audience`` when ``aud`` has several values or ``azp`` is present), ``exp`` in the future,
    ``iat`` not in the future and ``nbf`` passed (each within ``leeway_s``, at most 300 s),
    ``sub`` present, and ``nonce`` equal when one is expected.
    """
    _extra()
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jws import JWSRegistry

    allowed = _allowed(algorithms)
    if not 0 <= leeway_s <= MAX_LEEWAY_S:
        raise InvalidArgumentError(f"leeway_s must be within 0..{MAX_LEEWAY_S:g}")
    header, _ = _split(token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise IdentityProviderError(f"ID token algorithm {str(alg)[:20]!r} is not allowed")
    if "crit" in header:
        raise IdentityProviderError("ID token has critical header parameters")
    try:
        verified = jwt.decode(token, keys, algorithms=[alg], registry=JWSRegistry(algorithms=[alg]))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise IdentityProviderError("ID token signature is not valid") from exc
    claims = dict(verified.claims)

    iss = claims.get("iss")
    if not isinstance(iss, str) or not hmac.compare_digest(iss.encode(), issuer.encode()):
        raise IdentityProviderError("ID token issuer does not match")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
        raise IdentityProviderError("ID token audience is missing or malformed")
    if audience not in auds:
        raise IdentityProviderError("ID token audience does not match")
    azp = claims.get("azp")
    if (len(auds) > 1 or azp is not None) and azp != audience:
        raise IdentityProviderError("ID token authorized party (azp) does not match")

    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    assert exp is not None and iat is not None
    if now_s > exp + leeway_s:
        raise IdentityProviderError("ID token expired")
    if iat > now_s + leeway_s:
        raise IdentityProviderError("ID token issued in the future")
    if nbf is not None and nbf > now_s + leeway_s:
        raise IdentityProviderError("ID token not yet valid (nbf)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise IdentityProviderError("ID token has no usable 'sub' claim")
    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise IdentityProviderError("ID token nonce does not match")
    return claims


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_issuer_url(url: str, *, allow_http: bool, what: str = "issuer") -> str:
    """``url`` when it is https (or http to a loopback host with ``allow_http``), else error."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"{what} must be a URL string")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidArgumentError(f"{what} {url!r}: no credentials or fragment allowed")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and allow_http and _is_loopback(parts.hostname):
        return url
    if parts.scheme == "http":
        raise InvalidArgumentError(
            f"{what} {url!r}: http:// is allowed only with allow_http and a loopback host"
        )
    raise InvalidArgumentError(f"{what} {url!r} is not an https URL")


async def fetch_json(
    http: httpx.AsyncClient, url: str, *, max_bytes: int, timeout_s: float, what: str
) -> Any:
    """GET ``url`` and parse JSON, reading at most ``max_bytes`` within ``timeout_s``."""
    import httpx

    async def get() -> bytes:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise IdentityProviderError(f"{what} fetch failed: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise IdentityProviderError(f"{what} too large")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise IdentityProviderError(f"{what} too large")
            return bytes(body)

    try:
        raw = await asyncio.wait_for(get(), timeout_s)
    except TimeoutError as exc:
        raise IdentityProviderError(f"{what} fetch timed out") from exc
    except httpx.HTTPError as exc:
        raise IdentityProviderError(f"{what} fetch failed: {type(exc).__name__}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise IdentityProviderError(f"{what} is not JSON") from exc


def _new_http(allow_http: bool) -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(verify=True, timeout=_HTTP_TIMEOUT_S, follow_redirects=False)


def _public_signing_key(key: object) -> bool:
    """An asymmetric public key for signatures (no ``oct`` secret, no private part)."""
    if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC", "OKP"):
        return False
    return "d" not in key and key.get("use", "sig") == "sig"


class JWKSCache:
    """An issuer's signing keys, refetched on an unknown ``kid`` at most every ``min_refresh_s``.

    Symmetric (``oct``) keys in a JWKS are dropped: only asymmetric keys verify ID tokens.
    Concurrent refreshes share one fetch.
    """

    def __init__(
        self,
        jwks_uri: str,
        *,
        http: httpx.AsyncClient,
        min_refresh_s: float = 60,
        max_age_s: float = 3600,
        max_bytes: int = 1 << 20,
        timeout_s: float = _HTTP_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from .._util import SingleFlight

        self.jwks_uri = jwks_uri
        self._http = http
        self.min_refresh_s = float(min_refresh_s)
        self.max_age_s = float(max_age_s)
        self.max_bytes = int(max_bytes)
        self.timeout_s = float(timeout_s)
        self._clock = clock
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched: float | None = None
        self._flight: SingleFlight[None] = SingleFlight()
        self.fetches = 0

    def _due(self, *, unknown_kid: bool) -> bool:
        if self._fetched is None:
            return True
        age = self._clock() - self._fetched
        return age >= self.max_age_s or (unknown_kid and age >= self.min_refresh_s)

    async def _refresh(self) -> None:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        self._fetched = self._clock()  # a failed fetch also waits min_refresh_s
        self.fetches += 1
        doc = await fetch_json(
            self._http,
            self.jwks_uri,
            max_bytes=self.max_bytes,
            timeout_s=self.timeout_s,
            what="JWKS",
        )
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise IdentityProviderError("JWKS has no 'keys' list")
        usable = [k for k in doc["keys"] if _public_signing_key(k)]
        try:
            keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise IdentityProviderError("JWKS has no usable signing key") from exc
        self._keys = keys
        self._kids = frozenset(str(k.kid) for k in keys if k.kid)

    async def keys(self, kid: str | None) -> KeySet:
        """The key set, refreshed when stale or when ``kid`` is unknown (rate-limited)."""
        unknown = kid is not None and kid not in self._kids
        if self._due(unknown_kid=unknown):
            try:
                await self._flight.do("jwks", self._refresh)
            except IdentityProviderError:
                if self._keys is None:
                    raise
        if self._keys is None:
            raise IdentityProviderError("JWKS not available")
        if kid is not None and kid not in self._kids:
            raise IdentityProviderError("ID token signed with an unknown key")
        return self._keys


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def safe_next_path(value: object, *, base: str = "", default: str | None = None) -> str:
    """``value`` when it is a local path under ``base`` (no scheme, host, ``//``, ``\\``,
    control characters or dot segments), else ``default`` (``base + "/"``): no open redirect."""
    fallback = default if default is not None else (base or "") + "/"
    if not isinstance(value, str) or not value or len(value) > 2048:
        return fallback
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return fallback
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return fallback
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return fallback
    segments = parts.path.split("/")
    if any(s in (".", "..") or "%2e" in s.lower() or "%2f" in s.lower() for s in segments):
        return fallback
    if base and not (parts.path == base or parts.path.startswith(base.rstrip("/") + "/")):
        return fallback
    return value


def _usable_group(name: object) -> bool:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_GROUP_CHARS:
        return False
    try:
        check_subject(f"group:{name}")
    except InvalidArgumentError:
        return False
    return True


class OIDCRelyingParty:
    """One tenant's OIDC login: :meth:`login_url` then :meth:`complete` on the callback.

    ``client_secret`` None: a public client (PKCE alone); else ``client_secret_basic``.
    ``http``: an httpx.AsyncClient (TLS verification on); one is made (and owned) if None.
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        store: TenantStore,
        client_secret: str | None = None,
        scopes: Sequence[str] = ("openid", "email", "profile"),
        groups_claim: str | None = "groups",
        username_claim: str = "email",
        allow_http: bool = False,
        http: httpx.AsyncClient | None = None,
        leeway_s: float = 60,
        pending_ttl_s: float = PENDING_TTL_S,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        clock: Callable[[], float] = time.time,
        jwks_min_refresh_s: float = 60,
    ) -> None:
        _extra()
        self.issuer = check_issuer_url(issuer, allow_http=allow_http)
        self._issuer_exact = issuer
        if not client_id or not isinstance(client_id, str):
            raise InvalidArgumentError("client_id is required")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.store = store
        self._secret = client_secret
        scopes = tuple(scopes)
        self.scopes = scopes if "openid" in scopes else ("openid", *scopes)
        self.groups_claim = groups_claim
        self.username_claim = username_claim
        self.allow_http = allow_http
        self._own_http = http is None
        self._http = http if http is not None else _new_http(allow_http)
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise InvalidArgumentError(f"leeway_s must be within 0..{MAX_LEEWAY_S:g}")
        self.leeway_s = leeway_s
        if not 0 < pending_ttl_s <= 3600:
            raise InvalidArgumentError("pending_ttl_s must be within (0, 3600]")
        self.pending_ttl_s = pending_ttl_s
        self.algorithms = _allowed(algorithms)
        self._clock = clock
        self._jwks_min_refresh_s = jwks_min_refresh_s
        self._metadata: dict[str, str] | None = None
        self._jwks: JWKSCache | None = None

    def __repr__(self) -> str:  # never the secret
        return f"OIDCRelyingParty(issuer={self._issuer_exact!r}, client_id={self.client_id!r})"

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        redirect_uri: str,
        store: TenantStore,
        http: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> OIDCRelyingParty:
        """From an OIDCConfig-like object: the secret comes from ``client_secret_env`` (the
        variable's name) or ``client_secret_file`` (its first line); neither: a public client."""
        env = os.environ if environ is None else environ
        secret: str | None = None
        if environ is None and hasattr(config, "read_client_secret"):
            secret = config.read_client_secret()  # config's own reader (ConfigError names key)
        elif getattr(config, "client_secret_env", None):
            secret = env.get(config.client_secret_env)
            if not secret:
                raise InvalidArgumentError(
                    f"OIDC client secret: environment variable {config.client_secret_env} is "
                    "not set"
                )
        elif getattr(config, "client_secret_file", None):
            try:
                with open(config.client_secret_file, encoding="utf-8") as f:
                    secret = f.read(4096).strip()
            except OSError as exc:
                raise InvalidArgumentError(
                    f"OIDC client secret file {config.client_secret_file}: {exc.strerror}"
                ) from exc
            if not secret:
                raise InvalidArgumentError(
                    f"OIDC client secret file {config.client_secret_file} is empty"
                )
        return cls(
            issuer=config.issuer,
            client_id=config.client_id,
            client_secret=secret,
            redirect_uri=redirect_uri,
            store=store,
            scopes=tuple(getattr(config, "scopes", ("openid", "email", "profile"))),
            groups_claim=getattr(config, "groups_claim", "groups"),
            username_claim=getattr(config, "username_claim", "email"),
            allow_http=bool(getattr(config, "allow_http", False)),
            http=http,
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def metadata(self) -> dict[str, str]:
        """The provider's discovery document (cached): its issuer must be ours exactly."""
        if self._metadata is None:
            url = self._issuer_exact.rstrip("/") + "/.well-known/openid-configuration"
            doc = await fetch_json(
                self._http,
                url,
                max_bytes=_MAX_DOC_BYTES,
                timeout_s=_HTTP_TIMEOUT_S,
                what="OIDC discovery document",
            )
            if not isinstance(doc, dict) or doc.get("issuer") != self._issuer_exact:
                raise IdentityProviderError("OIDC discovery document names another issuer")
            meta: dict[str, str] = {}
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                value = doc.get(name)
                if not isinstance(value, str):
                    raise IdentityProviderError(f"OIDC discovery document has no {name}")
                try:
                    check_issuer_url(value, allow_http=self.allow_http, what=name)
                except InvalidArgumentError as exc:
                    raise IdentityProviderError(str(exc)) from exc
                meta[name] = value
            methods = doc.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise IdentityProviderError("the identity provider does not support PKCE S256")
            self._metadata = meta
            self._jwks = JWKSCache(
                meta["jwks_uri"], http=self._http, min_refresh_s=self._jwks_min_refresh_s
            )
        return self._metadata

    async def login_url(self, next_path: str = "/") -> str:
        """The provider's authorization URL for a new login; state, nonce and the PKCE
        verifier are remembered one-time (``pending_ttl_s``) under the state."""
        meta = await self.metadata()
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters (RFC 7636: 43..128)
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        await asyncio.to_thread(
            self.store.put_pending,
            f"oidc:{state}",
            {"nonce": nonce, "verifier": verifier, "next": safe_next_path(next_path)},
            ttl_s=self.pending_ttl_s,
            now_ns=int(self._clock() * 1e9),
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = meta["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def cancel(self, state: str) -> str | None:
        """Forget a pending login (the provider answered with an error); its next path."""
        pending = self._take(state)
        return None if pending is None else pending.get("next")

    def _take(self, state: object) -> dict[str, str] | None:
        if not isinstance(state, str) or not 20 <= len(state) <= 128:
            return None
        if not all(c.isalnum() or c in "-_" for c in state):
            return None
        return self.store.take_pending(f"oidc:{state}", now_ns=int(self._clock() * 1e9))

    async def complete(self, *, code: str, state: str, iss: str | None = None) -> Identity:
        """The identity of a finished login (see :meth:`complete_login`)."""
        identity, _ = await self.complete_login(code=code, state=state, iss=iss)
        return identity

    async def complete_login(
        self, *, code: str, state: str, iss: str | None = None
    ) -> tuple[Identity, str]:
        """Exchange ``code`` (the state is consumed first: one use), validate the ID token;
        returns the identity and the login's next path."""
        pending = await asyncio.to_thread(self._take, state)
        if pending is None:
            raise IdentityProviderError("unknown, used or expired login state")
        if iss is not None and iss != self._issuer_exact:  # RFC 9207 mix-up defence
            raise IdentityProviderError("authorization response from another issuer")
        if not isinstance(code, str) or not 1 <= len(code) <= 2048:
            raise IdentityProviderError("authorization code missing or malformed")
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": pending["verifier"],
        }
        auth: tuple[str, str] | None = None
        if self._secret is None:
            form["client_id"] = self.client_id
        else:
            auth = (self.client_id, self._secret)
        tokens = await self._post_token(meta["token_endpoint"], form, auth)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise IdentityProviderError("token response has no id_token")
        header, _ = _split(id_token)
        assert self._jwks is not None
        kid = header.get("kid")
        keys = await self._jwks.keys(kid if isinstance(kid, str) else None)
        claims = validate_id_token(
            id_token,
            keys=keys,
            issuer=self._issuer_exact,
            audience=self.client_id,
            nonce=pending["nonce"],
            now_s=self._clock(),
            leeway_s=self.leeway_s,
            algorithms=self.algorithms,
        )
        return self._identity(claims), pending.get("next", "/")

    async def _post_token(
        self, url: str, form: dict[str, str], auth: tuple[str, str] | None
    ) -> dict[str, Any]:
        import httpx

        async def post() -> tuple[int, bytes]:
            async with self._http.stream(
                "POST", url, data=form, auth=auth, headers={"Accept": "application/json"}
            ) as resp:
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > 64 * 1024:
                        raise IdentityProviderError("token response too large")
                return resp.status_code, bytes(body)

        try:
            status, raw = await asyncio.wait_for(post(), _HTTP_TIMEOUT_S)
        except TimeoutError as exc:
            raise IdentityProviderError("token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            raise IdentityProviderError(f"token endpoint failed: {type(exc).__name__}") from exc
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if status != 200 or not isinstance(doc, dict):
            error = doc.get("error") if isinstance(doc, dict) else None
            shown = error if isinstance(error, str) and error.isidentifier() else "unknown"
            raise IdentityProviderError(f"token endpoint refused the code: HTTP {status} {shown}")
        return doc

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        if self.username_claim == "email" and claims.get("email_verified") is False:
            raise IdentityProviderError("the identity provider says the email is not verified")
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not username:
            username = claims["sub"]
        try:
            subject = check_subject(f"user:{username}")
        except InvalidArgumentError as exc:
            raise IdentityProviderError(
                f"claim {self.username_claim!r} is not usable as a user name"
            ) from exc
        groups: frozenset[str] = frozenset()
        if self.groups_claim:
            raw = claims.get(self.groups_claim)
            if isinstance(raw, str):
                raw = [raw]
            if isinstance(raw, list):
                if len(raw) > MAX_GROUPS:
                    raise IdentityProviderError("too many groups in the ID token")
                groups = frozenset(g for g in raw if _usable_group(g))
        name = claims.get("name") if isinstance(claims.get("name"), str) else None
        return Identity(
            subject=subject,
            issuer=self._issuer_exact,
            method="oidc",
            email=email,
            name=name,
            groups=groups,
        )
