"""A real OpenID Connect provider for the tests, built on authlib's server components.

authlib's ``AuthorizationServer`` with the authorization-code grant, the ``OpenIDCode``
extension (ID tokens, nonce) and ``CodeChallenge`` (PKCE, S256 only, required), signing with
its own RSA keys (joserfc). It serves ``/.well-known/openid-configuration``, ``/authorize``
(auto-approves :attr:`OIDCProvider.current_user`, chosen by the test), ``/token`` and
``/jwks`` over plain HTTP on loopback from a thread (stdlib ``http.server``: authlib needs
only method, URI, headers and form data). ``rotate_key()`` and ``mint()`` serve the key
rotation, trusted-publishing "CI" token and forged/expired/wrong-audience cases.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

MAX_BODY = 64 * 1024


class _Payload:
    """authlib's view of the request parameters (query for GET, form for POST)."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.datalist = values
        self.data = {k: v[0] for k, v in values.items()}

    client_id = property(lambda self: self.data.get("client_id"))
    grant_type = property(lambda self: self.data.get("grant_type"))
    redirect_uri = property(lambda self: self.data.get("redirect_uri"))
    scope = property(lambda self: self.data.get("scope"))
    state = property(lambda self: self.data.get("state"))

    @property
    def response_type(self) -> str | None:
        rt = self.data.get("response_type")
        return " ".join(sorted(rt.split())) if rt and " " in rt else rt


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: dict[str, str], body: bytes) -> None:
        super().__init__(method, uri, headers=headers)
        query = parse_qs(urlsplit(uri).query, keep_blank_values=True)
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        self._args = {k: v[0] for k, v in query.items()}
        self._form = {k: v[0] for k, v in form.items()}
        self.payload = _Payload(query if method == "GET" else form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class Client:
    """A registered relying party (authlib's ClientMixin)."""

    client_id: str
    redirect_uris: list[str]
    client_secret: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = {"openid", "email", "profile", "groups"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict[str, Any]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _S256Only(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            from authlib.oauth2.rfc6749.errors import InvalidRequestError

            raise InvalidRequestError("PKCE S256 required")
        super().validate_code_challenge(grant, redirect_uri)


class OIDCProvider:
    """The provider: start(), then ``issuer``; context manager; ``close()`` stops the thread."""

    def __init__(self, *, id_token_ttl_s: int = 300) -> None:
        self.clients: dict[str, Client] = {}
        self.current_user: dict[str, Any] | None = None
        self.id_token_ttl_s = id_token_ttl_s
        self.codes: dict[str, _Code] = {}
        self.used_nonces: set[str] = set()
        self.keys: list[RSAKey] = []
        self.signing_key = self._new_key()
        self.keys.append(self.signing_key)
        self.jwks_requests = 0
        self.token_requests = 0
        self.authorize_requests: list[dict[str, str]] = []
        #: called with the token response (a dict) before it is sent: tests replace id_token
        self.token_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.discovery_override: dict[str, Any] | None = None
        self.jwks_override: bytes | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.server = self._authorization_server()

    # ----- keys and tokens -----

    def _new_key(self) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
        key.ensure_kid()
        return key

    def rotate_key(self, *, keep_old: bool = True) -> str:
        """Sign with a fresh key from now on; the old one stays in the JWKS unless told not to."""
        with self._lock:
            new = self._new_key()
            self.keys = [*self.keys, new] if keep_old else [new]
            self.signing_key = new
            return str(new.kid)

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet(list(self.keys)).as_dict(private=False))

    def mint(
        self,
        claims: dict[str, Any],
        *,
        audience: str | list[str] | None = None,
        ttl_s: int | None = None,
        key: RSAKey | ECKey | OKPKey | OctKey | None = None,
        alg: str = "RS256",
        header: dict[str, Any] | None = None,
        issuer: str | None = None,
    ) -> str:
        """An ID token with standard claims (iss, aud, iat, exp) plus ``claims`` (which win)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": issuer if issuer is not None else self.issuer,
            "iat": now,
            "exp": now + (self.id_token_ttl_s if ttl_s is None else ttl_s),
        }
        if audience is not None:
            body["aud"] = audience
        body.update(claims)
        signer = key if key is not None else self.signing_key
        head: dict[str, Any] = {"alg": alg}
        if signer.kid:
            head["kid"] = signer.kid
        head.update(header or {})
        return jwt.encode(
            head, body, signer, algorithms=[alg], registry=JWSRegistry(algorithms=[alg])
        )

    @staticmethod
    def unsigned(claims: dict[str, Any], *, header: dict[str, Any] | None = None) -> str:
        """An ``alg: none`` token (empty signature), built by hand: no library signs those."""
        import base64

        def b64(data: dict[str, Any]) -> str:
            raw = json.dumps(data, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return f"{b64(header or {'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."

    # ----- authlib wiring -----

    def _authorization_server(self) -> AuthorizationServer:
        provider = self

        class Server(AuthorizationServer):
            def query_client(self, client_id: str) -> Client | None:
                return provider.clients.get(client_id)

            def save_token(self, token: dict[str, Any], request: Any) -> None:
                return None

            def create_oauth2_request(self, request: Any) -> OAuth2Request:
                return request

            def handle_response(self, status: int, body: Any, headers: Any) -> Any:
                return status, body, list(headers)

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                return None

        class Grant(AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ]

            def save_authorization_code(self, code: str, request: Any) -> None:
                data = request.payload.data
                if data.get("nonce"):
                    with provider._lock:
                        provider.used_nonces.add(data["nonce"])
                provider.codes[code] = _Code(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=request.payload.redirect_uri,
                    scope=request.scope,
                    user=dict(request.user),
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Client) -> _Code | None:
                item = provider.codes.get(code)
                if item is not None and item.client_id == client.client_id:
                    return item
                return None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> dict[str, Any]:
                return authorization_code.user

        class IDToken(OpenIDCode):
            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.signing_key

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                now = int(time.time())
                return {
                    "iss": provider.issuer,
                    "aud": [client.client_id],
                    "exp": now + provider.id_token_ttl_s,
                }

            def get_encode_header(self, client: Client) -> dict[str, Any]:
                return {"alg": "RS256", "kid": provider.signing_key.kid}

            def exists_nonce(self, nonce: str, request: Any) -> bool:
                with provider._lock:  # remembered when the code is issued
                    return nonce in provider.used_nonces

            def generate_user_info(self, user: dict[str, Any], scope: str) -> dict[str, Any]:
                return dict(user)

        server = Server(scopes_supported=["openid", "email", "profile", "groups"])
        server.register_token_generator(
            "default", BearerTokenGenerator(lambda **_: generate_token(42))
        )
        server.register_grant(Grant, [IDToken(require_nonce=True), _S256Only(required=True)])
        return server

    def register_client(
        self, client_id: str, redirect_uris: list[str], client_secret: str | None = None
    ) -> Client:
        client = Client(client_id, list(redirect_uris), client_secret)
        self.clients[client_id] = client
        return client

    def discovery(self) -> dict[str, Any]:
        doc = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
        }
        if self.discovery_override:
            doc.update(self.discovery_override)
        return doc

    def handle(
        self, method: str, uri: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """One request -> (status, body, headers). Runs authlib for /authorize and /token."""
        path = urlsplit(uri).path
        if method == "GET" and path == "/.well-known/openid-configuration":
            return _json(200, self.discovery())
        if method == "GET" and path == "/jwks":
            with self._lock:
                self.jwks_requests += 1
            if self.jwks_override is not None:
                return 200, self.jwks_override, [("Content-Type", "application/json")]
            return _json(200, self.jwks())
        if method == "GET" and path == "/authorize":
            request = _Request(method, uri, headers, b"")
            self.authorize_requests.append(dict(request.payload.data))
            try:
                grant = self.server.get_consent_grant(request, end_user=self.current_user)
            except OAuth2Error as error:
                status, payload, hdrs = error()
                return _json(status, payload, hdrs)
            status, payload, hdrs = self.server.create_authorization_response(
                request, grant_user=self.current_user, grant=grant
            )
            return _reply(status, payload, hdrs)
        if method == "POST" and path == "/token":
            with self._lock:
                self.token_requests += 1
            request = _Request(method, uri, headers, body)
            status, payload, hdrs = self.server.create_token_response(request)
            if status == 200 and isinstance(payload, dict) and self.token_hook is not None:
                payload = self.token_hook(dict(payload))
            return _reply(status, payload, hdrs)
        return 404, b"not found\n", [("Content-Type", "text/plain")]

    # ----- HTTP -----

    @property
    def issuer(self) -> str:
        if self._httpd is None:
            raise RuntimeError("provider not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OIDCProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                uri = f"{provider.issuer}{self.path}"
                status, payload, hdrs = provider.handle(self.command, uri, headers, body)
                self.send_response(status)
                for name, value in hdrs:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> tuple[int, bytes, list[tuple[str, str]]]:
    hdrs = [h for h in (headers or []) if h[0].lower() != "content-type"]
    return status, json.dumps(payload).encode(), [*hdrs, ("Content-Type", "application/json")]


def _reply(status: int, payload: Any, headers: list[tuple[str, str]]) -> tuple[int, bytes, list]:
    if isinstance(payload, dict):
        return _json(status, payload, headers)
    return status, (payload or "").encode(), headers
