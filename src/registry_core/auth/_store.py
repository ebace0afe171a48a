"""One tenant's access-control state: tokens, role bindings, users, sessions, pending logins
and replay memory, in SQLite (a file per tenant, the embedded default) or PostgreSQL (a
``postgresql://`` DSN: a schema per tenant in a database several instances share).

Secrets are never stored: a token keeps the SHA-256 of its secret, a session the SHA-256 of
its id. The SQL is written once; :mod:`._store_sql` gives it transactions and a change
counter per backend (SQLite: one connection, WAL, ``busy_timeout``, ``PRAGMA user_version``;
PostgreSQL: pooled connections, versioned migrations). Any thread may call (one lock per
store). Caches (token records, sessions, the compiled Policy) are dropped whenever this
object writes or the change counter says another connection committed (SQLite's ``PRAGMA
data_version``, PostgreSQL's counter row read per check), so a revocation takes effect at
once, here and in every process sharing the database.
:meth:`TenantStore.authenticate_cached` and :meth:`TenantStore.session_cached` answer from
those caches without ever waiting (for the event loop), or say they cannot (None; always on
PostgreSQL, whose counter needs a round trip). Every stored value is bounded and every
expiring row is purged lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .._util import LRU
from ..audit import AuditEvent, AuditSink, LogSink
from ..errors import AuthenticationError, InvalidArgumentError, TokenExpiredError
from ._model import Identity, Principal, Resource, RoleBinding, Scope, TokenRecord, check_subject
from ._rbac import Policy
from ._store_sql import SCHEMA_VERSION, open_backend
from ._tenants import check_tenant_name
from ._tokens import generate_token, parse_token, verify_secret

__all__ = ["SCHEMA_VERSION", "TenantStore"]

MAX_KEY = 256
MAX_VALUE_BYTES = 4096
MAX_DESCRIPTION = 500
# rows of logins in progress (anyone may start one): beyond it the oldest are dropped, so the
# table stays under MAX_PENDING x MAX_VALUE_BYTES (80 MiB) whatever the traffic
MAX_PENDING = 20_000
_TOUCH_NS = 60 * 10**9  # last_used is written at most once a minute per token
_PURGE_NS = 60 * 10**9
_MAX_RAW_SESSION = 128
_MAX_NS = 1 << 63  # SQLite INTEGER
_LEGACY_ACTIONS = frozenset({"read", "upload", "create"})

_TOKEN_COLUMNS = (
    "token_id, secret_sha256, owner, scopes, description, created_ns, expires_ns, revoked_ns, "
    "last_used_ns"
)

_ALL: Any = object()


def _now(now_ns: int | None) -> int:
    return time.time_ns() if now_ns is None else now_ns


def _bounded(value: object, what: str, limit: int = MAX_KEY) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidArgumentError(f"{what} must be a non-empty str of at most {limit} characters")
    return value


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _groups_json(groups: Iterable[str]) -> str:
    names = sorted({_bounded(g, "a group name") for g in groups})
    if len(names) > 1000:
        raise InvalidArgumentError("at most 1000 groups per identity")
    return json.dumps(names)


class TenantStore:
    """The state of tenant ``tenant`` in the SQLite file ``path`` (None or ``":memory:"``: in
    memory) or, when ``path`` is a ``postgresql://`` DSN, in that database (schema
    ``tenant_<name>``; ``busy_timeout`` x 3 is then the statement timeout).
    ``static_bindings`` (from configuration) join the stored ones in :meth:`policy`; ``audit``
    receives token, role and login events (default: the audit logger)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        tenant: str,
        static_bindings: Iterable[RoleBinding] = (),
        audit: AuditSink | None = None,
        busy_timeout: float = 10.0,
        cache_entries: int = 1024,
    ) -> None:
        self.tenant = check_tenant_name(tenant)
        self.audit: AuditSink = audit if audit is not None else LogSink()
        self._static = tuple(static_bindings)
        for b in self._static:
            if b.resource.tenant != self.tenant:
                raise InvalidArgumentError(
                    f"static binding {b.subject} {b.role}: resource of tenant "
                    f"{b.resource.tenant}, not {self.tenant}"
                )
        self._lock = threading.RLock()
        self._db = open_backend(path, tenant=self.tenant, busy_timeout=busy_timeout)
        self.path = self._db.where  # never a password
        try:
            self._data_version = self._db.version()
        except BaseException:
            self._db.close()
            raise
        self._tokens: LRU[str, tuple[TokenRecord, frozenset[str]]] = LRU(cache_entries)
        self._sessions: LRU[str, Principal] = LRU(cache_entries)
        self._policy: Policy | None = None
        self._last_purge = 0

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock, self._db.tx() as c:
            yield c

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.read(sql, args)

    def _invalidate(self) -> None:
        self._tokens.clear()
        self._sessions.clear()
        self._policy = None

    def _fresh(self) -> None:
        """Drop the caches when another connection (process) committed since last look."""
        with self._lock:
            self._check_version()

    def _check_version(self, *, block: bool = True) -> bool:
        """With the lock held: drop the caches if another connection committed; True when
        nothing changed. Without ``block``, False also when that cannot be known without
        waiting (PostgreSQL), the caches kept."""
        version = self._db.version(block=block)
        if version is None:
            return False
        if version != self._data_version:
            self._data_version = version
            self._invalidate()
            return False
        return True

    @contextmanager
    def _lock_if_free(self) -> Iterator[bool]:
        """The lock when no other thread holds it (True), else False at once: for callers on
        an event loop, which must never wait for a transaction in progress."""
        if not self._lock.acquire(blocking=False):
            yield False
            return
        try:
            yield not self._db.closed and self._check_version(block=False)
        finally:
            self._lock.release()

    def _emit(self, kind: str, subject: str, outcome: str = "ok", **kw: Any) -> None:
        with contextlib.suppress(Exception):  # auditing never fails the audited operation
            self.audit.emit(
                AuditEvent(kind=kind, tenant=self.tenant, subject=subject, outcome=outcome, **kw)
            )

    def _maybe_purge(self, now: int) -> None:
        if now - self._last_purge < _PURGE_NS:
            return
        self._last_purge = now
        with self._tx() as c:
            c.execute("DELETE FROM pending WHERE expires_ns <= ?", (now,))
            c.execute("DELETE FROM replay WHERE expires_ns <= ?", (now,))
            c.execute("DELETE FROM sessions WHERE expires_ns <= ?", (now,))

    def ping(self) -> None:
        """Raise unless the database answers now (a readiness check; 503 on PostgreSQL)."""
        self._read("SELECT 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TenantStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TenantStore({self.path!r}, tenant={self.tenant!r})"

    # -- tokens --------------------------------------------------------------------------------

    def _scopes_text(self, scopes: Sequence[Scope]) -> str:
        if isinstance(scopes, (str, Scope)) or not scopes:
            raise InvalidArgumentError("a token needs a non-empty sequence of scopes")
        for s in scopes:
            if not isinstance(s, Scope):
                raise InvalidArgumentError(f"scopes must be Scope objects, not {type(s).__name__}")
            if s.resource.tenant != self.tenant:
                raise InvalidArgumentError(f"a scope of tenant {self.tenant} cannot name another")
        return " ".join(str(s) for s in scopes)

    def _record(self, row: Any) -> TokenRecord:
        (tid, sha, owner, scopes, desc, created, expires, revoked, used) = row
        return TokenRecord(
            token_id=tid,
            secret_sha256=sha,
            owner=owner,
            scopes=tuple(Scope.parse(self.tenant, s) for s in scopes.split()),
            description=desc,
            created_ns=created,
            expires_ns=expires,
            revoked_ns=revoked,
            last_used_ns=used,
        )

    def create_token(
        self,
        *,
        owner: str | None,
        scopes: Sequence[Scope],
        description: str = "",
        expires_ns: int | None = None,
        now_ns: int | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token: ``(raw token, record)``; the raw token exists only in the return value.
        ``owner`` None makes a standalone token (its scopes are its whole grant)."""
        if owner is not None:
            check_subject(owner)
        text = self._scopes_text(scopes)
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidArgumentError(f"description: at most {MAX_DESCRIPTION} characters")
        now = _now(now_ns)
        if expires_ns is not None and (
            not isinstance(expires_ns, int) or not (now < expires_ns < _MAX_NS)
        ):
            raise InvalidArgumentError("expires_ns must be a future time (ns since the epoch)")
        raw, token_id, digest = generate_token()
        record = TokenRecord(
            token_id=token_id,
            secret_sha256=digest,
            owner=owner,
            scopes=tuple(scopes),
            description=description,
            created_ns=now,
            expires_ns=expires_ns,
        )
        with self._tx() as c:
            c.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (token_id, digest, owner, text, description, now, expires_ns),
            )
        detail = {"token_id": token_id, "scopes": text}
        if expires_ns is not None:
            detail["expires_ns"] = str(expires_ns)
        self._emit(
            "token.create", owner or f"token:{token_id}", action="token.create", detail=detail
        )
        return raw, record

    def token(self, token_id: str) -> TokenRecord | None:
        """The token ``token_id``, or None."""
        rows = self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_id = ?", (token_id,))
        return self._record(rows[0]) if rows else None

    def tokens(self, owner: str | None = _ALL) -> list[TokenRecord]:
        """Every token (oldest first), or those of ``owner`` (None: the standalone ones)."""
        if owner is _ALL:
            rows = self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_ns, token_id")
        elif owner is None:
            rows = self._read(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE owner IS NULL "
                "ORDER BY created_ns, token_id"
            )
        else:
            rows = self._read(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE owner = ? "
                "ORDER BY created_ns, token_id",
                (owner,),
            )
        return [self._record(r) for r in rows]

    def revoke_token(self, token_id: str, *, by: str = "", now_ns: int | None = None) -> bool:
        """Revoke a token (at once, caches included); False when unknown or already revoked."""
        with self._tx() as c:
            n = c.execute(
                "UPDATE tokens SET revoked_ns = ? WHERE token_id = ? AND revoked_ns IS NULL",
                (_now(now_ns), token_id),
            ).rowcount
            self._invalidate()
        if n:
            self._emit(
                "token.revoke",
                by or "local",
                action="token.revoke",
                detail={"token_id": str(token_id)[:64]},
            )
        return n > 0

    def _user_groups(self, subject: str) -> frozenset[str]:
        rows = self._read("SELECT groups FROM users WHERE subject = ?", (subject,))
        if not rows:
            return frozenset()
        return frozenset("group:" + g for g in json.loads(rows[0][0]))

    def authenticate_token(self, raw: str | None, *, now_ns: int | None = None) -> Principal:
        """The principal of a raw token. AuthenticationError when malformed, unknown or revoked;
        TokenExpiredError when expired. A token owned by a user carries the groups of that
        user's last sign-in (its roles through groups), narrowed by the token's scopes."""
        token_id, secret = parse_token(raw)
        now = _now(now_ns)
        with self._lock:  # read and cache at once: a revocation in between is not undone
            self._check_version()
            cached = self._tokens.get(token_id)
            if cached is None:
                record = self.token(token_id)
                if record is None:
                    raise AuthenticationError("unknown API token")
                groups = (
                    self._user_groups(record.owner)
                    if record.owner is not None and record.owner.startswith("user:")
                    else frozenset()
                )
                cached = (record, groups)
                self._tokens.put(token_id, cached)
        record, groups = cached
        if not verify_secret(secret, record):  # every time: a cached id is not a credential
            raise AuthenticationError("unknown API token")
        if record.revoked_ns is not None:
            raise AuthenticationError(f"API token {token_id} was revoked")
        if record.expires_ns is not None and now >= record.expires_ns:
            raise TokenExpiredError(f"API token {token_id} has expired: create a new one")
        if record.last_used_ns is None or now - record.last_used_ns >= _TOUCH_NS:
            with self._tx() as c:
                c.execute("UPDATE tokens SET last_used_ns = ? WHERE token_id = ?", (now, token_id))
            record = dataclasses.replace(record, last_used_ns=now)
            self._tokens.put(token_id, (record, groups))
        return self._token_principal(record, groups)

    def _token_principal(self, record: TokenRecord, groups: frozenset[str]) -> Principal:
        return Principal(
            tenant=self.tenant,
            subject=record.owner or f"token:{record.token_id}",
            method="token",
            groups=groups,
            scopes=record.scopes,
            standalone=record.owner is None,
            expires_ns=record.expires_ns,
            token_id=record.token_id,
        )

    def authenticate_cached(
        self, raw: str | None, *, now_ns: int | None = None
    ) -> Principal | None:
        """:meth:`authenticate_token` without ever blocking, for an event loop: the principal
        when the token's record is cached, valid (secret checked in constant time, not
        revoked, not expired) and needs no write (``last_used`` not due); None otherwise (the
        caller then asks :meth:`authenticate_token` on a worker thread, which also gives the
        error). None too when another thread holds the store's lock or another connection
        committed since the last look (a revocation elsewhere is never missed)."""
        try:
            token_id, secret = parse_token(raw)
        except AuthenticationError:
            return None
        now = _now(now_ns)
        with self._lock_if_free() as fresh:
            cached = self._tokens.get(token_id) if fresh else None
        if cached is None:
            return None
        record, groups = cached
        if not verify_secret(secret, record):  # every time: a cached id is not a credential
            return None
        if record.revoked_ns is not None:
            return None
        if record.expires_ns is not None and now >= record.expires_ns:
            return None
        if record.last_used_ns is None or now - record.last_used_ns >= _TOUCH_NS:
            return None
        return self._token_principal(record, groups)

    def import_legacy_tokens(
        self, records: Iterable[tuple[Any, ...]], *, index: str = "main"
    ) -> int:
        """Import tokens of an index's old ``tokens`` table (rows ``token_id, secret_sha256,
        scope, description, created_ns, revoked_ns, last_used_ns``) not yet here: standalone,
        ``read,upload,create`` on ``index`` (scope None) or on ``index/<scope>``; revoked ones
        stay revoked. Idempotent; returns how many were added."""
        added = 0
        with self._tx() as c:
            for row in records:
                token_id, sha, scope, description, created, revoked, used = row
                resource = Resource(self.tenant, index, scope or None)
                text = str(Scope(_LEGACY_ACTIONS, resource))
                added += c.execute(
                    f"INSERT INTO tokens ({_TOKEN_COLUMNS}) "
                    "VALUES (?, ?, NULL, ?, ?, ?, NULL, ?, ?) ON CONFLICT DO NOTHING",
                    (token_id, sha, text, description or "", created, revoked, used),
                ).rowcount
            self._invalidate()
        return added

    # -- roles ---------------------------------------------------------------------------------

    def _check_resource(self, resource: Resource) -> None:
        if not isinstance(resource, Resource) or resource.tenant != self.tenant:
            raise InvalidArgumentError(f"a binding of tenant {self.tenant} must name its resources")

    def grant(self, subject: str, role: str, resource: Resource, *, by: str = "") -> RoleBinding:
        """Bind ``role`` on ``resource`` to ``subject`` (idempotent: the stored binding). No
        permission check here: a caller acting for someone checks ``role.grant`` on the
        resource and :func:`~registry_core.auth.grantable` first."""
        self._check_resource(resource)
        binding = RoleBinding(subject, role, resource, granted_by=by, created_ns=time.time_ns())
        with self._tx() as c:
            c.execute(
                "INSERT INTO bindings (subject, role, resource, granted_by, created_ns) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (subject, role, str(resource), by, binding.created_ns),
            )
            row = c.execute(
                "SELECT granted_by, created_ns FROM bindings "
                "WHERE subject = ? AND role = ? AND resource = ?",
                (subject, role, str(resource)),
            ).fetchone()
            self._invalidate()
        self._emit(
            "role.grant",
            by or "local",
            action="role.grant",
            resource=str(resource),
            detail={"grantee": subject, "role": role},
        )
        return RoleBinding(subject, role, resource, granted_by=row[0], created_ns=row[1])

    def revoke_role(self, subject: str, role: str, resource: Resource, *, by: str = "") -> bool:
        """Remove a stored binding; False when there was none (static ones cannot be)."""
        self._check_resource(resource)
        with self._tx() as c:
            n = c.execute(
                "DELETE FROM bindings WHERE subject = ? AND role = ? AND resource = ?",
                (subject, role, str(resource)),
            ).rowcount
            self._invalidate()
        if n:
            self._emit(
                "role.revoke",
                by or "local",
                action="role.grant",
                resource=str(resource),
                detail={"grantee": subject, "role": role},
            )
        return n > 0

    def bindings(self) -> list[RoleBinding]:
        """The stored bindings (not the static ones), by subject, role, resource."""
        rows = self._read(
            "SELECT subject, role, resource, granted_by, created_ns FROM bindings "
            "ORDER BY subject, role, resource"
        )
        return [
            RoleBinding(s, r, Resource.parse(self.tenant, res), granted_by=g, created_ns=t)
            for s, r, res, g, t in rows
        ]

    @property
    def static_bindings(self) -> tuple[RoleBinding, ...]:
        return self._static

    def policy(self) -> Policy:
        """Static and stored bindings, compiled once until they change."""
        self._fresh()
        policy = self._policy
        if policy is None:
            policy = self._policy = Policy((*self._static, *self.bindings()))
        return policy

    # -- users ---------------------------------------------------------------------------------

    def record_login(self, identity: Identity, *, now_ns: int | None = None) -> None:
        """Remember who signed in (subject, e-mail, name, groups, when)."""
        now = _now(now_ns)
        groups = _groups_json(identity.groups)
        subject = _bounded(identity.subject, "subject")
        with self._tx() as c:
            c.execute(
                "INSERT INTO users (subject, issuer, method, email, name, groups, "
                "first_login_ns, last_login_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (subject) DO UPDATE SET issuer = excluded.issuer, "
                "method = excluded.method, email = excluded.email, name = excluded.name, "
                "groups = excluded.groups, last_login_ns = excluded.last_login_ns",
                (
                    subject,
                    _bounded(identity.issuer, "issuer", 1024),
                    _bounded(identity.method, "method", 32),
                    identity.email[:MAX_KEY] if identity.email else None,
                    identity.name[:MAX_KEY] if identity.name else None,
                    groups,
                    now,
                    now,
                ),
            )
            self._tokens.clear()  # tokens owned by this user carry its groups
        self._emit("login", subject, detail={"issuer": identity.issuer, "method": identity.method})

    def users(self) -> list[dict[str, Any]]:
        """Every user who signed in: subject, issuer, method, email, name, groups,
        first_login_ns, last_login_ns."""
        rows = self._read(
            "SELECT subject, issuer, method, email, name, groups, first_login_ns, last_login_ns "
            "FROM users ORDER BY subject"
        )
        return [
            {
                "subject": s,
                "issuer": i,
                "method": m,
                "email": e,
                "name": n,
                "groups": json.loads(g),
                "first_login_ns": f,
                "last_login_ns": ll,
            }
            for s, i, m, e, n, g, f, ll in rows
        ]

    # -- sessions ------------------------------------------------------------------------------

    def create_session(
        self, identity: Identity, *, ttl_s: float = 8 * 3600, now_ns: int | None = None
    ) -> str:
        """A new browser session for ``identity``; the raw id is returned once (only its
        SHA-256 is stored)."""
        if not (0 < ttl_s <= 366 * 86400):
            raise InvalidArgumentError("ttl_s must be positive and at most a year")
        now = _now(now_ns)
        self._maybe_purge(now)
        raw = secrets.token_urlsafe(32)
        with self._tx() as c:
            c.execute(
                "INSERT INTO sessions (id_sha256, subject, issuer, method, email, name, groups, "
                "created_ns, expires_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _sha256(raw),
                    _bounded(identity.subject, "subject"),
                    _bounded(identity.issuer, "issuer", 1024),
                    _bounded(identity.method, "method", 32),
                    identity.email[:MAX_KEY] if identity.email else None,
                    identity.name[:MAX_KEY] if identity.name else None,
                    _groups_json(identity.groups),
                    now,
                    now + int(ttl_s * 1e9),
                ),
            )
        return raw

    def session(self, raw_id: str | None, *, now_ns: int | None = None) -> Principal | None:
        """The principal of a session id (method "session", the identity's groups as
        ``group:<name>``), or None when unknown or expired."""
        if not isinstance(raw_id, str) or not raw_id or len(raw_id) > _MAX_RAW_SESSION:
            return None
        now = _now(now_ns)
        key = _sha256(raw_id)
        with self._lock:  # read and cache at once: a sign-out in between is not undone
            self._check_version()
            principal = self._sessions.get(key)
            if principal is None:
                rows = self._read(
                    "SELECT subject, groups, expires_ns FROM sessions WHERE id_sha256 = ?", (key,)
                )
                if not rows:
                    return None
                subject, groups, expires = rows[0]
                principal = Principal(
                    tenant=self.tenant,
                    subject=subject,
                    method="session",
                    groups=frozenset("group:" + g for g in json.loads(groups)),
                    expires_ns=expires,
                )
                self._sessions.put(key, principal)
        assert principal.expires_ns is not None
        if now >= principal.expires_ns:
            self.delete_session(raw_id)
            return None
        return principal

    def session_cached(self, raw_id: str | None, *, now_ns: int | None = None) -> Principal | None:
        """:meth:`session` without ever blocking, for an event loop: the principal when the
        session is cached and not expired; None otherwise, also when another thread holds the
        store's lock or another connection committed since the last look (the caller then
        asks :meth:`session` on a worker thread). The cache is keyed by the SHA-256 of the
        id, as the table is: only the holder of the id finds its entry."""
        if not isinstance(raw_id, str) or not raw_id or len(raw_id) > _MAX_RAW_SESSION:
            return None
        key = _sha256(raw_id)
        with self._lock_if_free() as fresh:
            principal = self._sessions.get(key) if fresh else None
        if principal is None or principal.expires_ns is None:
            return None
        if _now(now_ns) >= principal.expires_ns:
            return None
        return principal

    def delete_session(self, raw_id: str) -> bool:
        """End a session (sign-out); False when there was none."""
        if not isinstance(raw_id, str) or len(raw_id) > _MAX_RAW_SESSION:
            return False
        key = _sha256(raw_id)
        with self._tx() as c:
            n = c.execute("DELETE FROM sessions WHERE id_sha256 = ?", (key,)).rowcount
            self._sessions.discard(key)
        return n > 0

    # -- logins in progress, replay ------------------------------------------------------------

    def put_pending(
        self, key: str, value: Mapping[str, str], *, ttl_s: float, now_ns: int | None = None
    ) -> None:
        """Keep ``value`` under ``key`` for at most ``ttl_s`` (one-time: see take_pending)."""
        _bounded(key, "a pending key")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise InvalidArgumentError("a pending value maps str to str")
        data = json.dumps(dict(value), sort_keys=True)
        if len(data.encode()) > MAX_VALUE_BYTES:
            raise InvalidArgumentError(f"a pending value is at most {MAX_VALUE_BYTES} bytes")
        if not (0 < ttl_s <= 86400):
            raise InvalidArgumentError("ttl_s must be positive and at most a day")
        now = _now(now_ns)
        self._maybe_purge(now)
        with self._tx() as c:
            c.execute(
                "INSERT INTO pending (key, value, created_ns, expires_ns) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "created_ns = excluded.created_ns, expires_ns = excluded.expires_ns",
                (key, data, now, now + int(ttl_s * 1e9)),
            )
            (count,) = c.execute("SELECT COUNT(*) FROM pending").fetchone()
            if count > MAX_PENDING:
                c.execute("DELETE FROM pending WHERE expires_ns <= ?", (now,))
                c.execute(
                    "DELETE FROM pending WHERE key IN (SELECT key FROM pending "
                    "ORDER BY created_ns LIMIT ?)",
                    (max(0, count - MAX_PENDING),),
                )

    def take_pending(self, key: str, *, now_ns: int | None = None) -> dict[str, str] | None:
        """The value kept under ``key``, removed (a second take gets None); None when unknown
        or expired."""
        if not isinstance(key, str) or not key or len(key) > MAX_KEY:
            return None
        with self._tx() as c:
            row = c.execute(
                "DELETE FROM pending WHERE key = ? RETURNING value, expires_ns", (key,)
            ).fetchone()
        if row is None or _now(now_ns) >= row[1]:
            return None
        value: dict[str, str] = json.loads(row[0])
        return value

    def first_use(
        self, kind: str, ident: str, *, expires_ns: int, now_ns: int | None = None
    ) -> bool:
        """True the first time ``(kind, ident)`` is seen (remembered until ``expires_ns``),
        False on a replay."""
        _bounded(kind, "a replay kind", 64)
        _bounded(ident, "a replay id", 1024)
        if not isinstance(expires_ns, int) or expires_ns >= _MAX_NS:
            raise InvalidArgumentError("expires_ns must be an int (ns since the epoch)")
        now = _now(now_ns)
        self._maybe_purge(now)
        with self._tx() as c:
            c.execute(
                "DELETE FROM replay WHERE kind = ? AND ident = ? AND expires_ns <= ?",
                (kind, ident, now),
            )
            n = c.execute(
                "INSERT INTO replay (kind, ident, expires_ns) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (kind, ident, max(int(expires_ns), now + 1)),
            ).rowcount
        return n == 1
