"""Telemetry.wrap over a real loopback server (hypercorn via start_server, httpx): the request
span and its children (the upload span inside IndexApp), the route templates, the metrics and
who may scrape them, /healthz and /readyz, the JSON access log (never a token, a cookie or a
query string), the lifespan passed through, and a failing app recorded as an error.

Spans are read from OpenTelemetry's InMemorySpanExporter (the SDK's own exporter); the
collector test (test_telemetry_collector.py) runs them through a real OTLP collector."""

from __future__ import annotations

import hashlib
import json
import threading

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from _dists import make_wheel
from registry_core.index import Index
from registry_core.server import IndexApp, start_server
from registry_core.telemetry import Telemetry, annotate, route_template, span

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
TOKEN_LIKE = "Z" * 40
METRICS_TOKEN = "metrics-secret-" + "m" * 20


def _form(blob):
    return {
        "data": {
            ":action": "file_upload",
            "protocol_version": "1",
            "sha256_digest": hashlib.sha256(blob).hexdigest(),
        },
        "files": {"content": (WHEEL, blob)},
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("wrap")
    (root / "store").mkdir()
    index = Index(root / "store")
    raw, _ = index.create_token()
    app = IndexApp(index, serial_ttl=0)
    exporter = InMemorySpanExporter()
    lines: list[str] = []
    ready = threading.Event()
    ready.set()
    telemetry = Telemetry(
        span_exporter=exporter, access_log=lines.append, metrics_token=METRICS_TOKEN
    )
    handle = start_server(telemetry.wrap(app, ready=ready.is_set), tls=False)
    client = httpx.Client(base_url=handle.url(), timeout=30)
    try:
        r = client.post("/legacy/", auth=("__token__", raw), **_form(make_wheel("demo-pkg", "1.0")))
        assert r.status_code == 200, r.text
        yield {
            "client": client,
            "exporter": exporter,
            "lines": lines,
            "ready": ready,
            "telemetry": telemetry,
            "token": raw,
            "handle": handle,
        }
    finally:
        client.close()
        handle.stop()
        telemetry.shutdown()
        app.close()
        index.close()


def _flushed(site):
    assert site["telemetry"].force_flush(10)
    return site["exporter"].get_finished_spans()


def test_upload_span_is_a_child_of_the_request_span(site):
    spans = _flushed(site)
    upload = [s for s in spans if s.name == "registry_core.upload"]
    assert upload, [s.name for s in spans]
    parent = [s for s in spans if s.context.span_id == upload[0].parent.span_id]
    assert len(parent) == 1
    request = parent[0]
    assert request.name == "POST /legacy/"
    assert request.attributes["http.route"] == "/legacy/"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["registry_core.outcome"] == "ok"
    assert upload[0].attributes["status"] == 200
    assert request.kind.name == "SERVER"


def test_request_span_attributes_never_carry_secrets(site):
    c = site["client"]
    r = c.get(
        "/simple/demo-pkg/?token=" + TOKEN_LIKE,
        headers={"authorization": f"Bearer {site['token']}", "cookie": f"rc_session={TOKEN_LIKE}"},
    )
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    spans = [
        s for s in _flushed(site) if s.attributes.get("registry_core.request_id") == request_id
    ]
    assert len(spans) == 1
    s = spans[0]
    assert s.name == "GET /simple/{project}/"
    assert s.attributes["url.path"] == "/simple/demo-pkg/"
    text = json.dumps(dict(s.attributes))
    assert TOKEN_LIKE not in text and site["token"] not in text
    line = next(json.loads(x) for x in site["lines"] if request_id in x)
    assert line["route"] == "/simple/{project}/" and line["path"] == "/simple/demo-pkg/"
    assert (
        line["status"] == 200
        and line["bytes"] == r.num_bytes_downloaded
        and line["method"] == "GET"
    )
    assert line["trace_id"] == f"{s.context.trace_id:032x}"
    raw_line = next(x for x in site["lines"] if request_id in x)
    assert TOKEN_LIKE not in raw_line and site["token"] not in raw_line and "?" not in raw_line


def test_a_callers_traceparent_is_continued(site):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = site["client"].get(
        "/simple/", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    )
    rid = r.headers["x-request-id"]
    s = next(s for s in _flushed(site) if s.attributes.get("registry_core.request_id") == rid)
    assert f"{s.context.trace_id:032x}" == trace_id
    assert s.parent is not None and f"{s.parent.span_id:016x}" == "00f067aa0ba902b7"


def test_request_id_given_is_kept_a_bad_one_replaced(site):
    c = site["client"]
    assert (
        c.get("/simple/", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    )
    bad = c.get("/simple/", headers={"x-request-id": 'a b"c'}).headers["x-request-id"]
    assert bad != 'a b"c' and len(bad) == 16


def test_health_and_readiness(site):
    c = site["client"]
    assert c.get("/healthz").status_code == 200
    assert c.head("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 200
    site["ready"].clear()
    try:
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200  # alive while not ready (draining)
    finally:
        site["ready"].set()
    assert c.get("/readyz").status_code == 200
    assert c.post("/healthz").status_code == 405


def test_metrics_for_loopback_or_the_bearer_token_only(site):
    c = site["client"]
    c.get("/simple/demo-pkg/")
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'registry_core_http_requests_total{method="GET",route="/simple/{project}/",status="200",tenant="-"}'
        in text
    )
    assert "registry_core_http_request_duration_seconds_bucket" in text
    assert "registry_core_spans_dropped_total 0.0" in text
    assert "registry_core_http_requests_in_flight 0.0" in text  # the /metrics request is not one
    # relayed by a proxy on this machine: loopback is not enough, the token is
    relayed = {"x-forwarded-for": "203.0.113.9"}
    assert c.get("/metrics", headers=relayed).status_code == 404
    assert (
        c.get(
            "/metrics", headers={**relayed, "authorization": "Bearer wrong-token-xxxxxxxx"}
        ).status_code
        == 404
    )
    ok = c.get("/metrics", headers={**relayed, "authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200
    assert METRICS_TOKEN not in repr(site["telemetry"])


def test_watched_component_counters_are_scraped(site):
    t = site["telemetry"]
    stats = {"page_builds": 3, "refusals": {"too_big": 2}}
    t.watch("demo", lambda: stats, tenant="acme", index="main")
    text = t.metrics_text().decode()
    assert 'registry_core_demo_page_builds_total{index="main",tenant="acme"} 3.0' in text
    assert 'registry_core_demo_refusals_total{index="main",key="too_big",tenant="acme"} 2.0' in text


def test_annotate_and_span_inside_a_wrapped_app(tmp_path):
    exporter = InMemorySpanExporter()
    lines: list[str] = []
    telemetry = Telemetry(span_exporter=exporter, access_log=lines.append, metrics=False)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        annotate(tenant="acme", subject="user:alice", route="/custom/{x}")
        with span("registry_core.patch", base="a", target="b"):
            pass
        if scope["path"] == "/boom":
            raise RuntimeError("inner failure")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    handle = start_server(telemetry.wrap(app), tls=False)  # the lifespan passes through
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            assert c.get("/anything/at/all").status_code == 204
            assert c.get("/boom").status_code == 500
            assert c.get("/metrics").status_code == 404  # metrics off
    finally:
        handle.stop()
    assert telemetry.force_flush(10)
    spans = exporter.get_finished_spans()
    requests = [s for s in spans if s.kind.name == "SERVER"]
    assert [s.name for s in requests] == ["GET /custom/{x}", "GET /custom/{x}"]
    ok, boom = requests
    assert ok.attributes["registry_core.tenant"] == "acme"
    assert boom.attributes["registry_core.outcome"] == "error"
    assert boom.attributes["http.response.status_code"] == 500
    assert boom.status.status_code.name == "ERROR"
    children = [s for s in spans if s.name == "registry_core.patch"]
    assert {c.parent.span_id for c in children} == {ok.context.span_id, boom.context.span_id}
    records = [json.loads(x) for x in lines]
    assert [(r["tenant"], r["subject"], r["status"]) for r in records] == [
        ("acme", "user:alice", 204),
        ("acme", "user:alice", 500),
    ]
    telemetry.shutdown()


def test_span_is_a_noop_outside_a_traced_request():
    with span("registry_core.patch", a=1, b=None) as s:
        s.set_attribute("x", 1)
    annotate(tenant="nobody")  # nothing to annotate: no error


_TEMPLATES = {
    "/",
    "/legacy/",
    "/simple/",
    "/simple/{project}/",
    "/simple/*",
    "/.well-known/acme-challenge/{token}",
    "/_/*",
    "/{file}.metadata",
    "/{file}",
    "/files/{project}/{file}",
    "other",
} | {
    f"/_/{n}{s}"
    for n in ("oidc", "saml", "whoami", "logout", "login", "audit", "tuf", "tokens")
    for s in ("", "/*")
}


@given(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "BREW"]),
    st.lists(st.text(max_size=12), max_size=6),
)
def test_route_templates_are_a_bounded_set(method, segments):
    """Whatever path a client sends, the route label is one of a fixed set (cardinality)."""
    assert route_template(method, "/" + "/".join(segments)) in _TEMPLATES


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/t/acme/main/simple/", "/simple/"),
        ("GET", "/t/acme/main/simple/demo-pkg/", "/simple/{project}/"),
        ("GET", "/main/demo-pkg/demo_pkg-1.0-py3-none-any.whl", "/{file}"),
        ("GET", "/main/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata", "/{file}.metadata"),
        ("GET", "/files/demo-pkg/demo_pkg-1.0.tar.gz", "/files/{project}/{file}"),
        ("POST", "/t/acme/main/legacy/", "/legacy/"),
        ("POST", "/t/acme/main/", "/legacy/"),
        ("GET", "/t/acme/_/audit/tile/0/000", "/_/audit/*"),
        ("GET", "/t/acme/_/whoami", "/_/whoami"),
        ("GET", "/.well-known/acme-challenge/abc", "/.well-known/acme-challenge/{token}"),
        ("GET", "/favicon.ico", "other"),
    ],
)
def test_route_template_examples(method, path, template):
    assert route_template(method, path) == template


def test_an_answer_cut_short_is_aborted_and_the_in_flight_gauge_returns_to_zero():
    exporter = InMemorySpanExporter()
    telemetry = Telemetry(span_exporter=exporter, access_log=False)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"100")],
            }
        )
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        # and stops: the client never gets the other 90 bytes

    handle = start_server(telemetry.wrap(app), tls=False)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            with pytest.raises(httpx.HTTPError):
                c.get("/simple/")
            text = c.get("/metrics").text
    finally:
        handle.stop()
    assert "registry_core_http_requests_in_flight 0.0" in text
    assert telemetry.force_flush(10)
    (s,) = exporter.get_finished_spans()
    assert s.attributes["registry_core.outcome"] == "aborted"
    assert s.attributes["http.response.body.size"] == 10
    telemetry.shutdown()
