"""Trusted publishing: a CI job's ID token (from the real test provider) for an upload token.

The provider mints GitHub-like ID tokens (repository, repository_owner, workflow_ref,
job_workflow_ref, environment, jti); :meth:`TrustedPublishing.exchange` must accept the one
matching a configured publisher and refuse unknown issuers, wrong audiences, expired and
replayed tokens and non-matching repository/workflow/environment. The minted token then
uploads a real wheel (setuptools) to a real Index, and only that: another project, a yank
and an expired token are refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from _oidc_idp import OIDCProvider

from _packages import build_project
from registry_core.audit import MemorySink
from registry_core.auth import TenantStore
from registry_core.auth._trusted import Publisher, TrustedPublishing, publisher_bindings
from registry_core.errors import (
    AuthenticationError,
    IdentityProviderError,
    InvalidArgumentError,
    PermissionDeniedError,
    TokenExpiredError,
)
from registry_core.index import Index

AUD = "registry-core:acme"
REPO = "acme/widget"


def _publisher(issuer: str, **over: Any) -> Publisher:
    base = Publisher(
        name="widget-release",
        issuer=issuer,
        index="main",
        project="widget",
        repository=REPO,
        workflow="release.yml",
        environment="pypi",
        create=True,
    )
    return replace(base, **over)


def ci_claims(**over: Any) -> dict[str, Any]:
    """What GitHub Actions puts in an ID token for a release job of acme/widget."""
    claims = {
        "sub": f"repo:{REPO}:environment:pypi",
        "repository": REPO,
        "repository_owner": "acme",
        "repository_id": "42",
        "workflow_ref": f"{REPO}/.github/workflows/release.yml@refs/tags/v1.0",
        "job_workflow_ref": f"{REPO}/.github/workflows/release.yml@refs/tags/v1.0",
        "environment": "pypi",
        "ref": "refs/tags/v1.0",
        "jti": str(uuid.uuid4()),
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture(scope="module")
def idp():
    with OIDCProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp-build")
    return build_project(root, "widget", "1.0", payload_kb=4), build_project(
        root, "gadget", "1.0", payload_kb=4
    )


class Setup:
    def __init__(self, idp: OIDCProvider, root: Path, publishers: list[Publisher]) -> None:
        self.audit = MemorySink()
        self.store = TenantStore(
            root / "tenant.sqlite3",
            tenant="acme",
            static_bindings=publisher_bindings("acme", publishers),
            audit=self.audit,
        )
        (root / "main").mkdir()
        self.index = Index(root / "main", auth=self.store, tenant="acme", name="main")
        self.idp = idp
        self.publishers = publishers

    def exchange(self, token: str, **kw: Any) -> tuple[str, Any]:
        async def main():
            async with httpx.AsyncClient() as http:
                tp = TrustedPublishing(
                    self.publishers, self.store, audience=AUD, http=http, allow_http=True, **kw
                )
                return await tp.exchange(token)

        return asyncio.run(main())

    def close(self) -> None:
        self.index.close()
        self.store.close()


@pytest.fixture()
def env(idp, tmp_path):
    setup = Setup(idp, tmp_path, [_publisher(idp.issuer)])
    yield setup
    setup.close()


def test_exchange_then_upload_a_real_wheel(env, wheels):
    widget, gadget = wheels
    raw, record = env.exchange(env.idp.mint(ci_claims(), audience=AUD))
    assert raw.startswith("rc-") and record.owner == "publisher:widget-release"
    assert [str(s) for s in record.scopes] == ["upload,create:main/widget"]
    assert record.expires_ns is not None
    assert 0 < record.expires_ns - time.time_ns() <= 900 * 10**9
    with widget.wheel.open("rb") as f:
        uploaded = env.index.upload(widget.wheel.name, f, token=raw)
    assert uploaded.uploader == "publisher:widget-release"
    # scoped: another project is refused, and so is a yank
    with gadget.wheel.open("rb") as f, pytest.raises(PermissionDeniedError):
        env.index.upload(gadget.wheel.name, f, token=raw)
    principal = env.store.authenticate_token(raw)
    with pytest.raises(PermissionDeniedError):
        env.index.yank(widget.wheel.name, "bad", principal=principal)
    kinds = [e.kind for e in env.audit.events]
    assert "trusted_publishing.mint" in kinds
    assert all(raw not in str(e.to_json()) for e in env.audit.events)


def test_minted_token_expires(env, wheels):
    widget, _ = wheels
    raw, record = env.exchange(env.idp.mint(ci_claims(), audience=AUD))
    assert record.expires_ns is not None
    with pytest.raises(TokenExpiredError):
        env.store.authenticate_token(raw, now_ns=record.expires_ns + 1)


def test_replayed_jti_refused(env):
    token = env.idp.mint(ci_claims(), audience=AUD)
    env.exchange(token)
    with pytest.raises(IdentityProviderError, match="already used"):
        env.exchange(token)
    no_jti = env.idp.mint(ci_claims(jti=None), audience=AUD)
    with pytest.raises(IdentityProviderError, match="jti"):
        env.exchange(no_jti)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"repository": "evil/widget"}, "no trusted publisher"),
        (
            {
                "workflow_ref": f"{REPO}/.github/workflows/other.yml@refs/heads/main",
                "job_workflow_ref": f"{REPO}/.github/workflows/other.yml@refs/heads/main",
            },
            "no trusted publisher",
        ),
        (
            {  # the right file name, but a reusable workflow of another repository
                "job_workflow_ref": "evil/tools/.github/workflows/release.yml@refs/heads/main",
            },
            "no trusted publisher",
        ),
        ({"environment": "staging"}, "no trusted publisher"),
        ({"environment": None}, "no trusted publisher"),
    ],
)
def test_non_matching_claims_refused(env, over, match):
    with pytest.raises(IdentityProviderError, match=match):
        env.exchange(env.idp.mint(ci_claims(**over), audience=AUD))


def test_case_insensitive_repository_and_environment(env):
    raw, _ = env.exchange(
        env.idp.mint(ci_claims(repository="Acme/Widget", environment="PyPI"), audience=AUD)
    )
    assert raw


def test_token_validation_failures(env):
    now = int(time.time())
    with pytest.raises(IdentityProviderError, match="audience"):
        env.exchange(env.idp.mint(ci_claims(), audience="pypi"))
    with pytest.raises(IdentityProviderError, match="expired"):
        env.exchange(env.idp.mint(ci_claims(iat=now - 7200, exp=now - 3600), audience=AUD))
    with pytest.raises(IdentityProviderError, match="issuer"):
        env.exchange(env.idp.mint(ci_claims(), audience=AUD, issuer="https://ci.evil.example"))
    with pytest.raises(IdentityProviderError):
        env.exchange(OIDCProvider.unsigned({**ci_claims(), "iss": env.idp.issuer, "aud": AUD}))
    with pytest.raises(IdentityProviderError):
        env.exchange("not a jwt")


def test_forged_token_from_another_provider(env):
    with OIDCProvider() as evil:
        # same claims, same issuer name, other keys
        forged = evil.mint(ci_claims(), audience=AUD, issuer=env.idp.issuer)
        with pytest.raises(IdentityProviderError, match="signature|unknown key"):
            env.exchange(forged)


def test_a_publisher_must_constrain_something(idp, tmp_path):
    with TenantStore(None, tenant="acme") as store:
        for bad in (
            _publisher(idp.issuer, repository=None, workflow=None, environment=None),
            _publisher(idp.issuer, workflow=".github/workflows/release.yml"),
            _publisher("http://idp.example", repository=REPO),
            _publisher(idp.issuer, name="bad name"),
        ):
            with pytest.raises(InvalidArgumentError):
                TrustedPublishing([bad], store, audience=AUD, allow_http=True)


def test_extra_claims_and_no_create(idp, tmp_path, wheels):
    widget, _ = wheels
    pub = _publisher(
        idp.issuer,
        environment=None,
        claims={"repository_owner": "acme", "ref": "refs/tags/v1.0"},
        create=False,
    )
    setup = Setup(idp, tmp_path, [pub])
    try:
        with pytest.raises(IdentityProviderError, match="no trusted publisher"):
            setup.exchange(idp.mint(ci_claims(ref="refs/heads/main"), audience=AUD))
        raw, record = setup.exchange(idp.mint(ci_claims(), audience=AUD))
        assert [str(s) for s in record.scopes] == ["upload:main/widget"]
        # without create, the first upload of the project is refused
        with (
            widget.wheel.open("rb") as f,
            pytest.raises((PermissionDeniedError, AuthenticationError)),
        ):
            setup.index.upload(widget.wheel.name, f, token=raw)
    finally:
        setup.close()
