"""Telemetry.wrap around the tenant-aware apps over a real loopback server (hypercorn via
start_server, httpx): the request span, the metrics and the JSON access line carry the tenant
MultiTenantApp (or AuthMiddleware) resolved and the authenticated subject, and the app's own
``registry_core.server.access`` line is left out (one line per request)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from registry_core.auth import Scope, TenantStore
from registry_core.config import parse
from registry_core.index import Index
from registry_core.server import AuthMiddleware, IndexApp, MultiTenantApp, start_server
from registry_core.telemetry import Telemetry

CONFIG = """
version = 2
[server]
tls = "plain-http"
[storage]
directory = "{root}"

[tenants.acme]
public = true
[[tenants.acme.indexes]]
name = "main"
[tenants.acme.roles]
"user:alice" = ["owner@*"]
"""


def _line(lines, request_id):
    found = [json.loads(x) for x in lines if request_id in x]
    assert len(found) == 1, lines
    return found[0]


def _span(telemetry, exporter, request_id):
    assert telemetry.force_flush(10)
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes.get("registry_core.request_id") == request_id
    ]
    assert len(found) == 1
    return found[0]


@pytest.fixture
def wrapped(tmp_path):
    config = parse(CONFIG.format(root=tmp_path / "root"), source="test")
    app = MultiTenantApp(config)
    exporter = InMemorySpanExporter()
    lines: list[str] = []
    telemetry = Telemetry(span_exporter=exporter, access_log=lines.append)
    try:
        handle = start_server(telemetry.wrap(app), tls=False)
    except BaseException:
        app.close()
        raise
    token = app.tenants["acme"].store.create_token(
        owner="user:alice", scopes=[Scope.parse("acme", "read:*")]
    )[0]
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as client:
            yield client, telemetry, exporter, lines, token
    finally:
        handle.stop()
        telemetry.shutdown()
        app.close()


def test_multi_tenant_request_span_metrics_and_access_line_carry_the_tenant(wrapped, caplog):
    client, telemetry, exporter, lines, token = wrapped
    with caplog.at_level(logging.INFO, logger="registry_core.server.access"):
        signed = client.get("/t/acme/main/simple/", headers={"authorization": f"Bearer {token}"})
        anonymous = client.get("/t/acme/main/simple/")
        unknown = client.get("/t/nope/")
    assert (signed.status_code, anonymous.status_code, unknown.status_code) == (200, 200, 404)

    span = _span(telemetry, exporter, signed.headers["x-request-id"])
    assert span.attributes["registry_core.tenant"] == "acme"
    assert span.name == "GET /simple/"
    line = _line(lines, signed.headers["x-request-id"])
    assert (line["tenant"], line["subject"], line["route"]) == ("acme", "user:alice", "/simple/")
    assert token not in "".join(lines)

    line = _line(lines, anonymous.headers["x-request-id"])
    assert (line["tenant"], line["subject"]) == ("acme", "-")
    line = _line(lines, unknown.headers["x-request-id"])
    assert line["tenant"] == "-"  # an unknown tenant's name is not a label
    assert 'tenant="acme"' in telemetry.metrics_text().decode()
    assert 'tenant="nope"' not in telemetry.metrics_text().decode()
    # telemetry wrote the line: MultiTenantApp's own access line is left out
    assert not [r for r in caplog.records if r.name == "registry_core.server.access"]


def test_without_an_access_line_of_telemetry_the_apps_own_line_stays(tmp_path, caplog):
    config = parse(CONFIG.format(root=tmp_path / "root"), source="test")
    app = MultiTenantApp(config)
    telemetry = Telemetry(access_log=False, metrics=False)
    handle = start_server(telemetry.wrap(app), tls=False)
    try:
        with (
            caplog.at_level(logging.INFO, logger="registry_core.server.access"),
            httpx.Client(base_url=handle.url(), timeout=30) as client,
        ):
            assert client.get("/t/acme/main/simple/").status_code == 200
    finally:
        handle.stop()
        app.close()
    records = [r for r in caplog.records if r.name == "registry_core.server.access"]
    assert [(r.tenant, r.status) for r in records] == [("acme", 200)]


def test_auth_middleware_annotates_its_tenant_and_subject(tmp_path):
    store = TenantStore(tmp_path / "tenant.sqlite3", tenant="default")
    (tmp_path / "idx").mkdir()
    index = Index(tmp_path / "idx", auth=store)
    raw, _ = index.create_token()
    index_app = IndexApp(index)
    exporter = InMemorySpanExporter()
    lines: list[str] = []
    telemetry = Telemetry(span_exporter=exporter, access_log=lines.append, metrics=False)
    handle = start_server(telemetry.wrap(AuthMiddleware(index_app, store)), tls=False)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as client:
            r = client.get("/simple/", headers={"authorization": f"Bearer {raw}"})
            assert r.status_code == 200
        rid = r.headers["x-request-id"]
        assert _span(telemetry, exporter, rid).attributes["registry_core.tenant"] == "default"
        line = _line(lines, rid)
        assert line["tenant"] == "default" and line["subject"] not in ("-", "anonymous")
        assert raw not in "".join(lines)
    finally:
        handle.stop()
        telemetry.shutdown()
        index_app.close()
        index.close()
        store.close()
