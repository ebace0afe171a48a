"""Schema v2 validation: TOML text -> :class:`Config`, or one :class:`ConfigError` naming the
source, line and key of the first problem.

Strict by design: unknown keys are refused (with the closest known key), types are exact (a
bool is not an int; an int is accepted where a float is meant), secrets are never accepted
inline, and every cross reference (roles, indexes, plans, publishers, domains, paths) is
checked here, so a server never starts on a configuration it would misread.
"""

from __future__ import annotations

import difflib
import math
import os
import posixpath
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from .._util._net import is_loopback
from ..errors import ConfigError
from ._locate import KeyPath, key_lines, line_of
from ._schema import (
    ACCESS_LOGS,
    ACME_CHALLENGES,
    ANOMALY_DETECTORS,
    BACKENDS,
    CACHE_BACKENDS,
    CACHE_EVICTIONS,
    DATABASE_BACKENDS,
    DEFAULT_PLANS,
    ROLES,
    SCHEMA_VERSION,
    STORAGE_BACKENDS,
    TLS_MODES,
    UPLOAD_CHECK_ACTIONS,
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

__all__ = ["MAX_CONFIG_BYTES", "dotted", "load", "parse", "read_text"]

#: Largest configuration accepted (text or file).
MAX_CONFIG_BYTES = 1 << 20
#: Largest SAML clock skew accepted (seconds): more would let a stale assertion be replayed.
MAX_CLOCK_SKEW_S = 300.0
#: Longest string value accepted anywhere.
MAX_STRING = 4096

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")
_PROJECT = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+\Z")
_DIRECTORY = re.compile(r"(\.|[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*)\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_SUBJECT_KINDS = ("user", "group", "token", "publisher")
_MIGRATE = "registry-core config migrate -o FILE -- serve DIR [serve options]"

#: Keys that would put a secret in the file, with what to write instead.
_SECRETS = {
    "client_secret": "use client_secret_env (an environment variable) or client_secret_file",
    "secret": "name an environment variable or a file instead",
    "password": "name an environment variable or a file instead",
    "redis_password": "put the whole URL in an environment variable named by redis_url_env",
    "token": "name an environment variable or a file instead",
    "metrics_token": "use metrics_token_env (an environment variable) or metrics_token_file",
    "api_key": "name an environment variable or a file instead",
    "private_key": "give the path of a key file instead",
    "passphrase": "name an environment variable or a file instead",
    "key_passphrase": "use $REGISTRY_CORE_KEY_PASSPHRASE",
}

T = TypeVar("T")


def dotted(path: KeyPath) -> str:
    """``("tenants", "acme", "indexes", 0, "name")`` -> ``tenants.acme.indexes[0].name``
    (parts that are not bare TOML keys are quoted)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _quote_key(part)
        out += f".{text}" if out else text
    return out


def _quote_key(part: str) -> str:
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


def canonical_project(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class _Checker:
    """The source text (for lines, computed on the first error only) and the error helper."""

    def __init__(self, text: str, source: str, base_dir: str | None) -> None:
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self._lines: dict[KeyPath, int] | None = None

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        if self._lines is None:
            self._lines = key_lines(self.text)
        raise ConfigError(
            message, source=self.source, line=line_of(self._lines, path), key=dotted(path)
        )

    # -- tables --------------------------------------------------------------------------------

    def table(
        self, path: KeyPath, value: object, known: tuple[str, ...], *, hint: str = ""
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, not {_type_name(value)}")
        for key in value:
            if key in known:
                continue
            if key in _SECRETS:
                self.fail((*path, key), f"inline secrets are refused: {_SECRETS[key]}")
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            tip = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(known)}"
            self.fail((*path, key), f"unknown key{tip}{hint}")
        return value

    def required(self, path: KeyPath, table: Mapping[str, Any], key: str) -> Any:
        if key not in table:
            self.fail((*path, key), f"missing (required in {dotted(path) or 'the top level'})")
        return table[key]

    # -- scalars -------------------------------------------------------------------------------

    def string(self, path: KeyPath, value: object, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {_type_name(value)}")
        if not value and not empty:
            self.fail(path, "must not be empty")
        if len(value) > MAX_STRING:
            self.fail(path, f"is longer than {MAX_STRING} characters")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            self.fail(path, "must not contain control characters")
        return value

    def boolean(self, path: KeyPath, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, not {_type_name(value)}")
        return value

    def integer(self, path: KeyPath, value: object, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, not {_type_name(value)}")
        if not lo <= value <= hi:
            self.fail(path, f"must be between {lo} and {hi}, not {value}")
        return value

    def number(
        self, path: KeyPath, value: object, lo: float, hi: float, *, open_lo: bool = False
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a number, not {_type_name(value)}")
        number = float(value)
        if not math.isfinite(number) or number > hi or number < lo or (open_lo and number == lo):
            bound = f"greater than {lo:g}" if open_lo else f"at least {lo:g}"
            self.fail(path, f"must be a finite number {bound} and at most {hi:g}, not {value}")
        return number

    def choice(self, path: KeyPath, value: object, choices: tuple[str, ...]) -> str:
        text = self.string(path, value)
        if text not in choices:
            near = difflib.get_close_matches(text, choices, n=1, cutoff=0.5)
            tip = f" (did you mean {near[0]!r}?)" if near else ""
            self.fail(path, f"must be one of {', '.join(map(repr, choices))}, not {text!r}{tip}")
        return text

    def strings(self, path: KeyPath, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(path, f"must be an array of strings, not {_type_name(value)}")
        return tuple(self.string((*path, n), item) for n, item in enumerate(value))

    def optional(
        self, path: KeyPath, table: Mapping[str, Any], key: str, check: Callable[..., T]
    ) -> T | None:
        if key not in table:
            return None
        return check((*path, key), table[key])

    def name(self, path: KeyPath, value: object, what: str) -> str:
        text = self.string(path, value)
        if not NAME.match(text):
            self.fail(
                path,
                f"{text!r} is not a valid {what} name: 1-63 lower-case letters, digits and "
                "'-', starting with a letter or digit",
            )
        return text

    def path_file(self, path: KeyPath, value: object) -> str:
        """A file or directory path; relative ones are taken from the configuration file's
        directory when there is one."""
        text = self.string(path, value)
        if self.base_dir is not None and not os.path.isabs(text):
            text = os.path.join(self.base_dir, text)
        return text

    def url(self, path: KeyPath, value: object, *, allow_http: bool, what: str) -> str:
        text = self.string(path, value)
        try:
            parts = urlsplit(text)
            host = parts.hostname
            parts.port  # noqa: B018 (validates the port)
        except ValueError as exc:
            self.fail(path, f"{text!r} is not a valid URL: {exc}")
        if parts.scheme not in ("https", "http") or not host:
            self.fail(path, f"{text!r} must be an https:// URL")
        if parts.username is not None or parts.password is not None:
            self.fail(path, "must not contain credentials (inline secrets are refused)")
        if parts.query or parts.fragment:
            self.fail(path, "must not have a query or a fragment")
        if parts.scheme == "http" and not (allow_http and is_loopback(host)):
            self.fail(
                path,
                f"{what} must use https:// (http:// only on a loopback host"
                + (", with allow_http = true)" if what != "public_url" else ")"),
            )
        return text


# -- sections ----------------------------------------------------------------------------------


def _off_or_seconds(c: _Checker, path: KeyPath, value: object) -> float | None:
    if isinstance(value, str) and value == "off":
        return None
    if isinstance(value, str):
        c.fail(path, f'must be a number of seconds or "off", not {value!r}')
    return c.number(path, value, 0, 86400.0, open_lo=True)


_SERVER_KEYS = tuple(f for f in ServerConfig.__dataclass_fields__)


def _server(c: _Checker, value: object) -> ServerConfig:
    p: KeyPath = ("server",)
    t = c.table(p, value, _SERVER_KEYS)
    d = ServerConfig()
    host = c.string((*p, "host"), t.get("host", d.host))
    tls = c.choice((*p, "tls"), t.get("tls", d.tls), TLS_MODES)
    certfile = c.optional(p, t, "certfile", c.path_file)
    keyfile = c.optional(p, t, "keyfile", c.path_file)
    if tls == "files":
        for key in ("certfile", "keyfile"):
            c.required(p, t, key)
    else:
        for key in ("certfile", "keyfile"):
            if key in t:
                c.fail((*p, key), f'is used only with tls = "files" (tls is {tls!r})')
    if tls == "plain-http" and not is_loopback(host):
        c.fail(
            (*p, "tls"),
            f'"plain-http" serves without TLS and is refused on {host}: use a loopback host '
            '(127.0.0.1, ::1) or tls = "files"',
        )
    public_url = None
    if "public_url" in t:
        public_url = c.url((*p, "public_url"), t["public_url"], allow_http=True, what="public_url")
    mrpi = c.optional(p, t, "max_requests_per_ip", lambda q, v: c.integer(q, v, 1, 1_000_000))
    acme = _acme(c, t["acme"]) if "acme" in t else None
    return ServerConfig(
        host=host,
        port=c.integer((*p, "port"), t.get("port", d.port), 0, 65535),
        tls=tls,  # type: ignore[arg-type]
        certfile=certfile,
        keyfile=keyfile,
        sign=c.boolean((*p, "sign"), t.get("sign", d.sign)),
        public_url=public_url,
        http3=c.boolean((*p, "http3"), t.get("http3", d.http3)),
        max_connections=c.integer(
            (*p, "max_connections"), t.get("max_connections", d.max_connections), 1, 1_000_000
        ),
        max_connections_per_ip=c.integer(
            (*p, "max_connections_per_ip"),
            t.get("max_connections_per_ip", d.max_connections_per_ip),
            1,
            1_000_000,
        ),
        read_timeout=_off_or_seconds(
            c, (*p, "read_timeout"), t.get("read_timeout", d.read_timeout)
        ),
        write_timeout=_off_or_seconds(
            c, (*p, "write_timeout"), t.get("write_timeout", d.write_timeout)
        ),
        max_requests_per_ip=mrpi,
        drain_timeout_s=c.number(
            (*p, "drain_timeout_s"), t.get("drain_timeout_s", d.drain_timeout_s), 0, 3600.0
        ),
        certificates=c.optional(p, t, "certificates", c.path_file),
        acme=acme,
    )


_S3_KEYS = ("bucket", "prefix", "endpoint_url", "region", "multipart_threshold")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def _storage(c: _Checker, value: object) -> StorageConfig:
    p: KeyPath = ("storage",)
    t = c.table(p, value, tuple(StorageConfig.__dataclass_fields__))
    d = StorageConfig(directory=".")
    directory = c.path_file((*p, "directory"), c.required(p, t, "directory"))
    backend = c.choice((*p, "backend"), t.get("backend", d.backend), STORAGE_BACKENDS)
    if backend != "s3":
        for key in _S3_KEYS:
            if key in t:
                c.fail((*p, key), f'is used only with backend = "s3" (backend is {backend!r})')
        return StorageConfig(directory=directory)
    bucket = c.string((*p, "bucket"), c.required(p, t, "bucket"))
    if not _BUCKET.match(bucket):
        c.fail((*p, "bucket"), f"{bucket!r} is not a valid S3 bucket name")
    prefix = c.string((*p, "prefix"), t.get("prefix", ""), empty=True)
    if prefix and (prefix.startswith("/") or ".." in prefix.split("/") or "//" in prefix):
        c.fail((*p, "prefix"), f"{prefix!r}: a relative key prefix without '..' or '//'")
    endpoint = None
    if "endpoint_url" in t:
        endpoint = c.url(
            (*p, "endpoint_url"), t["endpoint_url"], allow_http=True, what="endpoint_url"
        )
    return StorageConfig(
        directory=directory,
        backend="s3",
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint,
        region=c.optional(p, t, "region", c.string),
        multipart_threshold=c.integer(
            (*p, "multipart_threshold"),
            t.get("multipart_threshold", d.multipart_threshold),
            5 << 20,
            5 << 30,
        ),
    )


_PLAN_KEYS = ("rate", "burst", "upload_rate", "upload_burst")


def _plan(c: _Checker, path: KeyPath, value: object, default: PlanConfig | None) -> PlanConfig:
    t = c.table(path, value, _PLAN_KEYS)
    if default is None:
        for key in _PLAN_KEYS:
            c.required(path, t, key)

    def get(key: str) -> Any:
        return t[key] if key in t else getattr(default, key)

    return PlanConfig(
        rate=c.number((*path, "rate"), get("rate"), 0, 1e9, open_lo=True),
        burst=c.integer((*path, "burst"), get("burst"), 1, 1_000_000_000),
        upload_rate=c.number((*path, "upload_rate"), get("upload_rate"), 0, 1e9, open_lo=True),
        upload_burst=c.integer((*path, "upload_burst"), get("upload_burst"), 1, 1_000_000_000),
    )


def _rate_limits(c: _Checker, value: object) -> RateLimitConfig:
    p: KeyPath = ("rate_limits",)
    t = c.table(p, value, tuple(RateLimitConfig.__dataclass_fields__))
    d = RateLimitConfig()
    backend = c.choice((*p, "backend"), t.get("backend", d.backend), BACKENDS)
    redis_url, redis_url_env = _redis_urls(c, p, t, backend == "redis")
    plans = dict(DEFAULT_PLANS)
    if "plans" in t:
        q = (*p, "plans")
        table = t["plans"]
        if not isinstance(table, dict):
            c.fail(q, f"must be a table of plans, not {_type_name(table)}")
        for name, plan in table.items():
            c.name((*q, name), name, "plan")
            plans[name] = _plan(c, (*q, name), plan, DEFAULT_PLANS.get(name))
    return RateLimitConfig(
        backend=backend,  # type: ignore[arg-type]
        redis_url=redis_url,
        redis_url_env=redis_url_env,
        fail_open_reads=c.boolean(
            (*p, "fail_open_reads"), t.get("fail_open_reads", d.fail_open_reads)
        ),
        fail_open_uploads=c.boolean(
            (*p, "fail_open_uploads"), t.get("fail_open_uploads", d.fail_open_uploads)
        ),
        plans=MappingProxyType(plans),
    )


def _redis_url(c: _Checker, q: KeyPath, value: object) -> str:
    redis_url = c.string(q, value)
    try:
        parts = urlsplit(redis_url)
    except ValueError as exc:
        c.fail(q, f"{redis_url!r} is not a valid URL: {exc}")
    if parts.scheme not in ("redis", "rediss", "unix"):
        c.fail(q, f"{redis_url!r} must be a redis://, rediss:// or unix:// URL")
    if parts.password is not None or "password=" in parts.query:
        c.fail(
            q,
            "inline secrets are refused: put a URL with a password in an environment "
            "variable and name it with redis_url_env",
        )
    return redis_url


def _redis_urls(
    c: _Checker, p: KeyPath, t: Mapping[str, Any], wanted: bool
) -> tuple[str | None, str | None]:
    """``redis_url`` / ``redis_url_env`` of a table whose backend is ``"redis"`` (``wanted``):
    exactly one of them then, neither otherwise."""
    redis_url = c.optional(p, t, "redis_url", lambda q, v: _redis_url(c, q, v))
    redis_url_env = c.optional(p, t, "redis_url_env", lambda q, v: _env_name(c, q, v))
    if redis_url is not None and redis_url_env is not None:
        c.fail((*p, "redis_url_env"), "give redis_url or redis_url_env, not both")
    if wanted and redis_url is None and redis_url_env is None:
        c.fail((*p, "backend"), 'backend = "redis" needs redis_url or redis_url_env')
    if not wanted and (redis_url is not None or redis_url_env is not None):
        key = "redis_url" if redis_url is not None else "redis_url_env"
        c.fail((*p, key), 'is used only with backend = "redis"')
    return redis_url, redis_url_env


def _database(c: _Checker, value: object) -> DatabaseConfig:
    p: KeyPath = ("database",)
    t = c.table(p, value, tuple(DatabaseConfig.__dataclass_fields__))
    backend = c.choice((*p, "backend"), t.get("backend", "sqlite"), DATABASE_BACKENDS)
    url = None
    if "url" in t:
        q = (*p, "url")
        url = c.string(q, t["url"])
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (validates the port)
        except ValueError as exc:
            c.fail(q, f"{url!r} is not a valid URL: {exc}")
        if parts.scheme not in ("postgresql", "postgres"):
            c.fail(q, f"{url!r} must be a postgresql:// URL")
        if parts.password is not None or "password" in parts.query:
            c.fail(
                q,
                "inline secrets are refused: put a DSN with a password in an environment "
                "variable (url_env) or a file (url_file)",
            )
    url_env = c.optional(p, t, "url_env", lambda q, v: _env_name(c, q, v))
    url_file = c.optional(p, t, "url_file", c.path_file)
    given = [k for k, v in (("url", url), ("url_env", url_env), ("url_file", url_file)) if v]
    if len(given) > 1:
        c.fail((*p, given[1]), f"give one of url, url_env and url_file, not {' and '.join(given)}")
    if backend == "postgresql" and not given:
        c.fail((*p, "backend"), 'backend = "postgresql" needs url, url_env or url_file')
    if backend != "postgresql" and given:
        c.fail((*p, given[0]), 'is used only with backend = "postgresql"')
    return DatabaseConfig(
        backend=backend,  # type: ignore[arg-type]
        url=url,
        url_env=url_env,
        url_file=url_file,
    )


def _cache(c: _Checker, value: object) -> CacheConfig:
    p: KeyPath = ("cache",)
    t = c.table(p, value, tuple(CacheConfig.__dataclass_fields__))
    backend = c.choice((*p, "backend"), t.get("backend", "local"), CACHE_BACKENDS)
    redis_url, redis_url_env = _redis_urls(c, p, t, backend == "redis")
    eviction = c.choice((*p, "eviction"), t.get("eviction", "lru"), CACHE_EVICTIONS)
    return CacheConfig(
        backend=backend,  # type: ignore[arg-type]
        redis_url=redis_url,
        redis_url_env=redis_url_env,
        eviction=eviction,  # type: ignore[arg-type]
    )


def _telemetry(c: _Checker, value: object) -> TelemetryConfig:
    p: KeyPath = ("telemetry",)
    t = c.table(p, value, tuple(TelemetryConfig.__dataclass_fields__))
    d = TelemetryConfig()
    allow_http = c.boolean((*p, "allow_http"), t.get("allow_http", d.allow_http))
    endpoint = None
    if "otlp_endpoint" in t:
        endpoint = c.url(
            (*p, "otlp_endpoint"),
            t["otlp_endpoint"],
            allow_http=allow_http,
            what="otlp_endpoint",
        )
    token_env = c.optional(p, t, "metrics_token_env", lambda q, v: _env_name(c, q, v))
    token_file = c.optional(p, t, "metrics_token_file", c.path_file)
    if token_env is not None and token_file is not None:
        c.fail((*p, "metrics_token_file"), "give metrics_token_env or metrics_token_file, not both")
    return TelemetryConfig(
        otlp_endpoint=endpoint,
        service_name=c.string((*p, "service_name"), t.get("service_name", d.service_name)),
        sample_ratio=c.number((*p, "sample_ratio"), t.get("sample_ratio", d.sample_ratio), 0, 1),
        metrics=c.boolean((*p, "metrics"), t.get("metrics", d.metrics)),
        allow_http=allow_http,
        metrics_token_env=token_env,
        metrics_token_file=token_file,
    )


def _logging(c: _Checker, value: object) -> LoggingConfig:
    p: KeyPath = ("logging",)
    t = c.table(p, value, tuple(LoggingConfig.__dataclass_fields__))
    access_log = c.choice((*p, "access_log"), t.get("access_log", "off"), ACCESS_LOGS)
    return LoggingConfig(access_log=access_log)  # type: ignore[arg-type]


def _audit(c: _Checker, value: object) -> AuditConfig:
    p: KeyPath = ("audit",)
    t = c.table(p, value, tuple(AuditConfig.__dataclass_fields__))
    d = AuditConfig()
    return AuditConfig(
        enabled=c.boolean((*p, "enabled"), t.get("enabled", d.enabled)),
        sign=c.boolean((*p, "sign"), t.get("sign", d.sign)),
    )


def _ml(c: _Checker, value: object) -> MLConfig:
    p: KeyPath = ("ml",)
    t = c.table(p, value, tuple(MLConfig.__dataclass_fields__))
    d = MLConfig()
    detector = c.choice(
        (*p, "anomaly_detector"), t.get("anomaly_detector", d.anomaly_detector), ANOMALY_DETECTORS
    )
    model = c.optional(p, t, "anomaly_model", c.path_file)
    if detector != "rules" and model is None:
        c.fail(
            (*p, "anomaly_detector"),
            f"the {detector} detector needs a trained model: set anomaly_model to the .rcml "
            "file of `registry-core ml train` (or use the rules detector)",
        )
    return MLConfig(
        anomaly_detection=c.boolean(
            (*p, "anomaly_detection"), t.get("anomaly_detection", d.anomaly_detection)
        ),
        anomaly_detector=detector,  # type: ignore[arg-type]
        anomaly_model=model,
        upload_checks=c.choice(  # type: ignore[arg-type]
            (*p, "upload_checks"), t.get("upload_checks", d.upload_checks), UPLOAD_CHECK_ACTIONS
        ),
        typosquat_top=c.integer(
            (*p, "typosquat_top"), t.get("typosquat_top", d.typosquat_top), 1, 100_000
        ),
        scaling=c.boolean((*p, "scaling"), t.get("scaling", d.scaling)),
        per_worker_rps=c.number(
            (*p, "per_worker_rps"), t.get("per_worker_rps", d.per_worker_rps), 0, 1e6, open_lo=True
        ),
        workers_per_instance=c.integer(
            (*p, "workers_per_instance"),
            t.get("workers_per_instance", d.workers_per_instance),
            1,
            1024,
        ),
    )


def _acme(c: _Checker, value: object) -> AcmeConfig:
    p: KeyPath = ("server", "acme")
    t = c.table(p, value, tuple(AcmeConfig.__dataclass_fields__))
    allow_http = c.boolean((*p, "allow_http"), t.get("allow_http", False))
    email = c.string((*p, "email"), c.required(p, t, "email"))
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        c.fail((*p, "email"), f"{email!r} is not an e-mail address")
    return AcmeConfig(
        directory_url=c.url(
            (*p, "directory_url"),
            c.required(p, t, "directory_url"),
            allow_http=allow_http,
            what="directory_url",
        ),
        email=email,
        challenge=c.choice(  # type: ignore[arg-type]
            (*p, "challenge"), t.get("challenge", "http-01"), ACME_CHALLENGES
        ),
        ca_bundle=c.optional(p, t, "ca_bundle", c.path_file),
        allow_http=allow_http,
        http_port=c.integer((*p, "http_port"), t.get("http_port", 80), 1, 65535),
    )


def _env_name(c: _Checker, path: KeyPath, value: object) -> str:
    text = c.string(path, value)
    if not _ENV_NAME.match(text):
        c.fail(path, f"{text!r} is not an environment variable name")
    return text


def _url_path(c: _Checker, path: KeyPath, value: object, *, allow_empty: bool) -> str:
    text = c.string(path, value, empty=True)
    if text == "" and allow_empty:
        return ""
    segments = text.split("/")
    if (
        not text.startswith("/")
        or text.endswith("/")
        or any(not _SEGMENT.match(s) or s in (".", "..") for s in segments[1:])
    ):
        c.fail(
            path,
            f"{text!r} must be a URL path like '/main' (segments of letters, digits, "
            "'.', '_', '~', '-'; no trailing slash)" + (", or ''" if allow_empty else ""),
        )
    return text


def _overlaps(a: str, b: str) -> bool:
    """Whether one URL path is the other or a segment-wise prefix of it ('' covers all)."""
    sa, sb = a.split("/")[1:] if a else [], b.split("/")[1:] if b else []
    n = min(len(sa), len(sb))
    return sa[:n] == sb[:n]


def _directory(c: _Checker, path: KeyPath, value: object) -> str:
    text = c.string(path, value)
    if not _DIRECTORY.match(text) or any(s == ".." for s in text.split("/")):
        c.fail(
            path,
            f"{text!r} must be a relative directory inside the storage root ('.', 'acme', "
            "'teams/acme'; no '..', no hidden names)",
        )
    return posixpath.normpath(text)


def _nested(a: str, b: str) -> bool:
    pa, pb = Path(a).parts, Path(b).parts
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


def _domain(c: _Checker, path: KeyPath, value: object) -> str:
    text = c.string(path, value)
    if not text.isascii():
        c.fail(path, f"{text!r}: write an internationalized domain in its IDNA form (xn--...)")
    host = text.lower().removesuffix(".")
    if ":" in host and not host.startswith("["):
        c.fail(path, f"{text!r}: a domain is a host name without a port")
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        c.fail(path, f"{text!r} is not a valid host name")
    return host


def _resource(c: _Checker, path: KeyPath, text: str, indexes: set[str]) -> str:
    """``*`` | ``INDEX`` | ``INDEX/PROJECT`` naming an index of the tenant (project
    normalized)."""
    if text == "*":
        return text
    index, sep, project = text.partition("/")
    if index not in indexes:
        near = difflib.get_close_matches(index, sorted(indexes), n=1, cutoff=0.5)
        tip = f"; did you mean {near[0]!r}?" if near else ""
        c.fail(
            path,
            f"resource {text!r} names no index of this tenant (indexes: "
            f"{', '.join(sorted(indexes))}){tip}",
        )
    if not sep:
        return index
    if not _PROJECT.match(project):
        c.fail(path, f"resource {text!r}: {project!r} is not a valid project name")
    return f"{index}/{canonical_project(project)}"


def _role_at(c: _Checker, path: KeyPath, value: object, indexes: set[str]) -> tuple[str, str]:
    text = c.string(path, value)
    role, sep, resource = text.partition("@")
    if not sep:
        c.fail(path, f"{text!r} must be ROLE@RESOURCE, e.g. 'reader@main' or 'owner@*'")
    if role not in ROLES:
        near = difflib.get_close_matches(role, ROLES, n=1, cutoff=0.5)
        tip = f"; did you mean {near[0]!r}?" if near else ""
        c.fail(path, f"unknown role {role!r} (roles: {', '.join(ROLES)}){tip}")
    return role, _resource(c, path, resource, indexes)


def _subject(c: _Checker, path: KeyPath, text: str, publishers: set[str]) -> str:
    if text in ("*", "authenticated"):
        return text
    kind, sep, ident = text.partition(":")
    if not sep or kind not in _SUBJECT_KINDS or not ident or ident != ident.strip():
        c.fail(
            path,
            f"subject {text!r} must be user:<id>, group:<name>, token:<id>, "
            "publisher:<name>, '*' (everyone) or 'authenticated'",
        )
    # an IdP's group names may have inner spaces ("Release Managers"); other ids may not
    if len(text) > 256 or (kind != "group" and any(ch.isspace() for ch in ident)):
        c.fail(path, f"subject {text!r} is too long or contains white space")
    if kind == "publisher" and ident not in publishers:
        c.fail(path, f"subject {text!r} names no publisher of this tenant")
    return text


def _oidc(c: _Checker, path: KeyPath, value: object) -> OIDCConfig:
    t = c.table(path, value, tuple(OIDCConfig.__dataclass_fields__))
    d = OIDCConfig("", "")
    allow_http = c.boolean((*path, "allow_http"), t.get("allow_http", d.allow_http))
    issuer = c.url(
        (*path, "issuer"), c.required(path, t, "issuer"), allow_http=allow_http, what="issuer"
    )
    env = c.optional(path, t, "client_secret_env", lambda q, v: _env_name(c, q, v))
    file = c.optional(path, t, "client_secret_file", c.path_file)
    if env is not None and file is not None:
        c.fail((*path, "client_secret_file"), "give client_secret_env or client_secret_file")
    scopes = d.scopes
    if "scopes" in t:
        scopes = c.strings((*path, "scopes"), t["scopes"])
        for n, scope in enumerate(scopes):
            if any(ch.isspace() for ch in scope):
                c.fail((*path, "scopes", n), f"scope {scope!r} contains white space")
        if "openid" not in scopes:
            c.fail((*path, "scopes"), 'must include "openid"')
        if len(set(scopes)) != len(scopes):
            c.fail((*path, "scopes"), "lists a scope twice")
    return OIDCConfig(
        issuer=issuer,
        client_id=c.string((*path, "client_id"), c.required(path, t, "client_id")),
        client_secret_env=env,
        client_secret_file=file,
        scopes=scopes,
        groups_claim=c.string((*path, "groups_claim"), t.get("groups_claim", d.groups_claim)),
        username_claim=c.string(
            (*path, "username_claim"), t.get("username_claim", d.username_claim)
        ),
        allow_http=allow_http,
    )


def _saml(c: _Checker, path: KeyPath, value: object) -> SAMLConfig:
    t = c.table(path, value, tuple(SAMLConfig.__dataclass_fields__))
    d = SAMLConfig("", "")
    cert = c.optional(path, t, "sp_certfile", c.path_file)
    key = c.optional(path, t, "sp_keyfile", c.path_file)
    if (cert is None) != (key is None):
        c.fail((*path, "sp_keyfile" if key is None else "sp_certfile"), "missing: give both")
    return SAMLConfig(
        entity_id=c.string((*path, "entity_id"), c.required(path, t, "entity_id")),
        idp_metadata=c.path_file((*path, "idp_metadata"), c.required(path, t, "idp_metadata")),
        groups_attribute=c.string(
            (*path, "groups_attribute"), t.get("groups_attribute", d.groups_attribute)
        ),
        username_attribute=c.optional(path, t, "username_attribute", c.string),
        sp_certfile=cert,
        sp_keyfile=key,
        clock_skew_s=c.number(
            (*path, "clock_skew_s"), t.get("clock_skew_s", d.clock_skew_s), 0, MAX_CLOCK_SKEW_S
        ),
    )


def _publisher(c: _Checker, path: KeyPath, value: object, indexes: set[str]) -> PublisherConfig:
    t = c.table(path, value, tuple(PublisherConfig.__dataclass_fields__))
    allow_http = c.boolean((*path, "allow_http"), t.get("allow_http", False))
    index = c.string((*path, "index"), c.required(path, t, "index"))
    if index not in indexes:
        c.fail((*path, "index"), f"names no index of this tenant ({', '.join(sorted(indexes))})")
    project = c.string((*path, "project"), c.required(path, t, "project"))
    if not _PROJECT.match(project):
        c.fail((*path, "project"), f"{project!r} is not a valid project name")
    claims: dict[str, str] = {}
    if "claims" in t:
        q = (*path, "claims")
        table = t["claims"]
        if not isinstance(table, dict):
            c.fail(q, f"must be a table of claim = value strings, not {_type_name(table)}")
        for claim, expected in table.items():
            c.string((*q, claim), claim)
            claims[claim] = c.string((*q, claim), expected)
    workflow = c.optional(path, t, "workflow", c.string)
    if workflow is not None and "/" in workflow:
        c.fail((*path, "workflow"), f"{workflow!r}: give the workflow's file name (release.yml)")
    repository = c.optional(path, t, "repository", c.string)
    if repository is None and not claims:
        c.fail(
            path,
            "a publisher must constrain the token: give repository (and workflow) or claims "
            "(else any job of the issuer could publish)",
        )
    return PublisherConfig(
        name=c.name((*path, "name"), c.required(path, t, "name"), "publisher"),
        issuer=c.url(
            (*path, "issuer"), c.required(path, t, "issuer"), allow_http=allow_http, what="issuer"
        ),
        index=index,
        project=canonical_project(project),
        repository=repository,
        workflow=workflow,
        environment=c.optional(path, t, "environment", c.string),
        claims=MappingProxyType(claims),
        create=c.boolean((*path, "create"), t.get("create", False)),
        audience=c.optional(path, t, "audience", c.string),
        allow_http=allow_http,
    )


def _index(c: _Checker, path: KeyPath, value: object) -> IndexConfig:
    t = c.table(path, value, tuple(IndexConfig.__dataclass_fields__))
    name = c.name((*path, "name"), c.required(path, t, "name"), "index")
    return IndexConfig(
        name=name,
        path=_url_path(c, (*path, "path"), t.get("path", f"/{name}"), allow_empty=True),
        public=c.optional(path, t, "public", c.boolean),
        directory=c.optional(path, t, "directory", lambda q, v: _directory(c, q, v)),
    )


_TENANT_KEYS = tuple(TenantConfig.__dataclass_fields__)


def _tenant(c: _Checker, name: str, value: object, plans: Mapping[str, PlanConfig]) -> TenantConfig:
    p: KeyPath = ("tenants", name)
    c.name(p, name, "tenant")
    t = c.table(p, value, tuple(k for k in _TENANT_KEYS if k != "name"))
    plan = c.string((*p, "plan"), t.get("plan", "free"))
    if plan not in plans:
        c.fail((*p, "plan"), f"unknown plan {plan!r} (plans: {', '.join(plans)})")

    domains: list[str] = []
    if "domains" in t:
        q = (*p, "domains")
        if not isinstance(t["domains"], list):
            c.fail(q, f"must be an array of host names, not {_type_name(t['domains'])}")
        for n, item in enumerate(t["domains"]):
            host = _domain(c, (*q, n), item)
            if host in domains:
                c.fail((*q, n), f"{host!r} is listed twice")
            domains.append(host)

    indexes: list[IndexConfig] = []
    if "indexes" in t:
        q = (*p, "indexes")
        if not isinstance(t["indexes"], list) or not t["indexes"]:
            c.fail(q, "must be a non-empty array of tables ([[tenants.NAME.indexes]])")
        for n, item in enumerate(t["indexes"]):
            index = _index(c, (*q, n), item)
            for other in indexes:
                if other.name == index.name:
                    c.fail((*q, n, "name"), f"index {index.name!r} is defined twice")
                if _overlaps(other.path, index.path):
                    c.fail(
                        (*q, n, "path"),
                        f"path {index.path!r} overlaps index {other.name!r} at {other.path!r}",
                    )
            if index.path.split("/")[1:2] == ["_"]:
                c.fail((*q, n, "path"), "the /_ path is reserved for the tenant's own routes")
            indexes.append(index)
        dirs: dict[str, int] = {}
        for n, index in enumerate(indexes):
            d = index.directory if index.directory is not None else index.name
            for seen, m in dirs.items():
                if _nested(seen, d):
                    c.fail(
                        (*q, n, "directory"),
                        f"directory {d!r} overlaps that of index {indexes[m].name!r}",
                    )
            dirs[d] = n
    else:
        indexes.append(IndexConfig("main", "/main"))
    names = {index.name for index in indexes}

    publishers: list[PublisherConfig] = []
    if "publishers" in t:
        q = (*p, "publishers")
        if not isinstance(t["publishers"], list):
            c.fail(q, "must be an array of tables ([[tenants.NAME.publishers]])")
        for n, item in enumerate(t["publishers"]):
            pub = _publisher(c, (*q, n), item, names)
            if any(other.name == pub.name for other in publishers):
                c.fail((*q, n, "name"), f"publisher {pub.name!r} is defined twice")
            publishers.append(pub)
    publisher_names = {pub.name for pub in publishers}

    roles: set[RoleGrant] = set()
    if "roles" in t:
        q = (*p, "roles")
        table = t["roles"]
        if not isinstance(table, dict):
            c.fail(q, 'must be a table: "SUBJECT" = ["ROLE@RESOURCE", ...]')
        for subject, grants in table.items():
            _subject(c, (*q, subject), subject, publisher_names)
            if isinstance(grants, str):
                grants = [grants]
            if not isinstance(grants, list):
                c.fail((*q, subject), "must be an array of 'ROLE@RESOURCE' strings")
            for n, item in enumerate(grants):
                role, resource = _role_at(c, (*q, subject, n), item, names)
                roles.add(RoleGrant(subject, role, resource))

    group_roles: dict[str, tuple[str, ...]] = {}
    if "group_roles" in t:
        q = (*p, "group_roles")
        table = t["group_roles"]
        if not isinstance(table, dict):
            c.fail(q, 'must be a table: "IDP GROUP" = ["ROLE@RESOURCE", ...]')
        for group, grants in table.items():
            c.string((*q, group), group)
            if isinstance(grants, str):
                grants = [grants]
            if not isinstance(grants, list):
                c.fail((*q, group), "must be an array of 'ROLE@RESOURCE' strings")
            out = []
            for n, item in enumerate(grants):
                role, resource = _role_at(c, (*q, group, n), item, names)
                out.append(f"{role}@{resource}")
            group_roles[group] = tuple(out)

    token_max_ttl = c.optional(
        p, t, "token_max_ttl_s", lambda q, v: c.number(q, v, 0, 10 * 365 * 86400.0, open_lo=True)
    )
    path_prefix = _url_path(
        c, (*p, "path_prefix"), t.get("path_prefix", f"/t/{name}"), allow_empty=False
    )
    if path_prefix != f"/t/{name}":  # what the tenant resolver serves (docs/tenancy.md)
        c.fail(
            (*p, "path_prefix"),
            f"{path_prefix!r}: a tenant is served by path at /t/<name> only ('/t/{name}'); "
            "use domains for other URLs",
        )
    return TenantConfig(
        name=name,
        plan=plan,
        domains=tuple(domains),
        path_prefix=path_prefix,
        public=c.boolean((*p, "public"), t.get("public", False)),
        indexes=tuple(indexes),
        roles=tuple(sorted(roles)),
        group_roles=MappingProxyType(group_roles),
        oidc=_oidc(c, (*p, "oidc"), t["oidc"]) if "oidc" in t else None,
        saml=_saml(c, (*p, "saml"), t["saml"]) if "saml" in t else None,
        publishers=tuple(publishers),
        session_ttl_s=c.number(
            (*p, "session_ttl_s"), t.get("session_ttl_s", 28800.0), 0, 30 * 86400.0, open_lo=True
        ),
        token_max_ttl_s=token_max_ttl,
        directory=c.optional(p, t, "directory", lambda q, v: _directory(c, q, v)),
    )


def _flag_value(c: _Checker, path: KeyPath, value: object, depth: int = 0) -> None:
    if depth > 8:
        c.fail(path, "is nested too deeply")
    if isinstance(value, str | bool | int | float):
        return
    if isinstance(value, list):
        for n, item in enumerate(value):
            _flag_value(c, (*path, n), item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flag_value(c, (*path, key), item, depth + 1)
        return
    c.fail(path, f"a flag setting cannot be {_type_name(value)}")


_TOP_KEYS = (
    "version",
    "default_tenant",
    "server",
    "storage",
    "database",
    "cache",
    "rate_limits",
    "telemetry",
    "logging",
    "audit",
    "ml",
    "flags",
    "tenants",
)


def _loads(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    try:
        import tomli
    except ImportError:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError(
            "reading the configuration needs Python 3.11+ (tomllib) or the 'tomli' package: "
            "pip install tomli"
        ) from None
    return tomli.loads(text)  # pragma: no cover


def parse(text: str, *, source: str = "<string>", base_dir: str | None = None) -> Config:
    """Validate schema v2 TOML ``text``. ``base_dir``: relative file paths are taken from there
    (:func:`load` passes the file's directory). Raises :class:`ConfigError` naming the source,
    line and key of the first problem."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", source=source)
    try:
        doc = _loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError: "... (at line 3, column 7)"
        found = re.search(r"at line (\d+)", str(exc))
        raise ConfigError(
            f"invalid TOML: {exc}", source=source, line=int(found.group(1)) if found else None
        ) from None
    except RecursionError:
        raise ConfigError("invalid TOML: nested too deeply", source=source) from None
    c = _Checker(text, source, base_dir)
    t = c.table((), doc, _TOP_KEYS)
    if "version" not in t:
        c.fail(
            ("version",),
            f"missing: a configuration file starts with 'version = {SCHEMA_VERSION}'; "
            f"to turn a serve command line (version 1) into one, run {_MIGRATE}",
        )
    version = t["version"]
    if type(version) is int and version == 1:
        c.fail(
            ("version",),
            f"version 1 is the serve command line, not a file: run {_MIGRATE}",
        )
    if type(version) is not int or version != SCHEMA_VERSION:
        c.fail(("version",), f"unsupported version {version!r} (this release reads version 2)")
    rate_limits = _rate_limits(c, t.get("rate_limits", {}))
    tenants_table = c.required((), t, "tenants")
    if not isinstance(tenants_table, dict) or not tenants_table:
        c.fail(("tenants",), "must be a table with at least one tenant ([tenants.NAME])")
    tenants: dict[str, TenantConfig] = {}
    for name, value in tenants_table.items():
        tenants[name] = _tenant(c, name, value, rate_limits.plans)
    _check_across(c, tenants)
    default_tenant = None
    if "default_tenant" in t:
        default_tenant = c.string(("default_tenant",), t["default_tenant"])
        if default_tenant not in tenants:
            c.fail(("default_tenant",), f"names no tenant ({', '.join(tenants)})")
    flags = t.get("flags", {})
    if not isinstance(flags, dict):
        c.fail(("flags",), f"must be a table, not {_type_name(flags)}")
    for key, item in flags.items():
        _flag_value(c, ("flags", key), item)
    server = _server(c, t.get("server", {}))
    if server.acme is not None:
        if server.tls == "plain-http":
            c.fail(
                ("server", "acme"), 'needs TLS: certificates are for tls = "self-signed" or "files"'
            )
        if not any(tc.domains for tc in tenants.values()):
            c.fail(("server", "acme"), "no tenant has domains to get certificates for")
    return Config(
        version=SCHEMA_VERSION,
        server=server,
        storage=_storage(c, c.required((), t, "storage")),
        rate_limits=rate_limits,
        tenants=MappingProxyType(tenants),
        flags=MappingProxyType(flags),
        source=source,
        default_tenant=default_tenant,
        database=_database(c, t.get("database", {})),
        cache=_cache(c, t.get("cache", {})),
        telemetry=_telemetry(c, t.get("telemetry", {})),
        logging=_logging(c, t.get("logging", {})),
        audit=_audit(c, t.get("audit", {})),
        ml=_ml(c, t["ml"]) if "ml" in t else None,
    )


def _check_across(c: _Checker, tenants: Mapping[str, TenantConfig]) -> None:
    """What must be unique across tenants: domains, path prefixes, storage directories."""
    domains: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    dirs: dict[str, str] = {}
    for name, tenant in tenants.items():
        for n, host in enumerate(tenant.domains):
            if host in domains:
                c.fail(
                    ("tenants", name, "domains", n),
                    f"{host!r} is already a domain of tenant {domains[host]!r}",
                )
            domains[host] = name
        for other, prefix in prefixes.items():
            if _overlaps(prefix, tenant.path_prefix):
                c.fail(
                    ("tenants", name, "path_prefix"),
                    f"{tenant.path_prefix!r} overlaps tenant {other!r} at {prefix!r}",
                )
        prefixes[name] = tenant.path_prefix
        d = tenant.directory if tenant.directory is not None else name
        for other, od in dirs.items():
            if _nested(od, d):
                c.fail(
                    ("tenants", name, "directory"),
                    f"storage directory {d!r} overlaps that of tenant {other!r}",
                )
        dirs[name] = d


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a configuration file: at most 1 MiB of UTF-8 (ConfigError otherwise)."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=source) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", source=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc})", source=source) from None


def load(path: str | os.PathLike[str]) -> Config:
    """Read and :func:`parse` a configuration file (at most 1 MiB of UTF-8); relative paths in
    it are taken from the file's directory."""
    source = os.fspath(path)
    text = read_text(source)
    return parse(text, source=source, base_dir=os.path.dirname(os.path.abspath(source)))
