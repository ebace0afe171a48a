"""Hypothesis strategies for valid schema v2 Configs (in parse's canonical form: lower-case
domains, normalized project names, sorted role grants), for the dump/parse round trip."""

from __future__ import annotations

import dataclasses
import string
from types import MappingProxyType
from typing import Any

from hypothesis import strategies as st

from registry_core.config import (
    DEFAULT_PLANS,
    ROLES,
    AcmeConfig,
    AuditConfig,
    CacheConfig,
    Config,
    DatabaseConfig,
    IndexConfig,
    LoggingConfig,
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

_ALNUM = string.ascii_lowercase + string.digits
#: [a-z0-9]([a-z0-9-]*[a-z0-9])? (from_regex is much slower to draw from)
names = st.builds(
    lambda first, rest: first + (rest.rstrip("-") if rest.rstrip("-") else ""),
    st.sampled_from(_ALNUM),
    st.text(_ALNUM + "-", max_size=11),
)
labels = names
#: Any text a TOML string can hold except control characters (parse refuses those).
texts = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"),
    ),
    min_size=1,
    max_size=12,
)
simple = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
projects = names.map(lambda s: "-".join(part for part in s.split("-") if part))
seconds = st.floats(min_value=0, max_value=86400.0, exclude_min=True, allow_nan=False)


def _urls(host: str) -> st.SearchStrategy[str]:
    return st.builds(lambda path: f"https://{host}/{path}", simple)


@st.composite
def servers(draw: Any) -> ServerConfig:
    tls = draw(st.sampled_from(["self-signed", "plain-http", "files"]))
    loopback = ["127.0.0.1", "::1", "localhost"]
    host = draw(st.sampled_from(loopback if tls == "plain-http" else [*loopback, "0.0.0.0"]))
    files = tls == "files"
    return ServerConfig(
        host=host,
        port=draw(st.integers(0, 65535)),
        tls=tls,
        certfile=draw(texts) if files else None,
        keyfile=draw(texts) if files else None,
        sign=draw(st.booleans()),
        public_url=draw(st.none() | _urls("registry.example.org")),
        http3=draw(st.booleans()),
        max_connections=draw(st.integers(1, 1_000_000)),
        max_connections_per_ip=draw(st.integers(1, 1_000_000)),
        read_timeout=draw(st.none() | seconds),
        write_timeout=draw(st.none() | seconds),
        max_requests_per_ip=draw(st.none() | st.integers(1, 1_000_000)),
        drain_timeout_s=draw(st.floats(min_value=0, max_value=3600.0)),
        certificates=draw(maybe_text),
        acme=draw(st.none() | acme_configs),
    )


acme_configs = st.builds(
    AcmeConfig,
    directory_url=_urls("acme.example.org"),
    email=st.sampled_from(["ops@example.org", "a.b@acme.test"]),
    challenge=st.just("http-01"),
    http_port=st.integers(1, 65535),
    ca_bundle=st.none() | st.text(string.ascii_letters + "/._-", min_size=1, max_size=12),
    allow_http=st.booleans(),
)


@st.composite
def storages(draw: Any) -> StorageConfig:
    directory = draw(texts)
    if not draw(st.booleans()):
        return StorageConfig(directory)
    return StorageConfig(
        directory,
        backend="s3",
        bucket=draw(st.sampled_from(["dists", "registry-core.files", "a1-b2-c3"])),
        prefix=draw(st.sampled_from(["", "prod/", "a/b"])),
        endpoint_url=draw(
            st.none() | st.sampled_from(["https://s3.example", "http://127.0.0.1:9"])
        ),
        region=draw(st.none() | st.sampled_from(["us-east-1", "eu-west-3"])),
        multipart_threshold=draw(st.integers(5 << 20, 5 << 30)),
    )


@st.composite
def databases(draw: Any) -> DatabaseConfig:
    which = draw(st.integers(0, 3))
    if which == 0:
        return DatabaseConfig()
    return DatabaseConfig(
        backend="postgresql",
        url="postgresql://registry@db.example:5432/registry" if which == 1 else None,
        url_env="RC_DATABASE_URL" if which == 2 else None,
        url_file="/run/secrets/dsn" if which == 3 else None,
    )


@st.composite
def caches(draw: Any) -> CacheConfig:
    which = draw(st.integers(0, 2))
    if which == 0:
        return CacheConfig()
    return CacheConfig(
        backend="redis",
        redis_url="redis://127.0.0.1:6379/1" if which == 1 else None,
        redis_url_env="RC_CACHE_REDIS" if which == 2 else None,
    )


telemetries = st.builds(
    TelemetryConfig,
    otlp_endpoint=st.none() | _urls("otel.example.org"),
    service_name=texts,
    sample_ratio=st.floats(min_value=0, max_value=1),
    metrics=st.booleans(),
    allow_http=st.booleans(),
    metrics_token_env=st.none() | st.just("RC_METRICS_TOKEN"),
)


plans = st.builds(
    PlanConfig,
    rate=st.floats(min_value=0, max_value=1e9, exclude_min=True),
    burst=st.integers(1, 10**9),
    upload_rate=st.floats(min_value=0, max_value=1e9, exclude_min=True),
    upload_burst=st.integers(1, 10**9),
)


@st.composite
def rate_limits(draw: Any) -> RateLimitConfig:
    extra = draw(st.dictionaries(names, plans, max_size=2))
    all_plans = {**DEFAULT_PLANS, **extra}
    backend = draw(st.sampled_from(["memory", "redis"]))
    url = env = None
    if backend == "redis":
        if draw(st.booleans()):
            url = draw(st.sampled_from(["redis://localhost:6379/0", "rediss://r.example:6380"]))
        else:
            env = draw(st.sampled_from(["REDIS_URL", "RC_REDIS"]))
    return RateLimitConfig(
        backend=backend,
        redis_url=url,
        redis_url_env=env,
        fail_open_reads=draw(st.booleans()),
        fail_open_uploads=draw(st.booleans()),
        plans=MappingProxyType(all_plans),
    )


maybe_bool = st.none() | st.booleans()
maybe_text = st.none() | texts
#: (kind, which index, project): mapped onto a tenant's indexes by _resource.
resource_specs = st.tuples(st.integers(0, 2), st.integers(0, 2), projects)
#: (kind, ident): "*", "authenticated", user/group/token:<ident>, publisher:<n-th publisher>.
subject_specs = st.tuples(st.integers(0, 5), simple, st.integers(0, 1))
roles = st.sampled_from(ROLES)
oidc_configs = st.builds(
    OIDCConfig,
    issuer=_urls("login.example.com"),
    client_id=texts,
    client_secret_env=st.none() | st.just("OIDC_SECRET"),
    scopes=st.lists(simple, max_size=3, unique=True).map(
        lambda s: ("openid", *(x for x in s if x != "openid"))
    ),
    groups_claim=texts,
    username_claim=texts,
    allow_http=st.booleans(),
)
saml_configs = st.builds(
    SAMLConfig,
    entity_id=texts,
    idp_metadata=texts,
    groups_attribute=texts,
    username_attribute=maybe_text,
    sp_certfile=st.just("sp.pem"),
    sp_keyfile=st.just("sp.key"),
    clock_skew_s=st.floats(min_value=0, max_value=300),
)
claim_tables = st.dictionaries(simple, texts, max_size=2)
issuers = _urls("token.example.com")


def _resource(spec: tuple[int, int, str], indexes: list[str]) -> str:
    kind, n, project = spec
    if kind == 0:
        return "*"
    index = indexes[n % len(indexes)]
    return index if kind == 1 else f"{index}/{project}"


def _subject(spec: tuple[int, str, int], publishers: list[str]) -> str:
    kind, ident, n = spec
    if kind == 5 and publishers:
        return f"publisher:{publishers[n % len(publishers)]}"
    return ["*", "authenticated", f"user:{ident}", f"group:{ident}", f"token:{ident}"][kind % 5]


@st.composite
def tenants(draw: Any, name: str, plan_names: list[str]) -> TenantConfig:
    index_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    indexes = tuple(IndexConfig(n, f"/{n}", public=draw(maybe_bool)) for n in index_names)
    publishers = []
    for pub_name in draw(st.lists(names, max_size=2, unique=True)):
        claims = draw(claim_tables)
        publishers.append(
            PublisherConfig(
                name=pub_name,
                issuer=draw(issuers),
                index=index_names[draw(st.integers(0, 2)) % len(index_names)],
                project=draw(projects),
                repository=draw(texts) if not claims or draw(st.booleans()) else None,
                workflow=draw(st.none() | simple),
                environment=draw(maybe_text),
                claims=MappingProxyType(claims),
                create=draw(st.booleans()),
                audience=draw(maybe_text),
                allow_http=draw(st.booleans()),
            )
        )
    pub_names = [p.name for p in publishers]
    grants = {
        RoleGrant(_subject(subject, pub_names), role, _resource(resource, index_names))
        for subject, role, resource in draw(
            st.lists(st.tuples(subject_specs, roles, resource_specs), max_size=5)
        )
    }
    group_roles = {
        group: tuple(f"{role}@{_resource(spec, index_names)}" for role, spec in grants_)
        for group, grants_ in draw(
            st.dictionaries(
                texts, st.lists(st.tuples(roles, resource_specs), max_size=3), max_size=2
            )
        ).items()
    }
    return TenantConfig(
        name=name,
        plan=draw(st.sampled_from(plan_names)),
        domains=tuple(
            f"{label}.{name}.test" for label in draw(st.lists(labels, max_size=2, unique=True))
        ),
        path_prefix=f"/t/{name}",
        public=draw(st.booleans()),
        indexes=indexes,
        roles=tuple(sorted(grants)),
        group_roles=MappingProxyType(group_roles),
        oidc=draw(st.none() | oidc_configs),
        saml=draw(st.none() | saml_configs),
        publishers=tuple(publishers),
        session_ttl_s=draw(st.floats(min_value=0, max_value=30 * 86400.0, exclude_min=True)),
        token_max_ttl_s=draw(st.none() | st.floats(min_value=1, max_value=1e8)),
    )


flag_values = st.booleans() | st.sampled_from(["on", "off", "25%"]) | st.integers(0, 100)


@st.composite
def configs(draw: Any) -> Config:
    limits = draw(rate_limits())
    tenant_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    ts = {n: draw(tenants(n, list(limits.plans))) for n in tenant_names}
    server = draw(servers())
    if server.acme is not None and (
        server.tls == "plain-http" or not any(t.domains for t in ts.values())
    ):
        server = dataclasses.replace(server, acme=None)  # parse refuses ACME there
    return Config(
        version=2,
        server=server,
        storage=draw(storages()),
        rate_limits=limits,
        database=draw(databases()),
        cache=draw(caches()),
        telemetry=draw(telemetries),
        logging=LoggingConfig(access_log=draw(st.sampled_from(["json", "off"]))),
        audit=AuditConfig(enabled=draw(st.booleans()), sign=draw(st.booleans())),
        tenants=MappingProxyType(ts),
        flags=MappingProxyType(
            draw(
                st.dictionaries(
                    st.text(string.ascii_uppercase + "_", min_size=1, max_size=8),
                    flag_values,
                    max_size=3,
                )
            )
        ),
        default_tenant=draw(st.none() | st.sampled_from(tenant_names)),
    )
