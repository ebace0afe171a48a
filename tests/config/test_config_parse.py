"""parse()/load(): a valid two-tenant file, defaults, and one ConfigError naming source, line
and key for every kind of mistake (unknown keys, types, secrets, cross references)."""

from __future__ import annotations

import os
import textwrap

import pytest

from registry_core.config import (
    DEFAULT_PLANS,
    MAX_CONFIG_BYTES,
    IndexConfig,
    RoleGrant,
    TenantConfig,
    load,
    parse,
)
from registry_core.errors import ConfigError

EXAMPLE = textwrap.dedent(
    """\
    version = 2

    [server]
    host = "0.0.0.0"
    tls = "files"
    certfile = "tls/cert.pem"
    keyfile = "tls/key.pem"
    public_url = "https://registry.example.com"

    [storage]
    directory = "data"

    [rate_limits.plans.team]
    rate = 300

    [flags]
    QUIC_TRANSPORT = true

    [tenants.acme]
    plan = "team"
    domains = ["pypi.acme.test", "Packages.Acme.Test."]

    [[tenants.acme.indexes]]
    name = "main"

    [[tenants.acme.indexes]]
    name = "staging"
    public = true

    [tenants.acme.roles]
    "user:alice@acme.test" = ["owner@*"]
    "group:devs" = ["uploader@main", "reader@staging/Foo_Bar"]
    "publisher:gh-foo" = "uploader@main/foo"

    [tenants.acme.group_roles]
    engineering = ["maintainer@main"]

    [tenants.acme.oidc]
    issuer = "https://login.acme.test"
    client_id = "registry"
    client_secret_env = "ACME_OIDC_SECRET"

    [[tenants.acme.publishers]]
    name = "gh-foo"
    issuer = "https://token.actions.githubusercontent.com"
    index = "main"
    project = "Foo"
    repository = "acme/foo"
    workflow = "release.yml"
    claims = { repository_owner = "acme" }

    [tenants.globex]
    domains = ["pypi.globex.test"]
    saml = { entity_id = "https://pypi.globex.test/_/saml/metadata", idp_metadata = "idp.xml" }
    """
)


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, source="c.toml")
    return caught.value


def _line(text: str, needle: str) -> int:
    found = [n for n, line in enumerate(text.split("\n"), 1) if needle in line]
    assert found, needle
    return found[-1]  # the replacement comes after what it could be confused with


def test_example_parses_with_defaults_filled_in():
    c = parse(EXAMPLE, source="c.toml")
    assert c.version == 2 and c.source == "c.toml" and c.default_tenant is None
    assert c.server.tls == "files" and c.server.port == 8443 and c.server.http3
    assert c.server.url() == "https://registry.example.com"
    assert c.rate_limits.plans["team"].rate == 300.0
    assert c.rate_limits.plans["team"].burst == DEFAULT_PLANS["team"].burst  # inherited
    assert set(c.rate_limits.plans) == {"free", "team", "enterprise"}
    assert dict(c.flags) == {"QUIC_TRANSPORT": True}
    acme, globex = c.tenants["acme"], c.tenants["globex"]
    assert acme.domains == ("pypi.acme.test", "packages.acme.test")
    assert acme.path_prefix == "/t/acme" and not acme.public
    assert acme.indexes == (
        IndexConfig("main", "/main"),
        IndexConfig("staging", "/staging", public=True),
    )
    assert acme.is_public("staging") and not acme.is_public("main")
    assert acme.roles == tuple(
        sorted(
            [
                RoleGrant("user:alice@acme.test", "owner", "*"),
                RoleGrant("group:devs", "uploader", "main"),
                RoleGrant("group:devs", "reader", "staging/foo-bar"),
                RoleGrant("publisher:gh-foo", "uploader", "main/foo"),
            ]
        )
    )
    assert dict(acme.group_roles) == {"engineering": ("maintainer@main",)}
    assert acme.oidc is not None and acme.oidc.scopes == ("openid", "email", "profile")
    (pub,) = acme.publishers
    assert pub.project == "foo" and dict(pub.claims) == {"repository_owner": "acme"}
    assert globex.plan == "free" and globex.indexes == (IndexConfig("main", "/main"),)
    assert globex.saml is not None and globex.saml.clock_skew_s == 60.0
    assert c.tenant_directory("acme") == "data/acme"
    assert c.index_directory("acme", "staging") == "data/acme/staging"
    with pytest.raises(KeyError):
        c.index_directory("acme", "nope")


def test_tenant_dataclass_defaults():
    t = TenantConfig("acme")
    assert t.path_prefix == "/t/acme" and t.indexes == (IndexConfig("main", "/main"),)


def test_load_takes_relative_paths_from_the_files_directory(tmp_path):
    path = tmp_path / "etc" / "registry.toml"
    path.parent.mkdir()
    path.write_text(EXAMPLE)
    c = load(path)
    base = str(path.parent)
    assert c.source == str(path)
    assert c.storage.directory == os.path.join(base, "data")
    assert c.server.certfile == os.path.join(base, "tls/cert.pem")
    assert c.tenants["globex"].saml.idp_metadata == os.path.join(base, "idp.xml")
    assert c == parse(
        EXAMPLE.replace('"data"', f'"{base}/data"')
        .replace('"tls/', f'"{base}/tls/')
        .replace('"idp.xml"', f'"{base}/idp.xml"')
    )


@pytest.mark.parametrize(
    ("old", "new", "key", "needle", "message"),
    [
        # unknown keys, with the closest known one
        ('plan = "team"', 'plan = "team"\nplann = 1', "tenants.acme.plann", "plann", "'plan'"),
        ("public = true", "publc = true", "tenants.acme.indexes[1].publc", "publc", "'public'"),
        ("[storage]", "[storge]\n[storage]", "storge", "[storge]", "'storage'"),
        # strict types
        ('host = "0.0.0.0"', "host = 1", "server.host", "host = 1", "string"),
        ('host = "0.0.0.0"', 'host = "0.0.0.0"\nport = true', "server.port", "port", "integer"),
        ('host = "0.0.0.0"', 'host = "0.0.0.0"\nport = 70000', "server.port", "port", "65535"),
        ("rate = 300", 'rate = "300"', "rate_limits.plans.team.rate", "rate =", "number"),
        ("rate = 300", "rate = 0", "rate_limits.plans.team.rate", "rate =", "greater than 0"),
        ("rate = 300", "rate = 3\nburst = 1.5", "rate_limits.plans.team.burst", "burst", "integer"),
        ("public = true", "public = 1", "tenants.acme.indexes[1].public", "public = 1", "true or"),
        # inline secrets
        (
            'client_secret_env = "ACME_OIDC_SECRET"',
            'client_secret = "hunter2"',
            "tenants.acme.oidc.client_secret",
            "client_secret =",
            "inline secrets are refused",
        ),
        (
            "[storage]",
            '[rate_limits]\nbackend = "redis"\nredis_url = "redis://:pw@r:6379"\n[storage]',
            "rate_limits.redis_url",
            "redis_url",
            "inline secrets are refused",
        ),
        (
            'public_url = "https://registry.example.com"',
            'public_url = "https://u:p@registry.example.com"',
            "server.public_url",
            "public_url",
            "credentials",
        ),
        # cross references
        ('plan = "team"', 'plan = "gold"', "tenants.acme.plan", 'plan = "gold"', "unknown plan"),
        (
            '"reader@staging/Foo_Bar"',
            '"reader@stagin/x"',
            '"group:devs"[1]',
            "group:devs",
            "did you mean 'staging'",
        ),
        ('"owner@*"', '"ownr@*"', '"user:alice@acme.test"[0]', "user:alice", "did you mean"),
        ('"owner@*"', '"owner"', '"user:alice@acme.test"[0]', "user:alice", "ROLE@RESOURCE"),
        ('"owner@*"', '"owner@main/"', '"user:alice@acme.test"[0]', "user:alice", "project"),
        (
            '"publisher:gh-foo"',
            '"publisher:gh-bar"',
            '"publisher:gh-bar"',
            "gh-bar",
            "no publisher",
        ),
        ('"group:devs"', '"devs"', "roles.devs", "devs", "subject"),
        ('"maintainer@main"', '"maintainer@prod"', "engineering[0]", "engineering", "no index"),
        ('index = "main"', 'index = "prod"', "publishers[0].index", 'index = "prod"', "no index"),
        (
            '"pypi.globex.test"',
            '"pypi.acme.test"',
            "tenants.globex.domains[0]",
            'domains = ["pypi.acme.test"]',
            "already a domain of tenant 'acme'",
        ),
        ('"pypi.globex.test"', '"pypi.globex.test:443"', "domains[0]", "globex.test:", "port"),
        ('"pypi.globex.test"', '"bad_host.test"', "domains[0]", "bad_host", "not a valid host"),
        (
            '"pypi.globex.test"',
            '"pypi.globex.test", "PYPI.globex.test"',
            "domains[1]",
            "PYPI.globex",
            "twice",
        ),
        ('name = "staging"', 'name = "main"', "indexes[1].name", 'name = "main"', "twice"),
        ('name = "staging"', 'name = "Staging"', "indexes[1].name", "Staging", "valid index name"),
        (
            'name = "staging"',
            'name = "staging"\npath = "/main/x"',
            "indexes[1].path",
            "/main/x",
            "overlaps index 'main'",
        ),
        (
            'name = "staging"',
            'name = "staging"\npath = "/_/x"',
            "indexes[1].path",
            "/_/x",
            "reserved",
        ),
        (
            'name = "staging"',
            'name = "staging"\npath = "/a/"',
            "indexes[1].path",
            '"/a/"',
            "URL path",
        ),
        (
            'name = "staging"',
            'name = "staging"\npath = ""',
            "indexes[1].path",
            'path = ""',
            "overlaps",
        ),
        (
            'name = "staging"',
            'name = "staging"\ndirectory = "main"',
            "indexes[1].directory",
            "directory",
            "overlaps",
        ),
        (
            'name = "staging"',
            'name = "staging"\ndirectory = "../x"',
            "indexes[1].directory",
            "directory",
            "relative directory",
        ),
        (
            "[tenants.globex]",
            '[tenants.globex]\npath_prefix = "/t/acme/x"',
            "tenants.globex.path_prefix",
            "/t/acme/x",
            "/t/<name> only",
        ),
        (
            "[tenants.globex]",
            '[tenants.globex]\ndirectory = "acme"',
            "tenants.globex.directory",
            'directory = "acme"',
            "overlaps that of tenant 'acme'",
        ),
        (
            "[tenants.globex]",
            "[tenants.Globex]",
            "tenants.Globex",
            "[tenants.Globex]",
            "valid tenant name",
        ),
        # URLs
        (
            'issuer = "https://login.acme.test"',
            'issuer = "http://login.acme.test"',
            "tenants.acme.oidc.issuer",
            "http://login",
            "https://",
        ),
        (
            'issuer = "https://login.acme.test"',
            'issuer = "http://login.acme.test"\nallow_http = true',
            "tenants.acme.oidc.issuer",
            "http://login",
            "loopback",
        ),
        (
            'issuer = "https://login.acme.test"',
            'issuer = "https://login.acme.test/?a=b"',
            "oidc.issuer",
            "?a=b",
            "query",
        ),
        (
            'issuer = "https://token.actions',
            'issuer = "ftp://token.actions',
            "publishers[0].issuer",
            "ftp://",
            "https://",
        ),
        # publishers must constrain the token
        (
            'repository = "acme/foo"\nworkflow = "release.yml"\n'
            'claims = { repository_owner = "acme" }',
            'workflow = "release.yml"',
            "tenants.acme.publishers[0]",
            "[[tenants.acme.publishers]]",
            "must constrain",
        ),
        (
            'workflow = "release.yml"',
            'workflow = ".github/workflows/release.yml"',
            "publishers[0].workflow",
            "workflow =",
            "file name",
        ),
        # server
        (
            'tls = "files"\ncertfile = "tls/cert.pem"\nkeyfile = "tls/key.pem"',
            'tls = "plain-http"',
            "server.tls",
            "plain-http",
            "loopback",
        ),
        ('tls = "files"', 'tls = "self-signd"', "server.tls", "self-signd", "'self-signed'"),
        ('keyfile = "tls/key.pem"\n', "", "server.keyfile", "[server]", "missing"),
        (
            'host = "0.0.0.0"',
            'host = "0.0.0.0"\nread_timeout = "never"',
            "server.read_timeout",
            "read_timeout",
            '"off"',
        ),
        # oidc / saml shapes
        (
            'client_id = "registry"\n',
            "",
            "tenants.acme.oidc.client_id",
            "[tenants.acme.oidc]",
            "missing",
        ),
        (
            'client_id = "registry"',
            'client_id = "registry"\nscopes = ["email"]',
            "oidc.scopes",
            "scopes",
            "openid",
        ),
        (
            'client_secret_env = "ACME_OIDC_SECRET"',
            'client_secret_env = "not a name"',
            "oidc.client_secret_env",
            "not a name",
            "environment variable",
        ),
        (
            'idp_metadata = "idp.xml"',
            'idp_metadata = "idp.xml", clock_skew_s = 301',
            "saml.clock_skew_s",
            "clock_skew_s",
            "300",
        ),
        (
            'idp_metadata = "idp.xml"',
            'idp_metadata = "idp.xml", sp_certfile = "c.pem"',
            "saml.sp_keyfile",
            "sp_certfile",
            "both",
        ),
        (
            "QUIC_TRANSPORT = true",
            "QUIC_TRANSPORT = 1979-05-27",
            "flags.QUIC_TRANSPORT",
            "QUIC_TRANSPORT",
            "flag setting",
        ),
    ],
)
def test_mistakes_name_their_key_and_line(old, new, key, needle, message):
    assert old in EXAMPLE
    text = EXAMPLE.replace(old, new, 1)
    err = _error(text)
    assert err.source == "c.toml"
    assert err.key.endswith(key), err
    assert err.line == _line(text, needle), err
    assert str(err).startswith(f"c.toml:{err.line}: {err.key}: ")
    if message is not None:
        assert message in str(err)


def test_control_characters_and_long_strings_refused():
    assert "control" in str(
        _error(EXAMPLE.replace('client_id = "registry"', 'client_id = "a\\u0001"'))
    )
    long = "x" * 5000
    assert "longer" in str(
        _error(EXAMPLE.replace('client_id = "registry"', f'client_id = "{long}"'))
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage]\ndirectory = 'x'\n", "registry-core config migrate"),
        ("version = 1\n", "version 1 is the serve command line"),
        ("version = 3\n", "unsupported version 3"),
        ("version = 2.0\n", "unsupported version"),
        ("version = true\n", "unsupported version"),
    ],
)
def test_version(text, message):
    err = _error(text)
    assert err.key == "version" and message in str(err)


def test_invalid_toml_names_the_line():
    err = _error("version = 2\n\n[server\n")
    assert err.line == 3 and "invalid TOML" in str(err)


def test_missing_sections():
    assert _error("version = 2\n").key == "tenants"
    assert _error("version = 2\n[tenants]\n").key == "tenants"
    err = _error("version = 2\n[tenants.a]\n")
    assert err.key == "storage" and "missing" in str(err)
    assert (
        _error("version = 2\ndefault_tenant = 'b'\n[storage]\ndirectory='d'\n[tenants.a]\n").key
        == "default_tenant"
    )


def test_subjects():
    base = "version = 2\n[storage]\ndirectory = '/srv'\n[tenants.a.roles]\n"
    c = parse(base + '"group:Release Managers" = "maintainer@main"\n')
    assert c.tenants["a"].roles[0].subject == "group:Release Managers"
    for bad in ('"user:a b"', '"user: a"', '"user:"', '"robot:x"', '"everyone"'):
        err = _error(base + f'{bad} = "reader@main"\n')
        assert err.line == 5 and "subject" in str(err), bad


def test_minimal_file():
    c = parse("version = 2\n[storage]\ndirectory = '/srv'\n[tenants.a]\n")
    assert c.server.tls == "self-signed" and c.rate_limits.backend == "memory"
    assert list(c.tenants) == ["a"] and c.tenants["a"].indexes[0].path == "/main"
    assert c.server.url() == "https://127.0.0.1:8443"


def test_redis_backend_needs_a_url_and_the_env_variant_is_read_at_run_time(monkeypatch):
    base = "version = 2\n[storage]\ndirectory = '/srv'\n[tenants.a]\n[rate_limits]\n"
    assert "needs redis_url" in str(_error(base + 'backend = "redis"\n'))
    assert "only with backend" in str(_error(base + 'redis_url = "redis://r"\n'))
    c = parse(base + 'backend = "redis"\nredis_url_env = "RC_REDIS"\n')
    monkeypatch.setenv("RC_REDIS", "redis://:pw@r:6379/0")
    assert c.rate_limits.read_redis_url() == "redis://:pw@r:6379/0"
    monkeypatch.delenv("RC_REDIS")
    with pytest.raises(ConfigError, match="RC_REDIS is not set"):
        c.rate_limits.read_redis_url()


def test_oidc_secret_is_read_from_env_or_file_never_stored(tmp_path, monkeypatch):
    c = parse(EXAMPLE)
    oidc = c.tenants["acme"].oidc
    monkeypatch.setenv("ACME_OIDC_SECRET", "s3cret")
    assert oidc.read_client_secret() == "s3cret"
    assert "s3cret" not in repr(c)
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    text = EXAMPLE.replace(
        'client_secret_env = "ACME_OIDC_SECRET"', f'client_secret_file = "{secret}"'
    )
    assert parse(text).tenants["acme"].oidc.read_client_secret() == "from-file"


def test_load_bounds(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"version = 2\n\xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load(binary)
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load(tmp_path / "missing.toml")
    assert caught.value.source == str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="larger than"):
        parse("#" * (MAX_CONFIG_BYTES + 1))


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(ConfigError):
        parse("version = 2\n[flags]\nX = " + "[" * 5000 + "]" * 5000 + "\n")


def _doc_blocks() -> list[str]:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    return [block.split("```", 1)[0] for block in doc.split("```toml\n")[1:]]


def test_the_documented_two_tenant_example_is_valid():
    (example,) = [b for b in _doc_blocks() if "# acme: private" in b]
    c = parse(example)
    assert set(c.tenants) == {"acme", "globex"}
    assert c.rate_limits.redis_url_env == "REGISTRY_REDIS_URL"


def test_the_documented_growth_of_a_migrated_file_is_valid():
    (grown,) = [b for b in _doc_blocks() if 'directory = "/srv"' in b]
    c = parse("version = 2\ndefault_tenant = 'default'\n" + grown)
    assert c.tenant_directory("default") == "/srv/index"
    assert c.index_directory("default", "main") == "/srv/index"
    assert c.index_directory("acme", "main") == "/srv/acme/main"
    with pytest.raises(ConfigError, match="overlaps that of tenant 'default'"):
        parse("version = 2\n" + grown.replace('directory = "index"', 'directory = "."'))
