"""Configuration schema v2: one TOML file describing the server, storage, rate-limit plans and
every tenant (indexes, roles, SSO, trusted publishers), and the scale-out and operations
sections (database, object storage, shared cache, telemetry, logging, audit, ACME), parsed into
frozen dataclasses.

Config is a leaf: it imports nothing of registry_core but the errors and ``_util`` (the serve
command's parser, for :func:`from_serve_args`, only when that runs). Every problem is one
:class:`~registry_core.errors.ConfigError` naming the source, line and key. Reference:
docs/configuration.md.
"""

from ._dump import dump
from ._migrate import DEFAULT_TENANT, from_serve_args, from_serve_namespace, single_tenant
from ._parse import MAX_CONFIG_BYTES, load, parse
from ._schema import (
    ACTIONS,
    DEFAULT_PLANS,
    ROLES,
    SCHEMA_VERSION,
    AcmeConfig,
    AuditConfig,
    CacheConfig,
    Config,
    DatabaseConfig,
    IndexConfig,
    LoggingConfig,
    MLConfig,
    OIDCConfig,
    PlanConfig,
    PublisherConfig,
    RateLimitConfig,
    RoleGrant,
    SAMLConfig,
    ServerConfig,
    StorageConfig,
    TelemetryConfig,
    TenantConfig,
)

__all__ = [
    "ACTIONS",
    "DEFAULT_PLANS",
    "DEFAULT_TENANT",
    "MAX_CONFIG_BYTES",
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
    "dump",
    "from_serve_args",
    "from_serve_namespace",
    "load",
    "parse",
    "single_tenant",
]
