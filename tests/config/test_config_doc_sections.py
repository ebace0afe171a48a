"""The per-section examples of docs/configuration.md for the keys of issue 15 ([database],
[storage] on S3, [cache], [telemetry], [logging], [audit], [server] drain and certificates,
[server.acme]) parse, and mean what the page says. (The two-tenant and migration examples are
checked in test_config_parse.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_core.config import parse

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def _blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```toml\n")[1:]]


def _example(marker: str):
    """The one example containing ``marker``, completed into a file (version, storage and a
    tenant added when the example does not give them) and parsed."""
    found = [b for b in _blocks() if marker in b]
    assert len(found) == 1, f"{marker!r}: {len(found)} examples"
    block = found[0]
    head = "version = 2\n"
    if "[storage]" not in block:
        head += '[storage]\ndirectory = "/srv/registry"\n'
    tail = "" if "[tenants." in block else "\n[tenants.acme]\n"
    return parse(head + block + tail, source="docs/configuration.md")


def test_server_drain_and_certificates_example():
    s = _example("drain_timeout_s = 60").server
    assert s.drain_timeout_s == 60.0 and s.certificates == "/etc/registry/certs"
    assert s.tls == "files" and s.acme is None


def test_server_acme_example():
    acme = _example("[server.acme]").server.acme
    assert acme is not None and acme.email == "ops@acme.example"
    assert acme.challenge == "http-01" and acme.http_port == 80


def test_storage_s3_example():
    st = _example('backend = "s3"').storage
    assert (st.backend, st.bucket, st.prefix, st.region) == (
        "s3",
        "acme-packages",
        "registry/",
        "eu-west-1",
    )
    assert st.multipart_threshold == 8 << 20


@pytest.mark.parametrize(
    ("marker", "check"),
    [
        ("[database]", lambda c: c.database.url_env == "REGISTRY_DATABASE_URL"),
        ("[cache]", lambda c: c.cache.redis_url == "rediss://redis.internal:6380/1"),
        ("[logging]", lambda c: c.logging.access_log == "json"),
        ("[audit]", lambda c: c.audit.enabled and c.audit.sign),
        (
            "[telemetry]",
            lambda c: (c.telemetry.sample_ratio, c.telemetry.metrics_token_file)
            == (0.1, "/etc/registry/metrics-token"),
        ),
    ],
)
def test_section_examples(marker, check):
    assert check(_example(marker))


def test_every_new_key_is_documented():
    from registry_core.config import (
        AcmeConfig,
        AuditConfig,
        CacheConfig,
        DatabaseConfig,
        LoggingConfig,
        StorageConfig,
        TelemetryConfig,
    )

    text = DOC.read_text(encoding="utf-8")
    keys = {"drain_timeout_s", "certificates"}
    for cls in (
        AcmeConfig,
        AuditConfig,
        CacheConfig,
        DatabaseConfig,
        LoggingConfig,
        StorageConfig,
        TelemetryConfig,
    ):
        keys.update(cls.__dataclass_fields__)
    missing = sorted(k for k in keys if f"| `{k}`" not in text)
    assert not missing, missing
