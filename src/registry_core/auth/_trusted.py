"""Trusted publishing, as PyPI does it: a CI job's OIDC ID token for a short-lived upload token.

The CI job asks for the tenant's audience (``GET /_/oidc/audience``), has its provider mint an
ID token for it and posts it (``POST /_/oidc/mint-token``). :meth:`TrustedPublishing.exchange`
verifies it (issuer one of the configured publishers', audience, signature by the issuer's
JWKS, exp/iat/nbf), matches a publisher by its claims (repository, workflow file, environment,
extra claims), refuses a replayed ``jti`` and mints a tenant token owned by
``publisher:<name>`` scoped to ``upload`` (and ``create`` when configured) on exactly that
index/project, expiring after ``token_ttl_s``. :func:`publisher_bindings` are the static role
bindings that let those tokens act (the tenant store is built with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import IdentityProviderError, InvalidArgumentError
from ._model import Resource, RoleBinding, Scope, TokenRecord, check_subject
from ._oidc import (
    DEFAULT_ALGORITHMS,
    MAX_LEEWAY_S,
    JWKSCache,
    _new_http,
    _split,
    check_issuer_url,
    fetch_json,
    validate_id_token,
)

if TYPE_CHECKING:
    import httpx

    from ..audit import AuditSink
    from ._store import TenantStore

__all__ = ["Publisher", "TrustedPublishing", "publisher_bindings"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_MAX_CLAIM = 1024
_MAX_JTI = 256
_MAX_ISSUERS = 32


@dataclass(frozen=True)
class Publisher:
    """A trusted publisher (the fields of config's PublisherConfig)."""

    name: str
    issuer: str
    index: str
    project: str
    repository: str | None = None
    workflow: str | None = None
    environment: str | None = None
    claims: Mapping[str, str] = field(default_factory=dict)
    create: bool = False
    audience: str | None = None
    #: an http:// issuer on a loopback host (tests, local development) only with this
    allow_http: bool = False

    @classmethod
    def of(cls, config: Any) -> Publisher:
        """From any object with these attributes (PublisherConfig)."""
        if isinstance(config, Publisher):
            return config
        return cls(
            name=config.name,
            issuer=config.issuer,
            index=config.index,
            project=config.project,
            repository=getattr(config, "repository", None),
            workflow=getattr(config, "workflow", None),
            environment=getattr(config, "environment", None),
            claims=dict(getattr(config, "claims", None) or {}),
            create=bool(getattr(config, "create", False)),
            audience=getattr(config, "audience", None),
            allow_http=bool(getattr(config, "allow_http", False)),
        )

    @property
    def subject(self) -> str:
        return f"publisher:{self.name}"


def _check_publisher(p: Publisher, tenant: str, allow_http: bool) -> Publisher:
    if not isinstance(p.name, str) or not _NAME.fullmatch(p.name):
        raise InvalidArgumentError(f"publisher name {p.name!r}: {_NAME.pattern}")
    check_subject(p.subject)
    check_issuer_url(
        p.issuer, allow_http=allow_http or p.allow_http, what=f"publisher {p.name}: issuer"
    )
    Resource(tenant, p.index, p.project)  # validates the names
    if not (p.repository or p.claims):
        # without one of these, any workflow of any repository at that issuer could publish
        raise InvalidArgumentError(
            f"publisher {p.name}: set repository (and workflow) or claims to match"
        )
    if p.workflow is not None and ("/" in p.workflow or not p.workflow):
        raise InvalidArgumentError(f"publisher {p.name}: workflow is a file name (release.yml)")
    for key, value in p.claims.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgumentError(f"publisher {p.name}: claims map names to strings")
    return p


def _scope_actions(p: Publisher) -> frozenset[str]:
    return frozenset({"upload", "create"} if p.create else {"upload"})


def publisher_bindings(tenant: str, publishers: Iterable[Any]) -> list[RoleBinding]:
    """The static bindings for ``publishers``: ``publisher:<name>`` is uploader (maintainer when
    it may create the project) on its project only; the minted tokens' scopes narrow it further
    to upload (and create): they never yank, grant or read another project's secrets."""
    out = []
    for config in publishers:
        p = Publisher.of(config)
        role = "maintainer" if p.create else "uploader"
        out.append(
            RoleBinding(
                subject=p.subject,
                role=role,
                resource=Resource(tenant, p.index, p.project),
                granted_by="config",
            )
        )
    return out


def _workflow_of(claims: Mapping[str, Any]) -> tuple[str, str] | None:
    """(repository part, workflow file name) of ``job_workflow_ref`` (else ``workflow_ref``):
    ``owner/repo/.github/workflows/release.yml@refs/tags/v1``."""
    ref = claims.get("job_workflow_ref") or claims.get("workflow_ref")
    if not isinstance(ref, str) or "@" not in ref or len(ref) > _MAX_CLAIM:
        return None
    path = ref.split("@", 1)[0]
    repo, sep, filename = path.partition("/.github/workflows/")
    if not sep or not filename or "/" in filename:
        return None
    return repo, filename


def _matches(p: Publisher, claims: Mapping[str, Any]) -> bool:
    if p.repository is not None:
        repo = claims.get("repository")
        if not isinstance(repo, str) or repo.lower() != p.repository.lower():
            return False
    if p.workflow is not None:
        wf = _workflow_of(claims)
        if wf is None or wf[1] != p.workflow:
            return False
        if p.repository is not None and wf[0].lower() != p.repository.lower():
            return False  # a workflow of another repository (PyPI: no reusable workflows)
    if p.environment is not None:
        env = claims.get("environment")
        if not isinstance(env, str) or env.lower() != p.environment.lower():
            return False
    return all(claims.get(key) == value for key, value in p.claims.items())


class TrustedPublishing:
    """One tenant's trusted publishers; :meth:`exchange` turns a CI ID token into an upload
    token. ``audience``: the tenant's default (e.g. its public URL or ``"registry-core"``)."""

    def __init__(
        self,
        publishers: Sequence[Any],
        store: TenantStore,
        *,
        audience: str,
        http: httpx.AsyncClient | None = None,
        token_ttl_s: float = 900,
        allow_http: bool = False,
        leeway_s: float = 60,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        clock: Callable[[], float] = time.time,
        audit: AuditSink | None = None,
        jwks_min_refresh_s: float = 60,
    ) -> None:
        if not isinstance(audience, str) or not audience or len(audience) > 256:
            raise InvalidArgumentError("audience: a non-empty string of at most 256 characters")
        if not 0 < token_ttl_s <= 6 * 3600:
            raise InvalidArgumentError("token_ttl_s must be within (0, 21600]")
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise InvalidArgumentError(f"leeway_s must be within 0..{MAX_LEEWAY_S:g}")
        self.store = store
        self.tenant = store.tenant
        self.audience = audience
        self.publishers = tuple(
            _check_publisher(Publisher.of(p), store.tenant, allow_http) for p in publishers
        )
        names = [p.name for p in self.publishers]
        if len(set(names)) != len(names):
            raise InvalidArgumentError("publisher names must be unique")
        if len({p.issuer for p in self.publishers}) > _MAX_ISSUERS:
            raise InvalidArgumentError(f"at most {_MAX_ISSUERS} distinct publisher issuers")
        self.token_ttl_s = float(token_ttl_s)
        self.allow_http = allow_http
        self.leeway_s = float(leeway_s)
        self.algorithms = tuple(algorithms)
        self._clock = clock
        self._audit = audit
        self._own_http = http is None
        self._http = http if http is not None else _new_http(allow_http)
        self._jwks: dict[str, JWKSCache] = {}
        self._jwks_min_refresh_s = jwks_min_refresh_s

    def __repr__(self) -> str:
        return f"TrustedPublishing(tenant={self.tenant!r}, publishers={len(self.publishers)})"

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    def bindings(self) -> list[RoleBinding]:
        return publisher_bindings(self.tenant, self.publishers)

    async def _keys_for(self, issuer: str) -> JWKSCache:
        cache = self._jwks.get(issuer)
        if cache is None:
            doc = await fetch_json(
                self._http,
                issuer.rstrip("/") + "/.well-known/openid-configuration",
                max_bytes=256 * 1024,
                timeout_s=10.0,
                what="OIDC discovery document",
            )
            if not isinstance(doc, dict) or doc.get("issuer") != issuer:
                raise IdentityProviderError("OIDC discovery document names another issuer")
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise IdentityProviderError("OIDC discovery document has no jwks_uri")
            allow_http = self.allow_http or any(
                p.allow_http for p in self.publishers if p.issuer == issuer
            )
            try:
                check_issuer_url(jwks_uri, allow_http=allow_http, what="jwks_uri")
            except InvalidArgumentError as exc:
                raise IdentityProviderError(str(exc)) from exc
            cache = JWKSCache(jwks_uri, http=self._http, min_refresh_s=self._jwks_min_refresh_s)
            self._jwks[issuer] = cache
        return cache

    def _fail(self, reason: str, issuer: str = "") -> IdentityProviderError:
        self._emit("failed", "anonymous", {"reason": reason, "issuer": issuer[:200]})
        return IdentityProviderError(f"trusted publishing refused: {reason}")

    def _emit(self, outcome: str, subject: str, detail: Mapping[str, str]) -> None:
        from ..audit import AuditEvent

        sink = self._audit if self._audit is not None else self.store.audit
        event = AuditEvent(
            kind="trusted_publishing.mint",
            tenant=self.tenant,
            subject=subject,
            outcome=outcome,
            action="token.create",
            detail=dict(detail),
        )
        with contextlib.suppress(Exception):  # sinks must not raise; never let one break a mint
            sink.emit(event)

    async def exchange(self, oidc_token: str) -> tuple[str, TokenRecord]:
        """``(raw token, record)`` for a valid CI ID token of a configured publisher;
        IdentityProviderError (401) naming the reason otherwise (never echoing the token)."""
        header, unverified = _split(oidc_token)
        issuer = unverified.get("iss")
        candidates = [p for p in self.publishers if p.issuer == issuer]
        if not isinstance(issuer, str) or not candidates:
            raise self._fail("the token's issuer is not a trusted publisher's")
        kid = header.get("kid")
        keys = await (await self._keys_for(issuer)).keys(kid if isinstance(kid, str) else None)
        now = self._clock()
        claims: dict[str, Any] | None = None
        last: IdentityProviderError | None = None
        for audience in dict.fromkeys(p.audience or self.audience for p in candidates):
            try:
                claims = validate_id_token(
                    oidc_token,
                    keys=keys,
                    issuer=issuer,
                    audience=audience,
                    nonce=None,
                    now_s=now,
                    leeway_s=self.leeway_s,
                    algorithms=self.algorithms,
                )
            except IdentityProviderError as exc:
                last = exc
                continue
            candidates = [p for p in candidates if (p.audience or self.audience) == audience]
            break
        if claims is None:
            assert last is not None
            raise self._fail(str(last).removeprefix("ID token "), issuer)
        matched = next((p for p in candidates if _matches(p, claims)), None)
        if matched is None:
            raise self._fail("no trusted publisher matches the token's claims", issuer)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
            raise self._fail("the token has no usable 'jti' claim", issuer)
        exp = float(claims["exp"])
        first = await asyncio.to_thread(
            self.store.first_use,
            "oidc-jti",
            f"{issuer}#{jti}",
            expires_ns=int((exp + self.leeway_s) * 1e9),
        )
        if not first:
            raise self._fail("the token was already used", issuer)
        scope = Scope(
            _scope_actions(matched), Resource(self.tenant, matched.index, matched.project)
        )
        wf = _workflow_of(claims)
        description = f"trusted publishing: {matched.name}"
        if isinstance(claims.get("repository"), str):
            description += f" ({claims['repository'][:100]}"
            description += f" {wf[1][:60]})" if wf else ")"
        raw, record = await asyncio.to_thread(
            self.store.create_token,
            owner=matched.subject,
            scopes=[scope],
            description=description[:200],
            expires_ns=time.time_ns() + int(self.token_ttl_s * 1e9),
        )
        self._emit(
            "ok",
            matched.subject,
            {
                "token_id": record.token_id,
                "issuer": issuer[:200],
                "scope": str(scope),
                "repository": str(claims.get("repository", ""))[:200],
                "jti": jti[:100],
            },
        )
        return raw, record
