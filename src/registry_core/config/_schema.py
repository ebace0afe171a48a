"""The configuration schema v2 as frozen dataclasses (what :func:`parse` returns).

Plain data: no I/O except the two helpers that read a secret from the environment or a file
when the server asks (a secret is never stored in a Config, so it can never be dumped or shown).
Sequences are tuples and mappings read-only, so a Config can be shared between threads.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "DEFAULT_PLANS",
    "ROLES",
    "SCHEMA_VERSION",
    "AcmeConfig",
    "AuditConfig",
    "CacheConfig",
    "Config",
    "DatabaseConfig",
    "IndexConfig",
    "LoggingConfig",
    "MLConfig",
    "OIDCConfig",
    "PlanConfig",
    "PublisherConfig",
    "RateLimitConfig",
    "RoleGrant",
    "SAMLConfig",
    "ServerConfig",
    "StorageConfig",
    "TelemetryConfig",
    "TenantConfig",
]

SCHEMA_VERSION = 2

#: The six roles and the actions of docs/rbac.md. Kept here (config is a leaf and does not
#: import registry_core.auth); a test pins them to ``registry_core.auth.ROLES`` / ``ACTIONS``.
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

TLSMode = Literal["self-signed", "plain-http", "files"]
TLS_MODES: tuple[str, ...] = ("self-signed", "plain-http", "files")
BACKENDS: tuple[str, ...] = ("memory", "redis")
STORAGE_BACKENDS: tuple[str, ...] = ("directory", "s3")
DATABASE_BACKENDS: tuple[str, ...] = ("sqlite", "postgresql")
CACHE_BACKENDS: tuple[str, ...] = ("local", "redis")
#: The patch store's eviction policies (registry_core.eviction.POLICIES, kept in step by a test).
CACHE_EVICTIONS: tuple[str, ...] = ("lru", "sieve", "s3fifo")
#: tls-alpn-01 is not offered: Python's ssl cannot see the ALPN offer when it picks the
#: certificate (docs/domains.md).
ACME_CHALLENGES: tuple[str, ...] = ("http-01",)
ACCESS_LOGS: tuple[str, ...] = ("json", "off")
ANOMALY_DETECTORS: tuple[str, ...] = ("rules", "iforest", "hst")
UPLOAD_CHECK_ACTIONS: tuple[str, ...] = ("off", "warn", "refuse")


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def _read_secret(env: str | None, path: str | None, what: str) -> str | None:
    """The secret named by an environment variable or stored in a file (one trailing newline
    stripped); None when neither is configured. A configured but missing one is an error
    (never an empty secret)."""
    from ..errors import ConfigError

    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"the environment variable {env} is not set", key=what)
        return value
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read(64 << 10)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", key=what) from None
        value = value[:-1] if value.endswith("\n") else value
        if not value:
            raise ConfigError(f"{path} is empty", key=what)
        return value
    return None


@dataclass(frozen=True)
class AcmeConfig:
    """Certificates for the tenants' ``domains`` from an ACME (RFC 8555) CA."""

    directory_url: str
    email: str
    challenge: Literal["http-01"] = "http-01"
    #: A PEM bundle the ACME directory's TLS certificate is verified with (a private CA).
    ca_bundle: str | None = None
    #: An ``http://`` directory on a loopback host (tests) only with this.
    allow_http: bool = False
    #: The plain-HTTP port answering ``/.well-known/acme-challenge/`` (HTTP-01 validators
    #: connect to port 80 of each domain; another port behind a port forward or in tests).
    http_port: int = 80


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the server listens (the options of ``registry-core serve``)."""

    host: str = "127.0.0.1"
    port: int = 8443
    tls: TLSMode = "self-signed"
    certfile: str | None = None
    keyfile: str | None = None
    sign: bool = False
    #: The URL clients use (OIDC/SAML redirect URLs are built on it); None: derived by url().
    public_url: str | None = None
    http3: bool = True
    max_connections: int = 1000
    max_connections_per_ip: int = 64
    #: Seconds; None disables the timeout ("off" in TOML).
    read_timeout: float | None = 30.0
    write_timeout: float | None = 30.0
    #: Requests from one IP address worked on at once; None: no limit.
    max_requests_per_ip: int | None = None
    #: On SIGTERM: seconds in-flight requests may still take before the server stops.
    drain_timeout_s: float = 30.0
    #: The certificate store chosen from by SNI (tenant domains); None:
    #: ``<storage.directory>/.registry-core/certs`` when ``acme`` is set.
    certificates: str | None = None
    acme: AcmeConfig | None = None

    def url(self) -> str:
        """``public_url`` (without a trailing slash), else ``https://host:port`` (``http://``
        with plain HTTP; IPv6 hosts bracketed)."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        scheme = "http" if self.tls == "plain-http" else "https"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class StorageConfig:
    """``directory`` is the ROOT: ``ROOT/<tenant>/<index>/`` unless a tenant or index says
    otherwise (v1: the index directory itself)."""

    directory: str
    #: ``"s3"``: distribution files in an S3 bucket (credentials from the environment or
    #: boto3's chain, never from this file); ``directory`` still holds the local state.
    backend: Literal["directory", "s3"] = "directory"
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    multipart_threshold: int = 8 << 20


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the index databases and tenant stores live: SQLite files under each directory
    (the default), or one PostgreSQL database shared by every instance."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    #: A ``postgresql://`` DSN without a password (a password goes in ``url_env``/``url_file``).
    url: str | None = None
    url_env: str | None = None
    url_file: str | None = None

    def read_url(self) -> str | None:
        """The DSN to connect with (from the environment variable or the file when set)."""
        if self.url_env is not None or self.url_file is not None:
            return _read_secret(self.url_env, self.url_file, "database.url_env")
        return self.url


@dataclass(frozen=True)
class CacheConfig:
    """Where computed patches are kept: each instance's own directory, or Redis shared by
    every instance (each patch computed once across them)."""

    backend: Literal["local", "redis"] = "local"
    redis_url: str | None = None
    redis_url_env: str | None = None
    #: what leaves a full local patch store: "lru", "sieve" or "s3fifo"
    eviction: Literal["lru", "sieve", "s3fifo"] = "lru"

    def read_redis_url(self) -> str | None:
        """The Redis URL to connect to (read from ``redis_url_env`` when that is set)."""
        if self.redis_url_env is not None:
            return _read_secret(self.redis_url_env, None, "cache.redis_url_env")
        return self.redis_url


@dataclass(frozen=True)
class TelemetryConfig:
    """OpenTelemetry traces (OTLP/HTTP when ``otlp_endpoint`` is set) and Prometheus metrics."""

    otlp_endpoint: str | None = None
    service_name: str = "registry-core"
    sample_ratio: float = 1.0
    metrics: bool = True
    #: An ``http://`` collector endpoint on a loopback host only with this.
    allow_http: bool = False
    #: A bearer token (16+ characters) that opens ``/metrics`` to non-loopback scrapers.
    metrics_token_env: str | None = None
    metrics_token_file: str | None = None

    def read_metrics_token(self) -> str | None:
        """The ``/metrics`` bearer token (None: loopback scrapers only)."""
        return _read_secret(
            self.metrics_token_env, self.metrics_token_file, "telemetry.metrics_token_env"
        )


@dataclass(frozen=True)
class LoggingConfig:
    """The structured access log (one JSON line per request on stderr)."""

    access_log: Literal["json", "off"] = "off"


@dataclass(frozen=True)
class AuditConfig:
    """Each tenant's tamper-evident audit log at ``<tenant dir>/.registry-core/audit/``."""

    enabled: bool = True
    #: Checkpoints are signed with the server's signing keys (docs/audit.md).
    sign: bool = False


@dataclass(frozen=True)
class MLConfig:
    """The ``[ml]`` section: anomaly alerts, upload checks and scaling hints in the running
    server (docs/ml.md). Anomaly scoring and upload checks also need the
    ``ML_ANOMALY_DETECTION`` flag on; with it off they stay off whatever this says."""

    #: Score every answered request; alerts go to the tenant's audit log.
    anomaly_detection: bool = False
    anomaly_detector: Literal["rules", "iforest", "hst"] = "rules"
    #: A trained ``anomaly`` model artifact (``.rcml``); required by iforest and hst.
    anomaly_model: str | None = None
    #: Typosquatting and suspicious-content checks at upload: off, audit only, or refuse.
    upload_checks: Literal["off", "warn", "refuse"] = "off"
    #: How many of the index's most depended-upon projects a new name is compared with.
    typosquat_top: int = 500
    #: Forecast the request rate and serve scaling hints at ``<tenant>/_/scaling`` (admins).
    scaling: bool = False
    per_worker_rps: float = 50.0
    workers_per_instance: int = 4


@dataclass(frozen=True)
class PlanConfig:
    """A rate-limit plan: requests and uploads per second per principal, with bursts (the tenant
    as a whole gets ten times this)."""

    rate: float
    burst: int
    upload_rate: float
    upload_burst: int


#: The built-in plans (a ``[rate_limits.plans.<name>]`` table replaces or adds one).
DEFAULT_PLANS: Mapping[str, PlanConfig] = MappingProxyType(
    {
        "free": PlanConfig(20.0, 100, 0.2, 10),
        "team": PlanConfig(200.0, 1000, 2.0, 50),
        "enterprise": PlanConfig(2000.0, 10000, 20.0, 200),
    }
)


@dataclass(frozen=True)
class RateLimitConfig:
    """Which limiter backs the plans, and how a backend failure degrades."""

    backend: Literal["memory", "redis"] = "memory"
    #: A Redis URL without a password (a password goes in ``redis_url_env``).
    redis_url: str | None = None
    #: The environment variable holding the whole Redis URL (when it carries a password).
    redis_url_env: str | None = None
    fail_open_reads: bool = True
    fail_open_uploads: bool = False
    plans: Mapping[str, PlanConfig] = field(default_factory=lambda: _frozen(DEFAULT_PLANS))

    def read_redis_url(self) -> str | None:
        """The Redis URL to connect to (read from ``redis_url_env`` when that is set)."""
        if self.redis_url_env is not None:
            return _read_secret(self.redis_url_env, None, "rate_limits.redis_url_env")
        return self.redis_url


@dataclass(frozen=True)
class IndexConfig:
    """One index of a tenant, served at ``<tenant base><path>``."""

    name: str
    #: ``"/<name>"`` by default; ``""`` serves the index at the tenant base (one index only).
    path: str
    #: None: the tenant's ``public``.
    public: bool | None = None
    #: Storage directory (relative to the tenant directory); None: ``<tenant dir>/<name>``.
    directory: str | None = None


@dataclass(frozen=True)
class OIDCConfig:
    """An OpenID Connect provider people sign in with (authorization code + PKCE)."""

    issuer: str
    client_id: str
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    groups_claim: str = "groups"
    username_claim: str = "email"
    #: An ``http://`` issuer on a loopback host (tests, local development) only with this.
    allow_http: bool = False

    def read_client_secret(self) -> str | None:
        """The client secret (from the environment variable or the file); None: a public
        client (PKCE only)."""
        return _read_secret(
            self.client_secret_env, self.client_secret_file, "oidc.client_secret_env"
        )


@dataclass(frozen=True)
class SAMLConfig:
    """A SAML 2.0 identity provider (this server is the service provider ``entity_id``)."""

    entity_id: str
    #: Path of the IdP's metadata XML.
    idp_metadata: str
    groups_attribute: str = "groups"
    #: None: the NameID is the user name.
    username_attribute: str | None = None
    sp_certfile: str | None = None
    sp_keyfile: str | None = None
    clock_skew_s: float = 60.0


@dataclass(frozen=True)
class PublisherConfig:
    """A trusted publisher: CI jobs whose OIDC token matches these claims may upload
    ``project`` to ``index`` with a short-lived token."""

    name: str
    issuer: str
    index: str
    project: str
    repository: str | None = None
    #: The workflow file name (``release.yml``), matched against job_workflow_ref/workflow_ref.
    workflow: str | None = None
    environment: str | None = None
    #: Further claims that must be equal (``{"repository_owner": "acme"}``).
    claims: Mapping[str, str] = field(default_factory=_frozen)
    #: May the first upload create the project (a "pending" publisher)?
    create: bool = False
    #: None: the tenant's audience.
    audience: str | None = None
    #: An ``http://`` issuer on a loopback host (tests) only with this.
    allow_http: bool = False


@dataclass(frozen=True, order=True)
class RoleGrant:
    """A static role binding: ``subject`` has ``role`` on ``resource`` (``"*"`` = the whole
    tenant, ``"main"`` = an index, ``"main/foo"`` = a project)."""

    subject: str
    role: str
    resource: str


@dataclass(frozen=True)
class TenantConfig:
    """One tenant: its indexes, who may do what, how people and CI jobs sign in, its plan."""

    name: str
    plan: str = "free"
    #: Host names (lower case) whose requests are this tenant's.
    domains: tuple[str, ...] = ()
    #: ``/t/<name>`` by default.
    path_prefix: str = ""
    #: Anonymous read of every index (unless an index says otherwise).
    public: bool = False
    indexes: tuple[IndexConfig, ...] = ()
    #: Sorted and without duplicates.
    roles: tuple[RoleGrant, ...] = ()
    #: IdP group name -> ("role@resource", ...).
    group_roles: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)
    oidc: OIDCConfig | None = None
    saml: SAMLConfig | None = None
    publishers: tuple[PublisherConfig, ...] = ()
    session_ttl_s: float = 28800.0
    token_max_ttl_s: float | None = None
    #: Storage directory (relative to the storage ROOT); None: ``ROOT/<name>``.
    directory: str | None = None

    def __post_init__(self) -> None:
        if not self.path_prefix:
            object.__setattr__(self, "path_prefix", f"/t/{self.name}")
        if not self.indexes:
            object.__setattr__(self, "indexes", (IndexConfig("main", "/main"),))

    def index(self, name: str) -> IndexConfig | None:
        """The index called ``name``, or None."""
        for index in self.indexes:
            if index.name == name:
                return index
        return None

    def is_public(self, index: str) -> bool:
        """Whether anonymous callers may read ``index``."""
        found = self.index(index)
        if found is None or found.public is None:
            return self.public
        return found.public


@dataclass(frozen=True)
class Config:
    """A whole configuration. ``source`` (the file it came from) is not compared."""

    version: int
    server: ServerConfig
    storage: StorageConfig
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    tenants: Mapping[str, TenantConfig] = field(default_factory=_frozen)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    #: The ``[flags]`` table as written (FeatureFlags reads it: see docs/flags.md).
    flags: Mapping[str, Any] = field(default_factory=_frozen)
    source: str = field(default="<string>", compare=False)
    #: The tenant served at ``/`` when the Host matches no domain and the path is not under
    #: ``/t/`` (set for a configuration derived from ``serve DIR``).
    default_tenant: str | None = None
    #: The ``[ml]`` section; None when the file has none (nothing of the ML layer loads).
    ml: MLConfig | None = None

    def tenant_directory(self, tenant: str) -> str:
        """``ROOT/<tenant>`` (or the tenant's ``directory``): its ``.registry-core/`` holds the
        tenant store."""
        t = self.tenants[tenant]
        sub = tenant if t.directory is None else t.directory
        return posixpath.normpath(os.path.join(self.storage.directory, sub))

    def index_directory(self, tenant: str, index: str) -> str:
        """The DirectoryStorage root of one index: ``ROOT/<tenant>/<index>`` by default."""
        found = self.tenants[tenant].index(index)
        if found is None:
            raise KeyError(index)
        sub = index if found.directory is None else found.directory
        return posixpath.normpath(os.path.join(self.tenant_directory(tenant), sub))
