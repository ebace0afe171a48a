"""validate_id_token and JWKSCache against tokens and keys from a real OIDC provider.

Tokens come from the test provider's own RSA keys (``mint``); forged ones are signed with
other keys, ``alg: none``, HS256 keyed with the public key, expired, early, wrong issuer,
audience, azp or nonce. The JWKS cache is exercised over HTTP: rotation refetches once, an
unknown kid does not refetch again within ``min_refresh_s``, oversized or slow JWKS fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import urlsplit

import httpx
import pytest
from _oidc_idp import OIDCProvider
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from registry_core.auth._oidc import (
    JWKSCache,
    check_issuer_url,
    safe_next_path,
    unverified_claims,
    validate_id_token,
)
from registry_core.errors import IdentityProviderError, InvalidArgumentError

AUD = "registry"


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider() as provider:
        yield provider


def _check(idp: OIDCProvider, token: str, **over):
    args = {
        "keys": KeySet(list(idp.keys)),
        "issuer": idp.issuer,
        "audience": AUD,
        "nonce": None,
        "now_s": time.time(),
    }
    args.update(over)
    return validate_id_token(token, **args)


def test_valid_token_round_trip(idp):
    token = idp.mint({"sub": "u1", "email": "a@example.com", "nonce": "n1"}, audience=AUD)
    claims = _check(idp, token, nonce="n1")
    assert claims["sub"] == "u1" and claims["email"] == "a@example.com"
    assert unverified_claims(token)["sub"] == "u1"


def test_aud_list_needs_matching_azp(idp):
    ok = idp.mint({"sub": "u", "azp": AUD}, audience=[AUD, "other"])
    assert _check(idp, ok)["azp"] == AUD
    for claims in ({"sub": "u"}, {"sub": "u", "azp": "other"}):
        bad = idp.mint(claims, audience=[AUD, "other"])
        with pytest.raises(IdentityProviderError, match="azp"):
            _check(idp, bad)


@pytest.mark.parametrize(
    ("claims", "kw", "match"),
    [
        ({"sub": "u"}, {"audience": "other"}, "audience"),
        ({"sub": "u"}, {"issuer": "https://evil.example"}, "issuer"),
        ({"sub": "u", "exp": 1000}, {}, "expired"),
        ({"sub": "u", "iat": int(time.time()) + 3600}, {}, "future"),
        ({"sub": "u", "nbf": int(time.time()) + 3600}, {}, "nbf"),
        ({"sub": "u", "nonce": "a"}, {"nonce": "b"}, "nonce"),
        ({"sub": "u"}, {"nonce": "b"}, "nonce"),
        ({}, {}, "sub"),
        ({"sub": "u", "exp": "tomorrow"}, {}, "number"),
        ({"sub": "u", "aud": 5}, {}, "audience"),
    ],
)
def test_claims_refused(idp, claims, kw, match):
    token = idp.mint(claims, audience=claims.get("aud", AUD))
    with pytest.raises(IdentityProviderError, match=match):
        _check(idp, token, **kw)


def test_leeway_is_bounded(idp):
    now = int(time.time())
    token = idp.mint({"sub": "u", "exp": now - 30}, audience=AUD)
    assert _check(idp, token, leeway_s=60)["sub"] == "u"
    with pytest.raises(IdentityProviderError, match="expired"):
        _check(idp, token, leeway_s=0)
    with pytest.raises(InvalidArgumentError):
        _check(idp, token, leeway_s=3600)


def test_forged_signatures_refused(idp):
    other = RSAKey.generate_key(2048, parameters={"use": "sig"})
    other.ensure_kid()
    forged = idp.mint({"sub": "u"}, audience=AUD, key=other)
    with pytest.raises(IdentityProviderError, match="signature"):
        _check(idp, forged)
    # the forger reuses the provider's kid: still the wrong key
    forged_kid = idp.mint(
        {"sub": "u"}, audience=AUD, key=other, header={"kid": idp.signing_key.kid}
    )
    with pytest.raises(IdentityProviderError, match="signature"):
        _check(idp, forged_kid)
    # a token whose payload was edited after signing
    good = idp.mint({"sub": "u"}, audience=AUD)
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "admin"
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(IdentityProviderError, match="signature"):
        _check(idp, f"{head}.{edited}.{sig}")


def test_alg_none_and_unsigned_refused(idp):
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": AUD, "sub": "u", "iat": now, "exp": now + 60}
    for token in (
        OIDCProvider.unsigned(claims),
        OIDCProvider.unsigned(claims, header={"alg": "None"}),
        OIDCProvider.unsigned(claims, header={"alg": "RS256", "kid": idp.signing_key.kid}),
    ):
        with pytest.raises(IdentityProviderError):
            _check(idp, token)
    with pytest.raises(InvalidArgumentError):
        _check(idp, idp.mint({"sub": "u"}, audience=AUD), algorithms=("RS256", "none"))


def test_hs256_with_public_key_refused(idp):
    # the classic confusion attack, signed by hand (joserfc refuses to make such a key)
    import hashlib
    import hmac

    public_pem = idp.signing_key.as_pem(private=False)
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": AUD, "sub": "u", "iat": now, "exp": now + 60}
    unsigned = OIDCProvider.unsigned(
        claims, header={"alg": "HS256", "kid": idp.signing_key.kid}
    ).rstrip(".")
    mac = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    token = f"{unsigned}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(IdentityProviderError, match="algorithm"):
        _check(idp, token)
    with pytest.raises(InvalidArgumentError):
        _check(idp, token, algorithms=("HS256",))


def test_es256_accepted_with_its_key():
    with OIDCProvider() as idp:
        ec = ECKey.generate_key("P-256", parameters={"use": "sig"})
        ec.ensure_kid()
        token = idp.mint({"sub": "u"}, audience=AUD, key=ec, alg="ES256")
        assert _check(idp, token, keys=KeySet([ec]))["sub"] == "u"
        with pytest.raises(IdentityProviderError):
            _check(idp, token, keys=KeySet([ec]), algorithms=("RS256",))


@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_garbage_is_a_clear_error(text):
    keys = KeySet([RSAKey.import_key(_STATIC_KEY)])
    with pytest.raises(IdentityProviderError):
        validate_id_token(text, keys=keys, issuer="https://i", audience="a", nonce=None, now_s=0)


_STATIC_KEY = RSAKey.generate_key(2048).as_dict(private=False)


def test_oversized_token_refused(idp):
    with pytest.raises(IdentityProviderError, match="too large"):
        _check(idp, "a." * 10_000 + "b")


def test_issuer_urls():
    assert check_issuer_url("https://idp.example", allow_http=False)
    assert check_issuer_url("http://127.0.0.1:8000", allow_http=True)
    for url, allow in [
        ("http://127.0.0.1:8000", False),
        ("http://idp.example", True),
        ("https://u:p@idp.example", False),
        ("ftp://idp.example", True),
    ]:
        with pytest.raises(InvalidArgumentError):
            check_issuer_url(url, allow_http=allow)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/t/acme/main/simple/", "/t/acme/main/simple/"),
        ("/t/acme", "/t/acme"),
        ("//evil.example/x", "/t/acme/"),
        ("https://evil.example/", "/t/acme/"),
        ("/t/acme/../globex/", "/t/acme/"),
        ("/t/acme/%2e%2e/globex/", "/t/acme/"),
        ("/t/globex/", "/t/acme/"),
        ("/t/acmex/", "/t/acme/"),
        ("/\\evil.example", "/t/acme/"),
        ("/t/acme/\r\nSet-Cookie: x", "/t/acme/"),
        ("", "/t/acme/"),
        (None, "/t/acme/"),
    ],
)
def test_safe_next_path(value, expected):
    assert safe_next_path(value, base="/t/acme") == expected


def test_safe_next_path_root_base():
    assert safe_next_path("/main/simple/") == "/main/simple/"
    assert safe_next_path("//x") == "/"


def test_jwks_rotation_refetch_once_and_rate_limited():
    async def main(idp: OIDCProvider) -> None:
        now = [1000.0]
        async with httpx.AsyncClient() as http:
            cache = JWKSCache(f"{idp.issuer}/jwks", http=http, clock=lambda: now[0])
            first = idp.signing_key.kid
            await cache.keys(first)
            await cache.keys(first)
            assert idp.jwks_requests == 1
            new = idp.rotate_key()
            now[0] += 61  # after min_refresh_s: the unknown kid triggers one refetch
            keys = await cache.keys(new)
            assert idp.jwks_requests == 2
            token = idp.mint({"sub": "u"}, audience=AUD)
            assert _check(idp, token, keys=keys)["sub"] == "u"
            # a kid nobody published: refused without hammering the provider
            for _ in range(5):
                with pytest.raises(IdentityProviderError, match="unknown key"):
                    await cache.keys("no-such-kid")
            assert idp.jwks_requests == 2
            now[0] += 61
            with pytest.raises(IdentityProviderError, match="unknown key"):
                await cache.keys("no-such-kid")
            assert idp.jwks_requests == 3
            # concurrent unknown kids share one fetch
            newer = idp.rotate_key(keep_old=False)
            now[0] += 61
            await asyncio.gather(*(cache.keys(newer) for _ in range(8)))
            assert idp.jwks_requests == 4

    with OIDCProvider() as idp:
        asyncio.run(main(idp))


def test_jwks_bounded_and_filtered():
    async def main(idp: OIDCProvider) -> None:
        async with httpx.AsyncClient() as http:
            idp.jwks_override = b'{"keys": [' + b'{"kty": "RSA"},' * 100_000 + b"{}]}"
            cache = JWKSCache(f"{idp.issuer}/jwks", http=http, max_bytes=64 * 1024)
            with pytest.raises(IdentityProviderError, match="too large"):
                await cache.keys(None)
            # only symmetric or private keys published: nothing usable
            secret = OctKey.generate_key(256)
            private = RSAKey.generate_key(2048).as_dict(private=True)
            idp.jwks_override = json.dumps(
                {"keys": [secret.as_dict(private=True), private]}
            ).encode()
            cache = JWKSCache(f"{idp.issuer}/jwks", http=http)
            with pytest.raises(IdentityProviderError, match="usable"):
                await cache.keys(None)
            idp.jwks_override = b"not json"
            cache = JWKSCache(f"{idp.issuer}/jwks", http=http)
            with pytest.raises(IdentityProviderError, match="JSON"):
                await cache.keys(None)
            idp.jwks_override = None

    with OIDCProvider() as idp:
        asyncio.run(main(idp))


def test_jwks_fetch_time_bounded():
    """A provider that accepts the connection and never answers: the fetch gives up."""
    import socket

    async def main(port: int) -> None:
        async with httpx.AsyncClient() as http:
            cache = JWKSCache(f"http://127.0.0.1:{port}/jwks", http=http, timeout_s=0.5)
            with pytest.raises(IdentityProviderError, match="timed out|failed"):
                await cache.keys(None)

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        asyncio.run(main(silent.getsockname()[1]))


@given(st.text(max_size=120), st.sampled_from(["", "/t/acme"]))
def test_safe_next_path_is_always_local(value, base):
    """Whatever comes in, the redirect target is a path under the base on this host."""
    from urllib.parse import urljoin

    out = safe_next_path(value, base=base)
    assert out.startswith("/") and not out.startswith("//") and "\\" not in out
    assert not any(ord(c) < 0x21 or ord(c) == 0x7F for c in out)
    resolved = urlsplit(urljoin("https://registry.example/x/", out))
    assert resolved.netloc == "registry.example"
    assert resolved.path == base or resolved.path.startswith(base + "/")
    assert out == value or out == base + "/"


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(), max_size=6))
def test_unverified_claims_round_trip(claims):
    """The unverified decoder reads back what an encoder wrote (any JSON object payload)."""
    token = OIDCProvider.unsigned(claims)
    assert unverified_claims(token) == claims
