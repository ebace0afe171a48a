"""Config -> schema v2 TOML text (no TOML library needed for writing).

The output is normalized: every section in one order, defaults written out (so a reader sees
what the server will do), roles grouped by subject. ``parse(dump(c)) == c`` for every valid
Config (a property test checks it). No secret can appear: a Config never holds one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ._schema import (
    Config,
    IndexConfig,
    OIDCConfig,
    PlanConfig,
    PublisherConfig,
    SAMLConfig,
    ServerConfig,
    TenantConfig,
)

__all__ = ["dump", "toml_key", "toml_value"]

_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A key, bare when it can be."""
    return key if _BARE.match(key) else _string(key)


def toml_value(value: Any) -> str:
    """One TOML value: strings, booleans, integers, floats, arrays, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def header(self, *parts: str, array: bool = False) -> None:
        if self.lines:
            self.lines.append("")
        name = ".".join(toml_key(p) for p in parts)
        self.lines.append(f"[[{name}]]" if array else f"[{name}]")

    def put(self, key: str, value: Any) -> None:
        if value is not None:
            self.lines.append(f"{toml_key(key)} = {toml_value(value)}")


def _server(w: _Writer, s: ServerConfig) -> None:
    w.header("server")
    w.put("host", s.host)
    w.put("port", s.port)
    w.put("tls", s.tls)
    w.put("certfile", s.certfile)
    w.put("keyfile", s.keyfile)
    w.put("public_url", s.public_url)
    w.put("sign", s.sign)
    w.put("http3", s.http3)
    w.put("max_connections", s.max_connections)
    w.put("max_connections_per_ip", s.max_connections_per_ip)
    w.put("max_requests_per_ip", s.max_requests_per_ip)
    w.put("read_timeout", "off" if s.read_timeout is None else s.read_timeout)
    w.put("write_timeout", "off" if s.write_timeout is None else s.write_timeout)
    w.put("drain_timeout_s", s.drain_timeout_s)
    w.put("certificates", s.certificates)
    if s.acme is not None:
        w.header("server", "acme")
        w.put("directory_url", s.acme.directory_url)
        w.put("email", s.acme.email)
        w.put("challenge", s.acme.challenge)
        w.put("ca_bundle", s.acme.ca_bundle)
        w.put("allow_http", s.acme.allow_http)
        w.put("http_port", s.acme.http_port)


def _operations(w: _Writer, config: Config) -> None:
    """[database], [cache], [telemetry], [logging], [audit] (issue 15's sections), [ml]."""
    db = config.database
    w.header("database")
    w.put("backend", db.backend)
    w.put("url", db.url)
    w.put("url_env", db.url_env)
    w.put("url_file", db.url_file)
    cache = config.cache
    w.header("cache")
    w.put("backend", cache.backend)
    w.put("redis_url", cache.redis_url)
    w.put("redis_url_env", cache.redis_url_env)
    if cache.eviction != "lru":
        w.put("eviction", cache.eviction)
    t = config.telemetry
    w.header("telemetry")
    w.put("otlp_endpoint", t.otlp_endpoint)
    w.put("service_name", t.service_name)
    w.put("sample_ratio", t.sample_ratio)
    w.put("metrics", t.metrics)
    w.put("allow_http", t.allow_http)
    w.put("metrics_token_env", t.metrics_token_env)
    w.put("metrics_token_file", t.metrics_token_file)
    w.header("logging")
    w.put("access_log", config.logging.access_log)
    w.header("audit")
    w.put("enabled", config.audit.enabled)
    w.put("sign", config.audit.sign)
    ml = config.ml
    if ml is not None:  # written only when the file had one: its absence keeps ML off
        w.header("ml")
        w.put("anomaly_detection", ml.anomaly_detection)
        w.put("anomaly_detector", ml.anomaly_detector)
        w.put("anomaly_model", ml.anomaly_model)
        w.put("upload_checks", ml.upload_checks)
        w.put("typosquat_top", ml.typosquat_top)
        w.put("scaling", ml.scaling)
        w.put("per_worker_rps", ml.per_worker_rps)
        w.put("workers_per_instance", ml.workers_per_instance)


def _plan(w: _Writer, name: str, plan: PlanConfig) -> None:
    w.header("rate_limits", "plans", name)
    w.put("rate", plan.rate)
    w.put("burst", plan.burst)
    w.put("upload_rate", plan.upload_rate)
    w.put("upload_burst", plan.upload_burst)


def _index(w: _Writer, tenant: str, index: IndexConfig) -> None:
    w.header("tenants", tenant, "indexes", array=True)
    w.put("name", index.name)
    w.put("path", index.path)
    w.put("public", index.public)
    w.put("directory", index.directory)


def _oidc(w: _Writer, tenant: str, o: OIDCConfig) -> None:
    w.header("tenants", tenant, "oidc")
    w.put("issuer", o.issuer)
    w.put("client_id", o.client_id)
    w.put("client_secret_env", o.client_secret_env)
    w.put("client_secret_file", o.client_secret_file)
    w.put("scopes", list(o.scopes))
    w.put("groups_claim", o.groups_claim)
    w.put("username_claim", o.username_claim)
    w.put("allow_http", o.allow_http)


def _saml(w: _Writer, tenant: str, s: SAMLConfig) -> None:
    w.header("tenants", tenant, "saml")
    w.put("entity_id", s.entity_id)
    w.put("idp_metadata", s.idp_metadata)
    w.put("groups_attribute", s.groups_attribute)
    w.put("username_attribute", s.username_attribute)
    w.put("sp_certfile", s.sp_certfile)
    w.put("sp_keyfile", s.sp_keyfile)
    w.put("clock_skew_s", s.clock_skew_s)


def _publisher(w: _Writer, tenant: str, p: PublisherConfig) -> None:
    w.header("tenants", tenant, "publishers", array=True)
    w.put("name", p.name)
    w.put("issuer", p.issuer)
    w.put("index", p.index)
    w.put("project", p.project)
    w.put("repository", p.repository)
    w.put("workflow", p.workflow)
    w.put("environment", p.environment)
    if p.claims:
        w.put("claims", dict(p.claims))
    w.put("create", p.create)
    w.put("audience", p.audience)
    w.put("allow_http", p.allow_http)


def _tenant(w: _Writer, t: TenantConfig) -> None:
    w.header("tenants", t.name)
    w.put("plan", t.plan)
    w.put("public", t.public)
    w.put("domains", list(t.domains))
    w.put("path_prefix", t.path_prefix)
    w.put("directory", t.directory)
    w.put("session_ttl_s", t.session_ttl_s)
    w.put("token_max_ttl_s", t.token_max_ttl_s)
    for index in t.indexes:
        _index(w, t.name, index)
    if t.roles:
        w.header("tenants", t.name, "roles")
        by_subject: dict[str, list[str]] = {}
        for grant in t.roles:
            by_subject.setdefault(grant.subject, []).append(f"{grant.role}@{grant.resource}")
        for subject, grants in by_subject.items():
            w.put(subject, grants)
    if t.group_roles:
        w.header("tenants", t.name, "group_roles")
        for group, members in t.group_roles.items():
            w.put(group, list(members))
    if t.oidc is not None:
        _oidc(w, t.name, t.oidc)
    if t.saml is not None:
        _saml(w, t.name, t.saml)
    for publisher in t.publishers:
        _publisher(w, t.name, publisher)


def dump(config: Config) -> str:
    """The normalized schema v2 TOML of ``config``."""
    w = _Writer()
    w.lines.append(f"version = {config.version}")
    w.put("default_tenant", config.default_tenant)
    _server(w, config.server)
    st = config.storage
    w.header("storage")
    w.put("directory", st.directory)
    w.put("backend", st.backend)
    if st.backend == "s3":
        w.put("bucket", st.bucket)
        w.put("prefix", st.prefix)
        w.put("endpoint_url", st.endpoint_url)
        w.put("region", st.region)
        w.put("multipart_threshold", st.multipart_threshold)
    _operations(w, config)
    r = config.rate_limits
    w.header("rate_limits")
    w.put("backend", r.backend)
    w.put("redis_url", r.redis_url)
    w.put("redis_url_env", r.redis_url_env)
    w.put("fail_open_reads", r.fail_open_reads)
    w.put("fail_open_uploads", r.fail_open_uploads)
    for name, plan in r.plans.items():
        _plan(w, name, plan)
    if config.flags:
        w.header("flags")
        for key, value in config.flags.items():
            w.put(key, value)
    for tenant in config.tenants.values():
        _tenant(w, tenant)
    return "\n".join(w.lines) + "\n"
