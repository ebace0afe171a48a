"""Access-control records: resources, scopes, role bindings, principals (sans-IO, frozen).

A :class:`Resource` is a tenant, an index of it, or a project of an index; a binding or a
token scope on a resource covers everything below it. Names are validated here so a record
that exists is well formed: tenant and index names ``[a-z0-9][a-z0-9-]{0,62}`` (index names
may also hold ``_``), project names PEP 503-normalized.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from ..errors import InvalidArgumentError

__all__ = [
    "ACTIONS",
    "ROLES",
    "Decision",
    "Identity",
    "Principal",
    "Resource",
    "RoleBinding",
    "Scope",
    "TokenRecord",
]

ROLES = ("reader", "uploader", "maintainer", "owner", "auditor", "admin")
ACTIONS = (
    "read",
    "upload",
    "create",
    "yank",
    "token.create",
    "token.revoke",
    "role.grant",
    "audit.read",
    "keys.manage",
    "index.admin",
)
_ACTION_ORDER = {a: i for i, a in enumerate(ACTIONS)}

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_PROJECT_NAME = re.compile(r"([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])", re.IGNORECASE)
_NORMALIZE = re.compile(r"[-_.]+")
_MAX_PROJECT = 200
_MAX_SUBJECT = 300
_SUBJECT = re.compile(r"[\x21-\x7e]{1,300}")  # printable ASCII, no spaces


def _project_name(name: str) -> str:
    if len(name) > _MAX_PROJECT or not _PROJECT_NAME.fullmatch(name):
        raise InvalidArgumentError(f"{name[:80]!r} is not a valid project name (PEP 508)")
    return _NORMALIZE.sub("-", name).lower()  # PEP 503


def _check(pattern: re.Pattern[str], name: object, what: str) -> str:
    if not isinstance(name, str) or not pattern.fullmatch(name):
        shown = name[:80] if isinstance(name, str) else type(name).__name__
        raise InvalidArgumentError(f"{shown!r} is not a valid {what} name ({pattern.pattern})")
    return name


def check_subject(subject: object) -> str:
    """``subject`` unchanged when it is a usable binding subject (``"*"``, ``"authenticated"``,
    ``"kind:name"``), else InvalidArgumentError."""
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise InvalidArgumentError("a subject is 1-300 printable ASCII characters, no spaces")
    if subject not in ("*", "authenticated") and ":" not in subject.strip(":"):
        raise InvalidArgumentError(
            f"subject {subject!r}: expected '*', 'authenticated' or 'kind:name' "
            "(user:, group:, token:, publisher:)"
        )
    return subject


@functools.total_ordering
@dataclass(frozen=True)
class Resource:
    """A tenant (``index=None``), one of its indexes (``project=None``) or a project of one.

    ``project`` is stored PEP 503-normalized; a project needs an index. Ordered by tenant,
    index, project, a parent before its children.
    """

    tenant: str
    index: str | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        _check(TENANT_NAME, self.tenant, "tenant")
        if self.index is not None:
            _check(INDEX_NAME, self.index, "index")
        if self.project is not None:
            if self.index is None:
                raise InvalidArgumentError("a project resource needs an index")
            object.__setattr__(self, "project", _project_name(self.project))

    def _key(self) -> tuple[str, str, str]:
        # "" sorts before every name: a tenant before its indexes, an index before projects
        return (self.tenant, self.index or "", self.project or "")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return self._key() < other._key()

    def covers(self, other: Resource) -> bool:
        """Whether ``other`` is this resource or below it (always False across tenants)."""
        if self.tenant != other.tenant:
            return False
        if self.index is None:
            return True
        if self.index != other.index:
            return False
        return self.project is None or self.project == other.project

    def __str__(self) -> str:
        if self.index is None:
            return "*"
        return self.index if self.project is None else f"{self.index}/{self.project}"

    @classmethod
    def parse(cls, tenant: str, text: str) -> Resource:
        """``"*"`` (the tenant), ``"main"`` (an index), ``"main/foo"`` (a project)."""
        if not isinstance(text, str) or not text:
            raise InvalidArgumentError("a resource is '*', 'INDEX' or 'INDEX/PROJECT'")
        if text == "*":
            return cls(tenant)
        index, sep, project = text.partition("/")
        if sep and (not project or "/" in project):
            raise InvalidArgumentError(
                f"{text[:80]!r}: a resource is '*', 'INDEX' or 'INDEX/PROJECT'"
            )
        return cls(tenant, index, project if sep else None)


@dataclass(frozen=True)
class Scope:
    """A token's least-privilege grant: these ``actions`` on ``resource`` (and below it)."""

    actions: frozenset[str]
    resource: Resource

    def __post_init__(self) -> None:
        actions = frozenset(self.actions)
        if not actions:
            raise InvalidArgumentError("a scope needs at least one action")
        unknown = sorted(a for a in actions if a not in _ACTION_ORDER)
        if unknown:
            raise InvalidArgumentError(
                f"unknown action {unknown[0][:40]!r} (known: {', '.join(ACTIONS)})"
            )
        object.__setattr__(self, "actions", actions)

    def allows(self, action: str, resource: Resource) -> bool:
        return action in self.actions and self.resource.covers(resource)

    def __str__(self) -> str:
        return ",".join(sorted(self.actions, key=_ACTION_ORDER.__getitem__)) + f":{self.resource}"

    @classmethod
    def parse(cls, tenant: str, text: str) -> Scope:
        """``"ACTION[,ACTION...]:RESOURCE"``, e.g. ``"upload,create:main/foo"``, ``"read:*"``."""
        if not isinstance(text, str) or len(text) > 400:
            raise InvalidArgumentError("a scope is 'ACTION[,ACTION...]:RESOURCE'")
        actions, sep, resource = text.partition(":")
        if not sep or not actions:
            raise InvalidArgumentError(
                f"{text[:80]!r}: a scope is 'ACTION[,ACTION...]:RESOURCE' (e.g. 'upload:main/foo')"
            )
        return cls(frozenset(actions.split(",")), Resource.parse(tenant, resource))


@dataclass(frozen=True)
class RoleBinding:
    """``subject`` has ``role`` on ``resource`` (and everything below it).

    Subjects: ``user:<id>``, ``group:<name>``, ``token:<id>``, ``publisher:<name>``, ``"*"``
    (everyone, anonymous included), ``"authenticated"`` (anyone signed in).
    """

    subject: str
    role: str
    resource: Resource
    granted_by: str = ""
    created_ns: int = 0

    def __post_init__(self) -> None:
        check_subject(self.subject)
        if self.role not in ROLES:
            raise InvalidArgumentError(
                f"unknown role {str(self.role)[:40]!r} (known: {', '.join(ROLES)})"
            )


@dataclass(frozen=True)
class Principal:
    """Who is asking, once authenticated, in one tenant.

    ``scopes`` None: not narrowed by a token. ``standalone``: a token without an owner, whose
    scopes are its whole grant. ``method`` "local": the operator with file access to the
    state (CLI, local MCP), treated as the admin of that tenant.
    """

    tenant: str
    subject: str
    method: str
    groups: frozenset[str] = frozenset()
    scopes: tuple[Scope, ...] | None = None
    standalone: bool = False
    expires_ns: int | None = None
    token_id: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.subject != "anonymous"

    @staticmethod
    def anonymous(tenant: str) -> Principal:
        return Principal(tenant=tenant, subject="anonymous", method="anonymous")

    @staticmethod
    def local(tenant: str) -> Principal:
        """The local operator (file access to the tenant's state): admin of the tenant."""
        return Principal(tenant=tenant, subject="local", method="local")


@dataclass(frozen=True)
class Identity:
    """What an identity provider vouched for (OIDC or SAML), before it becomes a Principal.

    ``groups``: raw group names from the claim or attribute (no ``group:`` prefix).
    """

    subject: str
    issuer: str
    method: str
    email: str | None = None
    name: str | None = None
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    """The answer of :func:`~registry_core.auth.authorize`; truthy when allowed."""

    allowed: bool
    reason: str
    role: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class TokenRecord:
    """A tenant's API token as stored: only the SHA-256 of its secret is kept.

    ``owner`` None: a standalone token (its scopes are its whole grant); else the subject
    whose roles the scopes narrow.
    """

    token_id: str
    secret_sha256: str = field(repr=False)  # not the secret, but kept out of logs all the same
    owner: str | None
    scopes: tuple[Scope, ...]
    description: str
    created_ns: int
    expires_ns: int | None = None
    revoked_ns: int | None = None
    last_used_ns: int | None = None

    @property
    def scope(self) -> str | None:
        """Compatibility with the index's old tokens: the project name when every scope is
        on one project, else None."""
        projects = {s.resource.project for s in self.scopes}
        if len(projects) == 1:
            (project,) = projects
            return project
        return None

    def scope_text(self) -> str:
        """The scopes as text, space-separated (lists, CLI output)."""
        return " ".join(str(s) for s in self.scopes)
