"""MultiTenantApp: several tenants, each with its own indexes, behind one ASGI app.

Per request, in this order: the tenant is resolved once (:class:`registry_core.auth.
TenantResolver`: by host, else by the ``/t/<tenant>`` path prefix); the caller is
authenticated once against that tenant's :class:`TenantStore` (a token, a session cookie, or
anonymous); a caller who may not see what it asks for gets the uniform 404 (the same bytes as
an unknown tenant's); the request is rate limited (per principal and per tenant, the tenant's
plan); then the principal and tenant name go into the ASGI scope and the request goes to the
tenant's ``/_/`` routes (sign-in, whoami, logout) or to one index's :class:`IndexApp`, with
the tenant and index prefix stripped from the path (the app's ``base_path`` writes links back
under it).

Nothing is shared between tenants: each has its own storage root, tenant store, index
databases, patch stores and app instances, so no cache, single-flight key or dedup crosses a
tenant boundary (docs/tenancy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    ConfigError,
    PackageIndexError,
    RateLimitedError,
    RateLimiterUnavailableError,
)
from ..telemetry._context import annotate
from ._auth_middleware import (
    PRINCIPAL_KEY,
    SESSION_COOKIE,
    TENANT_KEY,
    authenticate_async,
    credentials,
    send_not_found,
    send_text,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ..audit import AuditSink
    from ..auth import Identity, Principal, RoleBinding, TenantStore
    from ..config import Config, TenantConfig
    from ..flags import FeatureFlags
    from ..index import Index
    from ._app import RegistryApp
    from ._index_app import IndexApp

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

__all__ = ["PRINCIPAL_KEY", "TENANT_KEY", "MultiTenantApp", "TenantRuntime", "build_app"]

log = logging.getLogger("registry_core.server.tenancy")
access_log = logging.getLogger("registry_core.server.access")
# set by Telemetry.wrap when it writes the (JSON) access line itself: then this app's line is
# left out (telemetry/_wrap.ACCESS_LOGGED_KEY; not imported: the wrapper is not cheap)
ACCESS_LOGGED_KEY = "registry_core.access_logged"

_UPLOAD_PATHS = ("/", "/legacy", "/legacy/")


def static_bindings(tenant: TenantConfig) -> list[RoleBinding]:
    """A tenant's bindings from its configuration: ``roles``, ``group_roles`` (IdP group
    ``g`` -> subject ``group:g``), each trusted publisher's role on its project
    (``publisher:<name>``) and anonymous ``reader`` on each public index."""
    from ..auth import Resource, RoleBinding

    name = tenant.name
    out = [
        RoleBinding(g.subject, g.role, Resource.parse(name, g.resource), granted_by="config")
        for g in tenant.roles
    ]
    for group, grants in tenant.group_roles.items():
        for grant in grants:
            role, _, where = grant.partition("@")
            out.append(
                RoleBinding(
                    f"group:{group}",
                    role,
                    Resource.parse(name, where or "*"),
                    granted_by="config",
                )
            )
    if tenant.publishers:
        from ..auth._trusted import publisher_bindings

        out += publisher_bindings(name, tenant.publishers)
    for index in tenant.indexes:
        if tenant.is_public(index.name):
            out.append(RoleBinding("*", "reader", Resource(name, index.name), granted_by="config"))
    return out


@dataclass
class _IndexEntry:
    """One index's live objects: the index, its file server, and an IndexApp per base."""

    name: str
    path: str  # "" or "/main": below the tenant base
    index: Index
    files: RegistryApp
    apps: dict[str, IndexApp] = field(default_factory=dict)  # tenant base -> app
    tuf: Any | None = None
    rebuilt: Any | None = None  # what Index.rebuild() reconciled at start (None: not run)

    def app(self, base: str) -> IndexApp:
        """The app whose links live under ``base`` (the first one for an unexpected base: the
        default tenant's alias ``/t/default`` links to ``/``, which serves it too)."""
        found = self.apps.get(base)
        return found if found is not None else next(iter(self.apps.values()))


class TenantRuntime:
    """One tenant's live objects, built from its :class:`TenantConfig`.

    ``store``: its :class:`TenantStore` (tokens, bindings, sessions); ``indexes``: index name
    -> ``(Index, IndexApp)``; ``bases``: the base paths it is served under (``""`` by host or
    as the default tenant, ``/t/<name>`` by path). ``oidc``/``saml``/``publishing``: the
    sign-in parts when configured, else None.
    """

    def __init__(
        self,
        config: TenantConfig,
        store: TenantStore,
        entries: dict[str, _IndexEntry],
        *,
        bases: tuple[str, ...],
        audit: AuditSink,
    ) -> None:
        self.name = config.name
        self.config = config
        self.store = store
        self.plan = config.plan
        self.bases = bases
        self.base = bases[-1]
        self.audit = audit
        self._entries = entries
        # longest path first: "/main-extra" before "/main", "" (the base itself) last
        self._paths = sorted(entries.values(), key=lambda e: -len(e.path))
        self.oidc: Any | None = None
        self.saml: Any | None = None
        self.publishing: Any | None = None
        #: The tenant's tamper-evident AuditLog (``[audit] enabled``), else None.
        self.audit_log: Any | None = None
        #: The RedisPatchCache its file servers share with other instances, else None.
        self.shared_cache: Any | None = None
        #: Its anomaly scorer and scaling advisor (server/_ml_hooks.TenantML) with ``[ml]``.
        self.ml: Any | None = None

    @property
    def indexes(self) -> dict[str, tuple[Index, IndexApp]]:
        return {n: (e.index, e.app(self.base)) for n, e in self._entries.items()}

    @property
    def entries(self) -> dict[str, _IndexEntry]:
        """Index name -> its live objects (index, file server, apps, TUF, rebuild result)."""
        return dict(self._entries)

    def entry(self, name: str) -> _IndexEntry:
        return self._entries[name]

    def route(self, path: str) -> tuple[_IndexEntry, str] | None:
        """The index ``path`` (inside the tenant) is under, and the path inside it."""
        for entry in self._paths:
            p = entry.path
            if not p:
                return entry, path
            if path == p or path.startswith(p + "/"):
                return entry, path[len(p) :] or "/"
        return None

    def can_read(self, principal: Principal, index: str | None = None) -> bool:
        """``read`` on one index, or (``index`` None) on any of them."""
        names = [index] if index is not None else list(self._entries)
        return any(self._entries[n].index.authorize(principal, "read") for n in names)

    def sign_in(self, identity: Identity) -> str:
        """Record a sign-in and open a session for it; returns the raw session id (the
        ``rc_session`` cookie's value), shown once, stored only as a digest."""
        self.store.record_login(identity)
        return self.store.create_session(identity, ttl_s=self.config.session_ttl_s)

    principal_from_identity = sign_in

    def close(self) -> None:
        for entry in self._entries.values():
            for app in entry.apps.values():
                app.close()
            with contextlib.suppress(Exception):
                entry.files.close()
            entry.index.close()
        self.store.close()
        for part in (self.shared_cache, self.audit_log):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    log.exception("closing a part of tenant %s failed", self.name)

    def ready(self) -> bool:
        """Whether the tenant store and every index's database and storage answer (the
        readiness probe: ``ping()`` / ``check()`` where the backend has one, else one cheap
        read); raises what the failing part raised."""
        self.store.ping()
        for entry in self._entries.values():
            db, storage = entry.index.db, entry.index.storage
            ping = getattr(db, "ping", None)
            if ping is not None:
                ping()
            else:
                db.serial  # noqa: B018 (one query: the database answers)
            check = getattr(storage, "check", None)
            if check is not None:
                check()
            else:
                storage.stat("readyz-probe")
        return True

    async def aclose(self) -> None:
        """Close the sign-in parts' HTTP clients (at lifespan shutdown, on the loop)."""
        for part in (self.oidc, self.publishing):
            closer = getattr(part, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    log.exception("closing the sign-in client of tenant %s failed", self.name)


def _tenant_bases(config: Config, tenant: TenantConfig) -> tuple[str, ...]:
    bases: list[str] = []
    if tenant.domains or config.default_tenant == tenant.name:
        bases.append("")
    if config.default_tenant != tenant.name:
        bases.append(tenant.path_prefix)
    return tuple(bases)


def _signing(directory: Path, sign: bool) -> tuple[Any, Any]:
    """(TufRepository, PatchEnvelopes) when the index is signed (``sign``, or it already
    publishes TUF metadata: a signed index never silently starts unsigned), else Nones."""
    from ..storage import STATE_DIR

    published = (directory / STATE_DIR / "tuf" / "timestamp.json").is_file()
    if not (sign or published):
        return None, None
    from ..signing import PatchEnvelopes, TufRepository  # SigningError names the extra

    tuf = TufRepository.for_registry(directory)
    tuf.init()
    return tuf, PatchEnvelopes(tuf.keyring)


def _database_url(config: Config) -> str | None:
    """The PostgreSQL DSN when ``[database] backend = "postgresql"`` (read once per app)."""
    if config.database.backend != "postgresql":
        return None
    dsn = config.database.read_url()
    if not dsn:
        raise ConfigError('database.backend is "postgresql" but no DSN is configured')
    return dsn


def _index_parts(
    config: Config, tenant: TenantConfig, index: str, directory: Path, dsn: str | None
) -> tuple[Any, Any]:
    """(storage, db) of one index: the directory and its SQLite file by default; an S3
    prefix ``<prefix><tenant>/<index>/`` and/or the PostgreSQL namespace ``tenant/index``
    when configured (several instances then serve the same index)."""
    storage: Any = directory
    db: Any = None
    sc = config.storage
    if sc.backend == "s3":
        from ..storage import S3Storage

        assert sc.bucket is not None  # the parser requires it
        storage = S3Storage(
            sc.bucket,
            prefix=f"{sc.prefix}{tenant.name}/{index}/",
            endpoint_url=sc.endpoint_url,
            region=sc.region,
            multipart_threshold=sc.multipart_threshold,
        )
    if dsn is not None:
        from ..index import PostgreSQLIndexDB

        db = PostgreSQLIndexDB(dsn, namespace=f"{tenant.name}/{index}")
    elif sc.backend == "s3":
        from ..index import SQLiteIndexDB
        from ..storage import STATE_DIR

        db = SQLiteIndexDB(directory / STATE_DIR / "index.sqlite3")
    return storage, db


def _audit_origin(config: Config, tenant: TenantConfig) -> str:
    """``<host>/<tenant>``: the public URL's host, else the tenant's first domain, else
    ``localhost`` (stable across restarts and ports: the origin is in every checkpoint)."""
    from urllib.parse import urlsplit

    host = None
    if config.server.public_url is not None:
        host = urlsplit(config.server.public_url).hostname
    if host is None and tenant.domains:
        host = tenant.domains[0]
    return f"{host or 'localhost'}/{tenant.name}"


def _tenant_audit(
    config: Config, tenant: TenantConfig, tenant_dir: Path, audit: AuditSink, opened: list[Any]
) -> tuple[AuditSink, Any]:
    """The tenant's sink: the server's ``audit`` plus, with ``[audit] enabled``, its own
    AuditLog at ``<tenant dir>/.registry-core/audit/`` (checkpoints signed with the tenant's
    keyring with ``[audit] sign``)."""
    if not config.audit.enabled:
        return audit, None
    from ..audit import AuditLog, FanOutSink
    from ..storage import STATE_DIR

    keyring = None
    if config.audit.sign:
        from ..signing import Keyring, keyring_dir

        keyring = Keyring(keyring_dir(tenant_dir))
    audit_log = AuditLog(
        tenant_dir / STATE_DIR / "audit", origin=_audit_origin(config, tenant), keyring=keyring
    )
    opened.append(audit_log)
    return FanOutSink(audit, audit_log), audit_log


def _shared_cache(config: Config, tenant: TenantConfig, opened: list[Any]) -> Any:
    """The tenant's RedisPatchCache with ``[cache] backend = "redis"`` (its own key prefix:
    nothing crosses a tenant boundary), else None."""
    if config.cache.backend != "redis":
        return None
    url = config.cache.read_redis_url()
    if not url:
        raise ConfigError('cache.backend is "redis" but no redis_url is set')
    from ._patch_store import RedisPatchCache

    cache = RedisPatchCache(url, prefix=f"registry-core:{tenant.name}:patches:")
    opened.append(cache)
    return cache


def _build_tenant(
    config: Config,
    tenant: TenantConfig,
    *,
    flags: FeatureFlags,
    audit: AuditSink,
    rebuild: bool,
    opened: list[Any],
    dsn: str | None = None,
    upload_checks: bool = False,
) -> TenantRuntime:
    from ..auth import TenantStore
    from ..eviction import make_policy
    from ..index import Index
    from ..storage import STATE_DIR
    from ._app import RegistryApp
    from ._index_app import IndexApp
    from ._patch_store import PatchStore

    tenant_dir = Path(config.tenant_directory(tenant.name))
    (tenant_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    audit, audit_log = _tenant_audit(config, tenant, tenant_dir, audit, opened)
    store = TenantStore(
        dsn if dsn is not None else tenant_dir / STATE_DIR / "tenant.sqlite3",
        tenant=tenant.name,
        static_bindings=static_bindings(tenant),
        audit=audit,
    )
    opened.append(store)
    shared = _shared_cache(config, tenant, opened)
    bases = _tenant_bases(config, tenant)
    entries: dict[str, _IndexEntry] = {}
    for ic in tenant.indexes:
        directory = Path(config.index_directory(tenant.name, ic.name))
        directory.mkdir(parents=True, exist_ok=True)
        storage, db = _index_parts(config, tenant, ic.name, directory, dsn)
        index = Index(storage, db, auth=store, tenant=tenant.name, name=ic.name, audit=audit)
        opened.append(index)
        rebuilt = index.rebuild() if rebuild else None
        if upload_checks:
            _attach_upload_checks(config, index)
        tuf, envelopes = _signing(directory, config.server.sign)
        if tuf is not None:
            tuf.attach(index)  # sync now (files added while down), then follow uploads
        # object storage has no state dir: computed patches stay on this machine
        eviction = config.cache.eviction
        patches = (
            None
            if storage is directory
            else PatchStore(directory / STATE_DIR / "patches", policy=make_policy(eviction))
        )
        files = RegistryApp(
            index.storage,
            flags=flags,
            envelopes=envelopes,
            patch_store=patches,
            eviction=eviction,
            shared_cache=shared,
        )
        opened.append(files)
        entry = _IndexEntry(ic.name, ic.path, index, files, tuf=tuf, rebuilt=rebuilt)
        for base in bases:
            app = IndexApp(index, files=files, tuf=tuf, base_path=base + ic.path)
            opened.append(app)
            entry.apps[base] = app
        entries[ic.name] = entry
    runtime = TenantRuntime(tenant, store, entries, bases=bases, audit=audit)
    runtime.audit_log = audit_log
    runtime.shared_cache = shared
    _attach_sign_in(config, runtime)
    return runtime


def _attach_upload_checks(config: Config, index: Index) -> None:
    """``[ml] upload_checks``: typosquatting (against the index's most depended-upon projects,
    kept current on upload) and suspicious-content checks on each new file."""
    from ._ml_hooks import build_upload_checks

    assert config.ml is not None
    checks, popular = build_upload_checks(index, config.ml)
    index.checks = checks
    previous = index.on_upload

    def on_upload(record: Any) -> None:
        if previous is not None:
            previous(record)
        popular.note_upload(record)

    index.on_upload = on_upload


def _ml_switches(config: Config, flags: FeatureFlags) -> tuple[bool, bool]:
    """(anomaly scoring allowed, upload checks on): the ``[ml]`` section's asks, anomaly
    scoring and upload checks only with the ML_ANOMALY_DETECTION flag on (resolved here, once,
    at construction; a section asking for them with the flag off is logged)."""
    ml = config.ml
    if ml is None:
        return False, False
    wanted = ml.anomaly_detection or ml.upload_checks != "off"
    flag = wanted and flags.is_enabled("ML_ANOMALY_DETECTION")
    if wanted and not flag:
        log.warning(
            "[ml] asks for anomaly detection or upload checks but the ML_ANOMALY_DETECTION "
            "flag is off: they stay off"
        )
    return flag, flag and ml.upload_checks != "off"


def _public_base(config: Config, runtime: TenantRuntime) -> str:
    """The absolute URL of the tenant's base (sign-in redirects come back to it)."""
    server = config.server
    scheme = "http" if server.tls == "plain-http" else "https"
    port = "" if server.port in (0, 443 if scheme == "https" else 80) else f":{server.port}"
    if runtime.config.domains:
        return f"{scheme}://{runtime.config.domains[0]}{port}"
    root = (server.public_url or f"{scheme}://{server.host}{port}").rstrip("/")
    return root + runtime.base


def _attach_sign_in(config: Config, runtime: TenantRuntime) -> None:
    """OIDC, SAML and trusted publishing for a tenant that configures them (their modules
    are imported only then: they need the ``auth`` extra)."""
    tc = runtime.config
    base_url = _public_base(config, runtime)
    if tc.oidc is not None:
        from ..auth._oidc import OIDCRelyingParty

        runtime.oidc = OIDCRelyingParty.from_config(
            tc.oidc, store=runtime.store, redirect_uri=base_url + "/_/oidc/callback"
        )
    if tc.publishers:
        from ..auth._trusted import TrustedPublishing

        # the tenant's own URL: a token minted for one tenant is refused by every other
        runtime.publishing = TrustedPublishing(tc.publishers, runtime.store, audience=base_url)
    if tc.saml is not None:
        from ..auth._saml import SAMLServiceProvider

        metadata = Path(tc.saml.idp_metadata).read_text(encoding="utf-8")
        runtime.saml = SAMLServiceProvider(
            tc.saml.entity_id,
            base_url + "/_/saml/acs",
            metadata,
            runtime.store,
            groups_attribute=tc.saml.groups_attribute,
            username_attribute=tc.saml.username_attribute,
            clock_skew_s=tc.saml.clock_skew_s,
            sp_certfile=tc.saml.sp_certfile,
            sp_keyfile=tc.saml.sp_keyfile,
        )


def _limiter(config: Config, audit: AuditSink) -> tuple[Any, bool]:
    """The TieredLimiter the config asks for, and whether a check may block (Redis)."""
    from ..auth._ratelimit import MemoryRateLimiter, Plan, RedisRateLimiter, TieredLimiter

    rl = config.rate_limits
    plans = {
        name: Plan(name, p.rate, p.burst, p.upload_rate, p.upload_burst)
        for name, p in rl.plans.items()
    }
    backend: Any
    if rl.backend == "redis":
        url = rl.read_redis_url()
        if not url:
            raise ConfigError("rate_limits.backend is redis but no redis_url is set")
        backend = RedisRateLimiter(url)
    else:
        backend = MemoryRateLimiter()
    limiter = TieredLimiter(
        backend,
        plans,
        fail_open_reads=rl.fail_open_reads,
        fail_open_uploads=rl.fail_open_uploads,
        audit=audit,
    )
    return limiter, rl.backend == "redis"


class MultiTenantApp:
    """ASGI app serving every tenant of ``config`` (see the module docstring).

    ``flags``: FeatureFlags for the file servers (default: the config's ``[flags]`` table).
    ``audit``: where audit events go (default :class:`registry_core.audit.LogSink`).
    ``limiter``: a :class:`registry_core.auth.TieredLimiter` (default: the one
    ``config.rate_limits`` describes). ``rebuild``: reconcile each index with its directory
    first (files added or removed while the server was down). :meth:`close` closes every
    store and index; the ASGI lifespan is forwarded to every index's app.
    """

    def __init__(
        self,
        config: Config,
        *,
        flags: FeatureFlags | None = None,
        audit: AuditSink | None = None,
        limiter: Any | None = None,
        rebuild: bool = True,
    ) -> None:
        from ..auth import TenantResolver

        if audit is None:
            from ..audit import LogSink

            audit = LogSink()
        if flags is None:
            from ..flags import FeatureFlags

            flags = FeatureFlags(overrides=dict(config.flags) or None)
        for tc in config.tenants.values():
            if tc.path_prefix != f"/t/{tc.name}":
                raise ConfigError(
                    f"tenant {tc.name}: path_prefix {tc.path_prefix!r} is not supported "
                    f"(tenants are served at /t/<name>)",
                    source=config.source,
                    key=f"tenants.{tc.name}.path_prefix",
                )
        self.config = config
        self.flags = flags
        self.audit = audit
        self.resolver = TenantResolver(
            {name: tc.domains for name, tc in config.tenants.items()},
            default=config.default_tenant,
        )
        self._limiter_blocks = True
        if limiter is None:
            limiter, self._limiter_blocks = _limiter(config, audit)
        self.limiter = limiter
        self.tenants: dict[str, TenantRuntime] = {}
        opened: list[Any] = []
        #: The request stream's ML observer (server/_ml_hooks.MLObserver), None without [ml].
        self.ml: Any | None = None
        anomaly, checks = _ml_switches(config, flags)
        try:
            dsn = _database_url(config)
            for name, tc in config.tenants.items():
                self.tenants[name] = _build_tenant(
                    config,
                    tc,
                    flags=flags,
                    audit=audit,
                    rebuild=rebuild,
                    opened=opened,
                    dsn=dsn,
                    upload_checks=checks,
                )
            ml = config.ml
            if ml is not None and ((anomaly and ml.anomaly_detection) or ml.scaling):
                from ._ml_hooks import build_observer

                self.ml = build_observer(
                    config, {n: rt.audit for n, rt in self.tenants.items()}, anomaly=anomaly
                )
                if self.ml is not None:
                    opened.append(self.ml)
                    for n, rt in self.tenants.items():
                        rt.ml = self.ml.tenants[n]
        except BaseException:
            for thing in reversed(opened):
                with contextlib.suppress(Exception):
                    thing.close()
            raise
        self._closed = False
        self._close_lock = threading.Lock()
        self._ready_lock = threading.Lock()
        self._ready_at = -math.inf
        self._ready_ok = False

    # -- lifecycle ---------------------------------------------------------------------------

    def file_servers(self) -> list[RegistryApp]:
        """Every index's RegistryApp (the CLI sets their Alt-Svc once the port is known)."""
        return [e.files for rt in self.tenants.values() for e in rt._entries.values()]

    def ready(self) -> bool:
        """Readiness (``/readyz``): every index's database and storage answer. Checked at
        most once a second (a load balancer's probes do not each reach PostgreSQL and S3);
        a failure is logged and means not ready."""
        import time

        with self._ready_lock:
            now = time.monotonic()
            if now - self._ready_at < 1.0:
                return self._ready_ok
            try:
                ok = not self._closed and all(rt.ready() for rt in self.tenants.values())
            except Exception as exc:
                log.warning("not ready: %s", exc)
                ok = False
            self._ready_at, self._ready_ok = time.monotonic(), ok
            return ok

    def attach_telemetry(self, telemetry: Any) -> None:
        """Export every index's file-server, patch-store and shared-cache counters, labelled
        by tenant and index, through ``telemetry``'s metrics."""
        for runtime in self.tenants.values():
            for name, entry in runtime._entries.items():
                labels = {"tenant": runtime.name, "index": name}
                files = entry.files
                telemetry.watch("files", functools.partial(getattr, files, "stats"), **labels)
                if files.patch_store is not None:
                    store = files.patch_store
                    telemetry.watch(
                        "patch_store", functools.partial(getattr, store, "stats"), **labels
                    )
            if runtime.shared_cache is not None:
                cache = runtime.shared_cache
                telemetry.watch(
                    "shared_patches",
                    functools.partial(getattr, cache, "stats"),
                    tenant=runtime.name,
                )
        metrics = getattr(telemetry, "metrics", None)
        if self.ml is not None and metrics is not None:
            from ._ml_hooks import MLCollector

            metrics.registry.register(MLCollector(self.ml))

    def close(self) -> None:
        """Close every tenant: its apps, indexes and store (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.ml is not None:
            try:
                self.ml.close()
            except Exception:
                log.exception("closing the ML observer failed")
        for runtime in self.tenants.values():
            try:
                runtime.close()
            except Exception:
                log.exception("closing tenant %s failed", runtime.name)
        closer = getattr(getattr(self.limiter, "limiter", None), "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()

    def __enter__(self) -> MultiTenantApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward startup and shutdown to every index's app; complete once all have."""
        children = [
            entry.app(rt.base) for rt in self.tenants.values() for entry in rt._entries.values()
        ]
        inboxes: list[asyncio.Queue[dict[str, Any]]] = [asyncio.Queue() for _ in children]
        outboxes: list[asyncio.Queue[dict[str, Any]]] = [asyncio.Queue() for _ in children]
        tasks = [
            asyncio.create_task(app(dict(scope), inbox.get, outbox.put))
            for app, inbox, outbox in zip(children, inboxes, outboxes, strict=True)
        ]

        async def reply(i: int) -> dict[str, Any] | None:
            getter = asyncio.ensure_future(outboxes[i].get())
            done, _ = await asyncio.wait({getter, tasks[i]}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                return getter.result()
            getter.cancel()
            return None  # the child returned without answering: nothing to wait for

        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind not in ("lifespan.startup", "lifespan.shutdown"):
                    continue
                step = kind.rsplit(".", 1)[1]
                for inbox in inboxes:
                    inbox.put_nowait(message)
                answers = await asyncio.gather(*(reply(i) for i in range(len(children))))
                failed = [a for a in answers if a and a["type"].endswith(".failed")]
                if failed:
                    await send(
                        {"type": f"lifespan.{step}.failed", "message": failed[0].get("message", "")}
                    )
                    return
                if step == "shutdown":
                    for runtime in self.tenants.values():
                        await runtime.aclose()
                await send({"type": f"lifespan.{step}.complete"})
                if step == "shutdown":
                    return
        finally:
            for task in tasks:
                task.cancel()

    # -- requests ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        seen: dict[str, Any] = {"tenant": "-", "subject": "-", "status": 0, "logged": False}
        observer = self.ml

        if scope.get(ACCESS_LOGGED_KEY):
            if observer is None:
                await self._handle(scope, receive, send, seen)  # telemetry writes the line
                return
            await self._observed(scope, receive, send, seen, observer)
            return

        def log_access() -> None:
            if seen["logged"] or not access_log.isEnabledFor(logging.INFO):
                return
            seen["logged"] = True
            # the path only: a query string may carry a sign-in code
            access_log.info(
                "%s %s %s",
                scope.get("method"),
                scope.get("path"),
                seen["status"],
                extra={
                    "tenant": seen["tenant"],
                    "subject": seen["subject"],
                    "status": seen["status"],
                    "method": scope.get("method"),
                },
            )

        async def tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["sent"] = seen.get("sent", 0) + len(message.get("body", b""))
                if not message.get("more_body"):
                    log_access()  # before the client has the whole answer
                    await send(message)
                    if observer is not None:
                        _observe(observer, scope, seen)  # after: never delays the answer
                    return
            await send(message)

        try:
            await self._handle(scope, receive, tracked, seen)
        finally:
            log_access()
            if observer is not None:
                _observe(observer, scope, seen)

    async def _observed(
        self, scope: Scope, receive: Receive, send: Send, seen: dict[str, Any], observer: Any
    ) -> None:
        """:meth:`_handle` with the answer handed to the ML observer once sent (when the
        telemetry wrapper writes the access line)."""

        async def tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["sent"] = seen.get("sent", 0) + len(message.get("body", b""))
                if not message.get("more_body"):
                    await send(message)
                    _observe(observer, scope, seen)
                    return
            await send(message)

        try:
            await self._handle(scope, receive, tracked, seen)
        finally:
            _observe(observer, scope, seen)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, seen: dict[str, Any]
    ) -> None:
        """Answer one request; ``seen`` gets the tenant and subject for the access log."""
        method: str = scope["method"]
        path: str = scope["path"]
        hosts = [v for k, v in scope["headers"] if k.lower() == b"host"]
        if len(hosts) > 1 or not _plain_path(path, scope.get("raw_path")):
            await _refuse(receive, send, method)
            return
        host = hosts[0].decode("latin-1") if hosts else None
        found = self.resolver.resolve(host, path)
        if found is None:
            await _refuse(receive, send, method)
            return
        route, inner = found
        raw_path = scope.get("raw_path")
        if route.base and raw_path is not None and not _spelled(raw_path, route.base):
            await _refuse(receive, send, method)  # /t/glob%65x/: the name must be plain
            return
        runtime = self.tenants[route.tenant]
        seen["tenant"] = runtime.name
        annotate(tenant=runtime.name)
        from ..auth import Principal

        auth_error: PackageIndexError | None = None
        principal = Principal.anonymous(runtime.name)
        try:
            creds = credentials(scope["headers"])
            if creds is not None:
                principal = await authenticate_async(runtime.store, creds)
        except AuthenticationError as exc:
            auth_error = exc
        seen["subject"] = principal.subject
        if principal.authenticated:
            annotate(subject=principal.subject)

        tenant_route = inner == "/_" or inner.startswith("/_/")
        seen["inner"] = inner
        target: tuple[_IndexEntry, str] | None = None
        if not tenant_route:
            target = runtime.route(inner)
            if target is None and inner != "/":
                await _refuse(receive, send, method)
                return
            prefix = route.base + target[0].path if target is not None else ""
            if raw_path is not None and prefix and not _spelled(raw_path, prefix):
                await _refuse(receive, send, method)  # the index name must be plain too
                return
        upload = target is not None and method == "POST" and target[1] in _UPLOAD_PATHS
        # may this caller learn that what it asks for exists?
        if principal.authenticated:
            visible = True
        elif target is not None:
            entry, rest = target
            if upload:
                visible = bool(entry.index.authorize(principal, "read"))
            else:
                visible = entry.app(route.base)._may_read(principal, rest)
        elif tenant_route:
            visible = _sign_in_route(runtime, inner) or runtime.can_read(principal)
        else:
            visible = runtime.can_read(principal)
        if not visible:
            await _refuse(receive, send, method)
            return
        if auth_error is not None:
            await _drain(receive)
            await send_text(
                send,
                auth_error.status,
                str(auth_error),
                [("www-authenticate", 'Basic realm="registry-core"')],
                method=method,
            )
            return

        limited = await self._rate_limit(runtime, principal, scope, "upload" if upload else "read")
        if isinstance(limited, PackageIndexError):
            await _drain(receive)
            await send_text(
                send, limited.status, str(limited), _limit_headers(limited), method=method
            )
            return
        if limited:
            send = _with_headers(send, limited)

        child_scope = {**scope, PRINCIPAL_KEY: principal, TENANT_KEY: runtime.name}
        if tenant_route:
            await self._tenant_routes(runtime, route.base, inner, child_scope, receive, send)
        elif target is None:
            await self._tenant_home(runtime, route.base, principal, method, receive, send)
        else:
            entry, rest = target
            seen["inner"] = rest  # what the ML layer classifies: the path inside the index
            prefix = route.base + entry.path
            child_scope["path"] = rest
            child_scope["raw_path"] = rest.encode("utf-8")
            child_scope["root_path"] = scope.get("root_path", "") + prefix
            await entry.app(route.base)(child_scope, receive, send)
        return

    async def _rate_limit(
        self, runtime: TenantRuntime, principal: Principal, scope: Scope, kind: str
    ) -> list[tuple[str, str]] | PackageIndexError:
        """The RateLimit headers for the answer, or the error to answer with (429/503).
        Anonymous callers are told apart by their address."""
        ip = None if principal.authenticated else (scope.get("client") or ("-",))[0]
        check = functools.partial(self.limiter.check, principal, runtime.plan, kind, client=ip)
        try:
            result = await asyncio.to_thread(check) if self._limiter_blocks else check()
        except (RateLimitedError, RateLimiterUnavailableError) as exc:
            return exc
        from ..auth._ratelimit import rate_limit_headers

        return list(rate_limit_headers(result))

    async def _tenant_home(
        self,
        runtime: TenantRuntime,
        base: str,
        principal: Principal,
        method: str,
        receive: Receive,
        send: Send,
    ) -> None:
        """``<base>/``: links to the indexes the caller may read."""
        await _drain(receive)
        from html import escape

        names = [n for n in runtime._entries if runtime.can_read(principal, n)]
        if not names or method not in ("GET", "HEAD"):
            await send_not_found(send, method)
            return
        items = "".join(
            f'<li><a href="{escape(base + runtime.entry(n).path)}/simple/">{escape(n)}</a></li>'
            for n in names
        )
        body = (
            f"<!DOCTYPE html>\n<html><head><title>{escape(runtime.name)}</title></head>"
            f"<body><h1>{escape(runtime.name)}</h1><ul>{items}</ul></body></html>\n"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _tenant_routes(
        self,
        runtime: TenantRuntime,
        base: str,
        inner: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        method: str = scope["method"]
        sub = inner[len("/_") :]
        if sub.startswith("/oidc/") and (runtime.oidc or runtime.publishing) is not None:
            from ._oidc_routes import handle as oidc

            await oidc(_AsSeen(runtime, base), scope, receive, send, sub[len("/oidc") :])
        elif sub.startswith("/saml/") and runtime.saml is not None:
            from ._saml_routes import handle as saml

            await saml(_AsSeen(runtime, base), scope, receive, send, sub[len("/saml") :])
        elif sub == "/audit" or sub.startswith("/audit/"):
            from ._audit_routes import handle as audit_routes

            await audit_routes(runtime, scope, receive, send, sub[len("/audit") :])
        elif sub == "/scaling" and runtime.ml is not None:
            from ._ml_hooks import scaling_route

            await _drain(receive)
            if not await scaling_route(runtime.ml, runtime, scope, send, scope[PRINCIPAL_KEY]):
                await send_not_found(send, method)
        elif sub == "/whoami" and method in ("GET", "HEAD"):
            await _drain(receive)
            await _whoami(runtime, scope[PRINCIPAL_KEY], send, method)
        elif sub == "/logout" and method in ("GET", "POST"):
            await _drain(receive)
            await self._logout(runtime, base, scope, send)
        else:
            await _refuse(receive, send, method)

    async def _logout(self, runtime: TenantRuntime, base: str, scope: Scope, send: Send) -> None:
        """Forget the session (if any) and clear its cookie."""
        try:
            creds = credentials(scope["headers"])
        except AuthenticationError:
            creds = None
        if creds is not None and creds.kind == "session":
            await asyncio.to_thread(runtime.store.delete_session, creds.secret)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{SESSION_COOKIE}=; Max-Age=0; Path={base or ''}/; HttpOnly; SameSite=Lax{secure}"
        await send_text(send, 200, "signed out", [("set-cookie", cookie)], method=scope["method"])


def _observe(observer: Any, scope: Scope, seen: dict[str, Any]) -> None:
    """Hand one answered request to the ML observer, once (O(1): it queues a tuple)."""
    if seen.get("observed") or seen["tenant"] == "-" or not seen["status"]:
        return
    seen["observed"] = True
    peer = scope.get("client")
    observer.submit(
        seen["tenant"],
        str(scope.get("method", "GET")),
        seen.get("inner") or str(scope.get("path", "/")),
        int(seen["status"]),
        int(seen.get("sent", 0)),
        str(peer[0]) if peer else None,
        str(seen["subject"]),
    )


class _AsSeen:
    """A tenant runtime as one request sees it: ``base`` is the base the request came in
    under (``""`` by host, ``/t/<name>`` by path), so sign-in cookies and redirects use it."""

    def __init__(self, runtime: TenantRuntime, base: str) -> None:
        self._runtime = runtime
        self.base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)


def _sign_in_route(runtime: TenantRuntime, inner: str) -> bool:
    """Sign-in routes answer anonymous callers (that is how they sign in)."""
    if inner.startswith("/_/oidc/"):
        return (runtime.oidc or runtime.publishing) is not None
    if inner.startswith("/_/saml/"):
        return runtime.saml is not None
    return False


async def _whoami(runtime: TenantRuntime, principal: Principal, send: Send, method: str) -> None:
    policy = runtime.store.policy()
    roles = sorted({f"{b.role}@{b.resource}" for b in policy.bindings_for(principal)})
    body = (
        json.dumps(
            {
                "tenant": runtime.name,
                "subject": principal.subject,
                "method": principal.method,
                "groups": sorted(principal.groups),
                "roles": roles,
                "scopes": None if principal.scopes is None else [str(s) for s in principal.scopes],
            },
            sort_keys=True,
        ).encode()
        + b"\n"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _plain_path(path: str, raw_path: bytes | None) -> bool:
    """An origin-form path without dot segments, empty segments or encoded slashes (the
    tenant and index parts must be spelled plainly: what is resolved is what was sent)."""
    if not path.startswith("/") or "//" in path or "\\" in path:
        return False
    if any(seg in (".", "..") for seg in path.split("/")):
        return False
    if raw_path is not None:
        lowered = raw_path.lower()
        if b"%2f" in lowered or b"%5c" in lowered or b"%2e" in lowered:
            return False
    return True


def _spelled(raw_path: bytes, prefix: str) -> bool:
    """Whether the request target spells ``prefix`` literally (not percent-encoded)."""
    literal = prefix.encode("latin-1")
    return raw_path == literal or raw_path.startswith(literal + b"/")


async def _drain(receive: Receive, limit: int = 1 << 20) -> None:
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


async def _refuse(receive: Receive, send: Send, method: str) -> None:
    """The uniform 404 (a body sent with the request is read first, bounded)."""
    await _drain(receive)
    await send_not_found(send, method)


def _limit_headers(exc: PackageIndexError) -> list[tuple[str, str]]:
    """RateLimit headers and Retry-After of a 429 (a 503 says when to retry too)."""
    result = getattr(exc, "result", None)
    if result is not None:
        from ..auth._ratelimit import rate_limit_headers

        headers = list(rate_limit_headers(result))
        if any(k.lower() == "retry-after" for k, _ in headers):
            return headers
    else:
        headers = []
    retry = getattr(exc, "retry_after", None)
    headers.append(("Retry-After", str(max(1, math.ceil(retry if retry is not None else 1)))))
    return headers


def _with_headers(send: Send, extra: Iterable[tuple[str, str]]) -> Send:
    encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]

    async def sender(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *encoded]}
        await send(message)

    return sender


def build_app(
    config: Config,
    *,
    flags: FeatureFlags | None = None,
    audit: AuditSink | None = None,
) -> MultiTenantApp:
    """``MultiTenantApp(config, flags=flags, audit=audit)``."""
    return MultiTenantApp(config, flags=flags, audit=audit)
