"""Tenants, identities and access control (knows nothing of HTTP, indexes or config files).

- :mod:`._model`: :class:`Resource`, :class:`Scope`, :class:`RoleBinding`, :class:`Principal`,
  :class:`Identity`, :class:`Decision`, :class:`TokenRecord` (frozen, validated records).
- :mod:`._rbac`: :func:`authorize` / :func:`require`, the one decision point, over a
  :class:`Policy`; :data:`PERMISSIONS` is the role table of docs/rbac.md.
- :mod:`._tokens`: the ``rc-<id>-<secret>`` API token format (hash at rest).
- :mod:`._tenants`: :class:`TenantResolver`, host/path -> tenant (sans-IO).
- :mod:`._store`: :class:`TenantStore`, one tenant's tokens, bindings, users, sessions,
  pending logins and replay memory (SQLite).
- :mod:`._ratelimit`: rate-limit tiers (:class:`Plan`, :data:`DEFAULT_PLANS`, :func:`gcra`,
  :class:`MemoryRateLimiter`, :class:`RedisRateLimiter` (imports redis only when one is made),
  :class:`TieredLimiter`, :func:`rate_limit_headers`).
- :func:`safe_next_path` (:mod:`._oidc`): the one open-redirect check of every sign-in
  (OIDC ``next``, SAML ``RelayState``).

joserfc, httpx, pysaml2 and redis are imported only when used (the ``auth`` extra).
"""

from __future__ import annotations

from ._model import (
    ACTIONS,
    ROLES,
    Decision,
    Identity,
    Principal,
    Resource,
    RoleBinding,
    Scope,
    TokenRecord,
    check_subject,
)
from ._oidc import safe_next_path
from ._ratelimit import (
    DEFAULT_PLANS,
    Limit,
    LimitResult,
    MemoryRateLimiter,
    Plan,
    RateLimiter,
    RedisRateLimiter,
    TieredLimiter,
    gcra,
    rate_limit_headers,
)
from ._rbac import PERMISSIONS, Policy, authorize, grantable, may_revoke, require
from ._store import TenantStore
from ._tenants import TENANT_NAME, TenantResolver, TenantRoute, check_tenant_name
from ._tokens import PREFIX, generate_token, hash_secret, parse_token, verify_secret

__all__ = [
    "ACTIONS",
    "DEFAULT_PLANS",
    "PERMISSIONS",
    "PREFIX",
    "ROLES",
    "TENANT_NAME",
    "Decision",
    "Identity",
    "Limit",
    "LimitResult",
    "MemoryRateLimiter",
    "Plan",
    "Policy",
    "Principal",
    "RateLimiter",
    "RedisRateLimiter",
    "Resource",
    "RoleBinding",
    "Scope",
    "TenantResolver",
    "TenantRoute",
    "TenantStore",
    "TieredLimiter",
    "TokenRecord",
    "authorize",
    "check_subject",
    "check_tenant_name",
    "gcra",
    "generate_token",
    "grantable",
    "hash_secret",
    "may_revoke",
    "parse_token",
    "rate_limit_headers",
    "require",
    "safe_next_path",
    "verify_secret",
]
