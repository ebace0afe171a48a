"""The one access-control decision point (sans-IO: time and state are arguments).

Deny by default. :func:`authorize` allows only when the principal is in the resource's tenant,
is not expired, its token scopes (if any) include the action on a resource covering the
target, and some role binding of the principal (its subject, its groups, ``"*"``, and
``"authenticated"`` once signed in) permits the action on a resource covering the target. A
standalone token needs no binding: its scopes are its whole grant. docs/rbac.md holds the
permission table; a test parses it against :data:`PERMISSIONS`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ..audit import AuditEvent, AuditSink
from ..errors import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    TokenExpiredError,
)
from ._model import ACTIONS, ROLES, Decision, Principal, Resource, RoleBinding, TokenRecord

__all__ = ["PERMISSIONS", "Policy", "authorize", "grantable", "may_revoke", "require"]

_READ = frozenset({"read"})
_UPLOAD = _READ | {"upload", "token.create"}
_MAINTAIN = _UPLOAD | {"create", "yank"}
_OWN = _MAINTAIN | {"token.revoke", "role.grant"}

PERMISSIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "reader": _READ,
        "uploader": _UPLOAD,
        "maintainer": _MAINTAIN,
        "owner": _OWN,
        "auditor": _READ | {"audit.read"},
        "admin": frozenset(ACTIONS),
    }
)
assert set(PERMISSIONS) == set(ROLES)

_ACTIONS = frozenset(ACTIONS)
_OWNER_GRANTS = frozenset({"reader", "uploader", "maintainer", "owner"})


class Policy:
    """A tenant's role bindings, indexed by subject so a decision looks only at the caller's."""

    def __init__(self, bindings: Iterable[RoleBinding]) -> None:
        by_subject: dict[str, list[RoleBinding]] = {}
        for b in bindings:
            by_subject.setdefault(b.subject, []).append(b)
        self._by_subject = {k: tuple(v) for k, v in by_subject.items()}
        self._everyone = self._by_subject.get("*", ())
        self._signed_in = self._by_subject.get("authenticated", ())

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_subject.values())

    def _iter_for(self, principal: Principal) -> Iterable[RoleBinding]:
        get = self._by_subject.get
        yield from self._everyone
        if not principal.authenticated:
            return
        yield from self._signed_in
        yield from get(principal.subject, ())
        for g in principal.groups:
            yield from get(g, ())

    def bindings_for(self, principal: Principal) -> list[RoleBinding]:
        """The bindings that apply to ``principal``: its subject's, its groups', ``"*"``'s and
        (when signed in) ``"authenticated"``'s, in any tenant."""
        return list(self._iter_for(principal))

    def roles(self, principal: Principal, resource: Resource) -> set[str]:
        """The roles ``principal`` holds on ``resource`` (bindings on it or above it)."""
        if principal.method == "local" and principal.subject == "local":
            return {"admin"} if principal.tenant == resource.tenant else set()
        return {b.role for b in self._iter_for(principal) if b.resource.covers(resource)}


def _deny(
    principal: Principal,
    action: str,
    resource: Resource,
    reason: str,
    audit: AuditSink | None,
) -> Decision:
    if audit is not None:
        with contextlib.suppress(Exception):  # auditing never changes a decision
            audit.emit(
                AuditEvent(
                    kind="authz.denied",
                    tenant=principal.tenant,
                    subject=principal.subject,
                    outcome="denied",
                    action=action,
                    # across tenants the target is not named: the caller's tenant's log must
                    # not learn another tenant's layout
                    resource="" if reason == "cross-tenant" else str(resource),
                    detail={"reason": reason, "method": principal.method},
                )
            )
    return Decision(False, reason)


def authorize(
    principal: Principal,
    action: str,
    resource: Resource,
    policy: Policy,
    *,
    now_ns: int | None = None,
    audit: AuditSink | None = None,
) -> Decision:
    """Whether ``principal`` may do ``action`` on ``resource`` under ``policy`` (see the module
    docstring). Unknown action: InvalidArgumentError. Denials are emitted to ``audit``."""
    if action not in _ACTIONS:
        raise InvalidArgumentError(f"unknown action {str(action)[:40]!r}")
    if principal.tenant != resource.tenant:
        return _deny(principal, action, resource, "cross-tenant", audit)
    if principal.expires_ns is not None and (
        (time.time_ns() if now_ns is None else now_ns) >= principal.expires_ns
    ):
        return _deny(principal, action, resource, "expired", audit)
    if principal.scopes is not None:
        for scope in principal.scopes:
            if action in scope.actions and scope.resource.covers(resource):
                break
        else:
            return _deny(principal, action, resource, "outside the token's scopes", audit)
        if principal.standalone:
            return Decision(True, "standalone token scope")
    if principal.method == "local" and principal.subject == "local":
        return Decision(True, "local operator", "admin")
    for b in policy._iter_for(principal):
        if action in PERMISSIONS[b.role] and b.resource.covers(resource):
            return Decision(True, f"{b.role} on {b.resource} via {b.subject}", b.role)
    return _deny(principal, action, resource, "no role permits it", audit)


def require(
    principal: Principal,
    action: str,
    resource: Resource,
    policy: Policy,
    *,
    now_ns: int | None = None,
    audit: AuditSink | None = None,
    hide: bool = False,
) -> None:
    """:func:`authorize`, raising on denial: ``hide`` or another tenant -> NotFoundError (reveals
    nothing); expired -> TokenExpiredError; not signed in -> AuthenticationError; else
    PermissionDeniedError naming the action and resource."""
    decision = authorize(principal, action, resource, policy, now_ns=now_ns, audit=audit)
    if decision.allowed:
        return
    if hide or decision.reason == "cross-tenant":
        raise NotFoundError("404 Not Found")
    if decision.reason == "expired":
        raise TokenExpiredError("the API token or session has expired: create a new one")
    if not principal.authenticated:
        raise AuthenticationError(f"{action} on {resource} needs credentials (an API token)")
    raise PermissionDeniedError(f"{principal.subject} may not {action} on {resource}")


def may_revoke(
    principal: Principal,
    token: TokenRecord,
    policy: Policy,
    *,
    now_ns: int | None = None,
    audit: AuditSink | None = None,
) -> Decision:
    """Whether ``principal`` may revoke ``token``: its owner (or a standalone token itself)
    always may, in its tenant and unexpired; anyone else needs ``token.revoke`` on every
    resource the token's scopes reach."""
    resources = [s.resource for s in token.scopes]
    tenant = resources[0].tenant if resources else principal.tenant
    if principal.tenant != tenant:
        return _deny(principal, "token.revoke", Resource(tenant), "cross-tenant", audit)
    if principal.expires_ns is not None and (
        (time.time_ns() if now_ns is None else now_ns) >= principal.expires_ns
    ):
        return _deny(principal, "token.revoke", Resource(tenant), "expired", audit)
    if principal.authenticated and principal.subject in (token.owner, f"token:{token.token_id}"):
        return Decision(True, "the token's own holder")
    decision = Decision(False, "a token needs a scope")
    for resource in resources or [Resource(tenant)]:
        decision = authorize(
            principal, "token.revoke", resource, policy, now_ns=now_ns, audit=audit
        )
        if not decision.allowed:
            return decision
    return decision


def grantable(granter_roles: set[str] | frozenset[str], role: str) -> bool:
    """Whether a holder of ``granter_roles`` (on the resource) may grant ``role`` on it: an
    admin any role, an owner reader/uploader/maintainer/owner, nobody else."""
    if role not in PERMISSIONS:
        raise InvalidArgumentError(f"unknown role {str(role)[:40]!r}")
    if "admin" in granter_roles:
        return True
    return "owner" in granter_roles and role in _OWNER_GRANTS
