"""Issue 15's sections: [database], [storage] S3 keys, [cache], [telemetry], [logging],
[audit], [server.acme] and the drain timeout: defaults, a full file, secrets only through
*_env / *_file keys, and one ConfigError naming the key and line of each mistake."""

from __future__ import annotations

import textwrap

import pytest

from registry_core.config import dump, load, parse
from registry_core.errors import ConfigError

BASE = 'version = 2\n[storage]\ndirectory = "data"\n[tenants.acme]\n'

FULL = textwrap.dedent(
    """\
    version = 2

    [server]
    host = "127.0.0.1"
    tls = "self-signed"
    drain_timeout_s = 12.5
    certificates = "certs"

    [server.acme]
    directory_url = "https://127.0.0.1:14000/dir"
    email = "ops@acme.test"
    challenge = "http-01"
    ca_bundle = "pebble.pem"

    [storage]
    directory = "state"
    backend = "s3"
    bucket = "registry-dists"
    prefix = "prod/"
    endpoint_url = "http://127.0.0.1:5000"
    region = "us-east-1"
    multipart_threshold = 16777216

    [database]
    backend = "postgresql"
    url_env = "RC_DSN"

    [cache]
    backend = "redis"
    redis_url = "redis://127.0.0.1:6379/2"

    [telemetry]
    otlp_endpoint = "http://127.0.0.1:4318"
    allow_http = true
    service_name = "registry-a"
    sample_ratio = 0.25
    metrics = false

    [logging]
    access_log = "json"

    [audit]
    enabled = true
    sign = true

    [tenants.acme]
    domains = ["pypi.acme.test"]
    """
)


def test_defaults_are_the_single_machine_setup():
    c = parse(BASE)
    assert c.storage.backend == "directory" and c.storage.bucket is None
    assert c.database.backend == "sqlite" and c.database.read_url() is None
    assert c.cache.backend == "local" and c.cache.read_redis_url() is None
    assert c.telemetry.otlp_endpoint is None and c.telemetry.metrics is True
    assert c.telemetry.sample_ratio == 1.0 and c.telemetry.service_name == "registry-core"
    assert c.logging.access_log == "off"
    assert c.audit.enabled is True and c.audit.sign is False
    assert c.server.acme is None and c.server.certificates is None
    assert c.server.drain_timeout_s == 30.0


def test_full_file(tmp_path, monkeypatch):
    path = tmp_path / "registry.toml"
    path.write_text(FULL)
    c = load(path)
    assert c.server.drain_timeout_s == 12.5
    assert c.server.certificates == str(tmp_path / "certs")
    acme = c.server.acme
    assert acme is not None and acme.challenge == "http-01"
    assert acme.ca_bundle == str(tmp_path / "pebble.pem")
    assert acme.email == "ops@acme.test"
    s = c.storage
    assert (s.backend, s.bucket, s.prefix, s.region) == (
        "s3",
        "registry-dists",
        "prod/",
        "us-east-1",
    )
    assert s.endpoint_url == "http://127.0.0.1:5000" and s.multipart_threshold == 16 << 20
    assert c.cache.read_redis_url() == "redis://127.0.0.1:6379/2"
    t = c.telemetry
    assert (t.otlp_endpoint, t.service_name, t.sample_ratio, t.metrics) == (
        "http://127.0.0.1:4318",
        "registry-a",
        0.25,
        False,
    )
    assert c.logging.access_log == "json" and c.audit.sign is True
    # the DSN (which may hold a password) is read when asked, never kept in the Config
    monkeypatch.setenv("RC_DSN", "postgresql://u:pw@127.0.0.1:5432/rc")
    assert c.database.read_url() == "postgresql://u:pw@127.0.0.1:5432/rc"
    assert "pw" not in repr(c) and "pw" not in dump(c)
    assert parse(dump(c)) == c


def test_database_url_file_is_read_at_run_time(tmp_path):
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://u:s3cr3t@db/rc\n")
    c = parse(BASE + f'[database]\nbackend = "postgresql"\nurl_file = "{secret}"\n')
    assert c.database.read_url() == "postgresql://u:s3cr3t@db/rc"
    plain = parse(BASE + '[database]\nbackend = "postgresql"\nurl = "postgresql://rc@db/rc"\n')
    assert plain.database.read_url() == "postgresql://rc@db/rc"


def test_a_missing_dsn_variable_is_an_error_not_an_empty_secret(monkeypatch):
    monkeypatch.delenv("RC_NOPE", raising=False)
    c = parse(BASE + '[database]\nbackend = "postgresql"\nurl_env = "RC_NOPE"\n')
    with pytest.raises(ConfigError, match="RC_NOPE is not set"):
        c.database.read_url()


@pytest.mark.parametrize(
    ("section", "key", "needle"),
    [
        ('[database]\nbackend = "postgresql"\n', "database.backend", "needs url"),
        ('[database]\nbackend = "mysql"\n', "database.backend", "'sqlite'"),
        ('[database]\nurl = "postgresql://rc@db/rc"\n', "database.url", "only with"),
        (
            '[database]\nbackend = "postgresql"\nurl = "postgresql://rc:pw@db/rc"\n',
            "database.url",
            "inline secrets",
        ),
        (
            '[database]\nbackend = "postgresql"\nurl = "postgresql://db/rc?password=x"\n',
            "database.url",
            "inline secrets",
        ),
        (
            '[database]\nbackend = "postgresql"\nurl = "mysql://db/rc"\n',
            "database.url",
            "postgresql://",
        ),
        (
            '[database]\nbackend = "postgresql"\nurl = "postgresql://db/rc"\nurl_env = "X"\n',
            "database.url_env",
            "one of",
        ),
        ('[database]\npassword = "x"\n', "database.password", "inline secrets"),
        ('[cache]\nbackend = "redis"\n', "cache.backend", "needs redis_url"),
        ('[cache]\nredis_url = "redis://h"\n', "cache.redis_url", "only with"),
        (
            '[cache]\nbackend = "redis"\nredis_url = "redis://:pw@h"\n',
            "cache.redis_url",
            "inline secrets",
        ),
        ('[cache]\nbackend = "memcached"\n', "cache.backend", "'local'"),
        (
            '[telemetry]\notlp_endpoint = "http://collector:4318"\n',
            "telemetry.otlp_endpoint",
            "https",
        ),
        (
            '[telemetry]\notlp_endpoint = "https://u:p@collector"\n',
            "telemetry.otlp_endpoint",
            "credentials",
        ),
        ("[telemetry]\nsample_ratio = 1.5\n", "telemetry.sample_ratio", "at most 1"),
        ('[telemetry]\nmetrics = "yes"\n', "telemetry.metrics", "true or false"),
        ('[telemetry]\napi_key = "k"\n', "telemetry.api_key", "inline secrets"),
        ('[logging]\naccess_log = "text"\n', "logging.access_log", "'json'"),
        (
            '[telemetry]\nmetrics_token_env = "A"\nmetrics_token_file = "t"\n',
            "telemetry.metrics_token_file",
            "not both",
        ),
        ('[telemetry]\nmetrics_token = "abc"\n', "telemetry.metrics_token", "inline secrets"),
        ("[audit]\nenabled = 1\n", "audit.enabled", "true or false"),
        ("[audit]\nkeyring = 1\n", "audit.keyring", "unknown key"),
    ],
)
def test_operations_mistakes(section, key, needle):
    with pytest.raises(ConfigError) as info:
        parse(BASE + section, source="r.toml")
    assert info.value.key == key and needle in str(info.value)
    assert info.value.line is not None and str(info.value).startswith(f"r.toml:{info.value.line}:")


S3 = 'version = 2\n[tenants.acme]\n[storage]\ndirectory = "d"\n'


@pytest.mark.parametrize(
    ("lines", "key", "needle"),
    [
        ('bucket = "b1"\n', "storage.bucket", 'only with backend = "s3"'),
        ('backend = "s3"\n', "storage.bucket", "missing"),
        ('backend = "s3"\nbucket = "Not_A_Bucket"\n', "storage.bucket", "not a valid S3 bucket"),
        ('backend = "s3"\nbucket = "ok-b"\nprefix = "/abs"\n', "storage.prefix", "relative"),
        ('backend = "s3"\nbucket = "ok-b"\nprefix = "a/../b"\n', "storage.prefix", "'..'"),
        (
            'backend = "s3"\nbucket = "ok-b"\nendpoint_url = "http://s3.example"\n',
            "storage.endpoint_url",
            "loopback",
        ),
        (
            'backend = "s3"\nbucket = "ok-b"\nmultipart_threshold = 1024\n',
            "storage.multipart_threshold",
            "between",
        ),
        ('backend = "s3"\nbucket = "ok-b"\nsecret_key = "x"\n', "storage.secret_key", "unknown"),
        ('backend = "gcs"\n', "storage.backend", "'directory'"),
    ],
)
def test_storage_mistakes(lines, key, needle):
    with pytest.raises(ConfigError) as info:
        parse(S3 + lines, source="r.toml")
    assert info.value.key == key and needle in str(info.value)
    assert info.value.line is not None


ACME = BASE + "[server.acme]\n"


@pytest.mark.parametrize(
    ("lines", "key", "needle"),
    [
        ('email = "a@b.test"\n', "server.acme.directory_url", "missing"),
        ('directory_url = "https://ca.test/dir"\n', "server.acme.email", "missing"),
        (
            'directory_url = "https://ca.test/dir"\nemail = "nobody"\n',
            "server.acme.email",
            "not an e-mail",
        ),
        (
            'directory_url = "http://127.0.0.1:14000/dir"\nemail = "a@b.test"\n',
            "server.acme.directory_url",
            "allow_http",
        ),
        (
            'directory_url = "https://ca.test/dir"\nemail = "a@b.test"\n'
            'challenge = "tls-alpn-01"\n',
            "server.acme.challenge",
            "'http-01'",
        ),
        (
            'directory_url = "https://ca.test/dir"\nemail = "a@b.test"\naccount_key = "k"\n',
            "server.acme.account_key",
            "unknown",
        ),
    ],
)
def test_acme_mistakes(lines, key, needle):
    with pytest.raises(ConfigError) as info:
        parse(ACME + lines, source="r.toml")
    assert info.value.key == key and needle in str(info.value)


def test_acme_needs_tls_and_domains():
    acme = '[server.acme]\ndirectory_url = "https://ca.test/d"\nemail = "a@b.test"\n'
    with pytest.raises(ConfigError, match="no tenant has domains") as info:
        parse(BASE + acme)
    assert info.value.key == "server.acme"
    with_domain = BASE + 'domains = ["pypi.acme.test"]\n'
    with pytest.raises(ConfigError, match="needs TLS"):
        parse(with_domain + '[server]\ntls = "plain-http"\n' + acme)
    c = parse(with_domain + acme + "http_port = 8080\n")
    assert c.server.acme is not None and c.server.acme.http_port == 8080


def test_drain_timeout_bounds():
    with pytest.raises(ConfigError, match="drain_timeout_s"):
        parse(BASE + "[server]\ndrain_timeout_s = -1\n")
    assert parse(BASE + "[server]\ndrain_timeout_s = 0\n").server.drain_timeout_s == 0.0
