"""The OIDC relying party driven through a real authorization-code + PKCE login.

The provider (authlib's server components, tests/auth/_oidc_idp.py) runs on loopback HTTP; the
"browser" is httpx following nothing: the RP's authorization URL is fetched, the provider's
302 parsed, the callback's code and state handed to the RP, which calls the token endpoint
and validates the ID token against the provider's JWKS. The provider's ``token_hook`` swaps
in forged, expired, wrong-audience, wrong-nonce and unsigned ID tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _oidc_idp import OIDCProvider
from joserfc.jwk import RSAKey

from registry_core.auth import TenantStore
from registry_core.auth._oidc import OIDCRelyingParty
from registry_core.errors import IdentityProviderError, InvalidArgumentError

REDIRECT = "http://127.0.0.1:9/t/acme/_/oidc/callback"
SECRET = "s3cret-client-password"
ALICE = {
    "sub": "u-alice",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice",
    "groups": ["engineering", "ops"],
}


@pytest.fixture()
def idp():
    with OIDCProvider() as provider:
        provider.register_client("registry", [REDIRECT], SECRET)
        provider.register_client("public-app", [REDIRECT])
        provider.current_user = dict(ALICE)
        yield provider


@pytest.fixture()
def store():
    with TenantStore(None, tenant="acme") as s:
        yield s


def _rp(idp: OIDCProvider, store: TenantStore, http: httpx.AsyncClient, **kw: Any):
    args: dict[str, Any] = {
        "issuer": idp.issuer,
        "client_id": "registry",
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        "store": store,
        "allow_http": True,
        "http": http,
        "scopes": ("openid", "email", "profile", "groups"),
    }
    args.update(kw)
    return OIDCRelyingParty(**args)


async def _authorize(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """The browser's trip to the provider: the callback's query parameters."""
    resp = await http.get(url)
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _run(idp, store, body: Callable[..., Any], **kw: Any) -> Any:
    async def main():
        async with httpx.AsyncClient() as http:
            return await body(_rp(idp, store, http, **kw), http)

    return asyncio.run(main())


def test_login_happy_path_pkce_s256(idp, store):
    async def body(rp, http):
        url = await rp.login_url("/t/acme/main/simple/")
        cb = await _authorize(http, url)
        identity, next_path = await rp.complete_login(code=cb["code"], state=cb["state"])
        return identity, next_path

    identity, next_path = _run(idp, store, body)
    assert identity.subject == "user:alice@example.com"
    assert identity.method == "oidc" and identity.issuer == idp.issuer
    assert identity.groups == frozenset({"engineering", "ops"})
    assert identity.email == "alice@example.com" and identity.name == "Alice"
    assert next_path == "/t/acme/main/simple/"
    sent = idp.authorize_requests[-1]
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["nonce"] and sent["state"] and "code_verifier" not in sent


def test_public_client_and_sub_as_username(idp, store):
    async def body(rp, http):
        cb = await _authorize(http, await rp.login_url())
        return await rp.complete(code=cb["code"], state=cb["state"])

    identity = _run(
        idp, store, body, client_id="public-app", client_secret=None, username_claim="sub"
    )
    assert identity.subject == "user:u-alice"


def test_state_is_single_use_and_bounded_in_time(idp, store):
    now = [1_000_000.0]

    async def body(rp, http):
        cb = await _authorize(http, await rp.login_url())
        await rp.complete(code=cb["code"], state=cb["state"])
        with pytest.raises(IdentityProviderError, match="state"):
            await rp.complete(code=cb["code"], state=cb["state"])  # replayed callback
        with pytest.raises(IdentityProviderError, match="state"):
            await rp.complete(code=cb["code"], state="A" * 43)  # a state we never issued
        late = await _authorize(http, await rp.login_url())
        now[0] += 601  # after pending_ttl_s (600)
        with pytest.raises(IdentityProviderError, match="state"):
            await rp.complete(code=late["code"], state=late["state"])
        return idp.token_requests

    # the clock is also the ID token's "now": the first login happens at the provider's time
    import time

    now[0] = time.time()
    assert _run(idp, store, body, clock=lambda: now[0]) == 1


def test_idp_refuses_a_reused_code(idp, store):
    async def body(rp, http):
        cb = await _authorize(http, await rp.login_url())
        await rp.complete(code=cb["code"], state=cb["state"])
        # a new login whose callback carries the OLD code: the provider refuses it
        cb2 = await _authorize(http, await rp.login_url())
        with pytest.raises(IdentityProviderError, match="invalid_grant"):
            await rp.complete(code=cb["code"], state=cb2["state"])

    _run(idp, store, body)


def _swap(idp: OIDCProvider, make: Callable[[dict[str, Any]], str]) -> None:
    """Replace the provider's ID token: ``make`` gets the genuine claims."""
    from registry_core.auth._oidc import unverified_claims

    def hook(tokens: dict[str, Any]) -> dict[str, Any]:
        tokens["id_token"] = make(unverified_claims(tokens["id_token"]))
        return tokens

    idp.token_hook = hook


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("bad-nonce", "nonce"),
        ("no-nonce", "nonce"),
        ("wrong-aud", "audience"),
        ("wrong-iss", "issuer"),
        ("expired", "expired"),
        ("forged", "signature|unknown key"),
        ("alg-none", "algorithm"),
        ("unsigned-rs256", "signature"),
        ("other-azp", "azp"),
        ("unverified-email", "not verified"),
    ],
)
def test_bad_id_tokens_refused(idp, store, case, match):
    other = RSAKey.generate_key(2048)
    other.ensure_kid()

    def make(c: dict[str, Any]) -> str:
        if case == "bad-nonce":
            return idp.mint({**c, "nonce": "attacker"})
        if case == "no-nonce":
            return idp.mint({k: v for k, v in c.items() if k != "nonce"})
        if case == "wrong-aud":
            return idp.mint({**c, "aud": "another-client"})
        if case == "wrong-iss":
            return idp.mint({**c, "iss": "http://127.0.0.1:1"})
        if case == "expired":
            return idp.mint({**c, "iat": c["iat"] - 7200, "exp": c["iat"] - 3600})
        if case == "forged":
            return idp.mint(c, key=other)
        if case == "alg-none":
            return OIDCProvider.unsigned(c)
        if case == "unsigned-rs256":
            return OIDCProvider.unsigned(c, header={"alg": "RS256", "kid": idp.signing_key.kid})
        if case == "other-azp":
            return idp.mint({**c, "aud": ["registry", "evil"], "azp": "evil"})
        if case == "unverified-email":
            return idp.mint({**c, "email_verified": False})
        raise AssertionError(case)

    _swap(idp, make)

    async def body(rp, http):
        cb = await _authorize(http, await rp.login_url())
        with pytest.raises(IdentityProviderError, match=match) as info:
            await rp.complete(code=cb["code"], state=cb["state"])
        return str(info.value), repr(rp)

    message, shown = _run(idp, store, body)
    assert SECRET not in message and SECRET not in shown


def test_key_rotation_between_logins(idp, store):
    async def body(rp, http):
        cb = await _authorize(http, await rp.login_url())
        await rp.complete(code=cb["code"], state=cb["state"])
        idp.rotate_key(keep_old=False)
        cb = await _authorize(http, await rp.login_url())
        return await rp.complete(code=cb["code"], state=cb["state"])

    assert _run(idp, store, body, jwks_min_refresh_s=0).subject == "user:alice@example.com"
    assert idp.jwks_requests == 2


def test_discovery_checks(idp, store):
    async def body(rp, http):
        with pytest.raises(IdentityProviderError) as info:
            await rp.login_url()
        return str(info.value)

    idp.discovery_override = {"issuer": "https://evil.example"}
    assert "another issuer" in _run(idp, store, body)
    idp.discovery_override = {"code_challenge_methods_supported": ["plain"]}
    assert "S256" in _run(idp, store, body)
    idp.discovery_override = {"token_endpoint": "http://evil.example/token"}
    assert "allow_http" in _run(idp, store, body)


def test_http_issuer_needs_allow_http_and_loopback(store):
    with pytest.raises(InvalidArgumentError, match="allow_http"):
        OIDCRelyingParty(
            issuer="http://127.0.0.1:1", client_id="c", redirect_uri=REDIRECT, store=store
        )
    with pytest.raises(InvalidArgumentError, match="loopback"):
        OIDCRelyingParty(
            issuer="http://idp.example",
            client_id="c",
            redirect_uri=REDIRECT,
            store=store,
            allow_http=True,
        )


def test_from_config_reads_the_secret_and_never_shows_it(idp, store, tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Conf:
        issuer: str
        client_id: str = "registry"
        client_secret_env: str | None = None
        client_secret_file: str | None = None
        scopes: tuple[str, ...] = ("openid", "email")
        groups_claim: str = "groups"
        username_claim: str = "email"
        allow_http: bool = True

    rp = OIDCRelyingParty.from_config(
        Conf(idp.issuer, client_secret_env="RC_OIDC"),
        redirect_uri=REDIRECT,
        store=store,
        environ={"RC_OIDC": SECRET},
    )
    assert SECRET not in repr(rp) and SECRET not in str(vars(rp).get("client_secret"))
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    rp = OIDCRelyingParty.from_config(
        Conf(idp.issuer, client_secret_file=str(path)), redirect_uri=REDIRECT, store=store
    )
    assert rp._secret == SECRET
    with pytest.raises(InvalidArgumentError, match="RC_MISSING"):
        OIDCRelyingParty.from_config(
            Conf(idp.issuer, client_secret_env="RC_MISSING"),
            redirect_uri=REDIRECT,
            store=store,
            environ={},
        )

    async def close():
        await rp.aclose()

    asyncio.run(close())


def test_the_next_path_is_local(idp, store):
    async def body(rp, http):
        cb = await _authorize(http, await rp.login_url("https://evil.example/phish"))
        return (await rp.complete_login(code=cb["code"], state=cb["state"]))[1]

    assert _run(idp, store, body) == "/"
