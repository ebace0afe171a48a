"""Spans through a real OTLP collector: rotel (PyPI) on loopback, started by the test, forwards
what our OTLP/HTTP exporter sends to a receiver in the test (tests/_rotel.py), which decodes
the protobufs. Asserted: the request spans (name, route, status, outcome, tenant attributes)
and the upload span under a MultiTenantApp arrive; with the collector stuck (accepts, never
answers) or gone, requests are answered all the same and the dropped-span counter rises."""

from __future__ import annotations

import hashlib
import socket
import threading

import httpx

from _dists import make_wheel
from _rotel import rotel_collector  # noqa: F401 (fixture)
from registry_core.auth import Scope
from registry_core.config import parse
from registry_core.server import MultiTenantApp, start_server
from registry_core.telemetry import Telemetry

WHEEL = "demo_pkg-1.0-py3-none-any.whl"
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


def _form(blob):
    return {
        "data": {
            ":action": "file_upload",
            "protocol_version": "1",
            "sha256_digest": hashlib.sha256(blob).hexdigest(),
        },
        "files": {"content": (WHEEL, blob)},
    }


def _serve(tmp_path, telemetry):
    config = parse(CONFIG.format(root=tmp_path / "root"), source="test")
    app = MultiTenantApp(config)
    handle = start_server(telemetry.wrap(app), tls=False)
    token = app.tenants["acme"].store.create_token(
        owner="user:alice", scopes=[Scope.parse("acme", "read,upload,create:*")]
    )[0]
    return app, handle, token


def test_spans_arrive_at_the_rotel_collector(tmp_path, rotel_collector):  # noqa: F811
    telemetry = Telemetry(
        otlp_endpoint=rotel_collector.endpoint,
        service_name="rc-test",
        access_log=False,
        export_timeout_s=2.0,
    )
    app, handle, token = _serve(tmp_path, telemetry)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            r = c.post(
                "/t/acme/main/legacy/",
                auth=("__token__", token),
                **_form(make_wheel("demo-pkg", "1.0")),
            )
            assert r.status_code == 200, r.text
            assert c.get("/t/acme/main/simple/demo-pkg/").status_code == 200
            assert c.get("/t/acme/main/simple/no-such-project/").status_code == 404
        assert telemetry.force_flush(10)

        def arrived(spans):
            names = {s["name"] for s in spans}
            return {
                "POST /legacy/",
                "registry_core.upload",
                "GET /simple/{project}/",
            } <= names and (sum(s["name"] == "GET /simple/{project}/" for s in spans) >= 2)

        spans = rotel_collector.wait_for(arrived)
        by_name = {}
        for s in spans:
            by_name.setdefault(s["name"], []).append(s)
        post = by_name["POST /legacy/"][0]
        upload = by_name["registry_core.upload"][0]
        assert upload["parent_span_id"] == post["span_id"]
        assert upload["trace_id"] == post["trace_id"]
        assert upload["attributes"]["tenant"] == "acme"
        assert upload["attributes"]["status"] == 200
        assert post["attributes"]["http.route"] == "/legacy/"
        assert post["attributes"]["http.response.status_code"] == 200
        assert post["attributes"]["registry_core.outcome"] == "ok"
        assert "registry_core.tenant" in post["attributes"]
        assert post["resource"]["service.name"] == "rc-test"
        pages = {
            s["attributes"]["http.response.status_code"]: s
            for s in by_name["GET /simple/{project}/"]
        }
        assert pages[200]["attributes"]["registry_core.outcome"] == "ok"
        assert pages[404]["attributes"]["registry_core.outcome"] == "client_error"
        assert pages[404]["attributes"]["url.path"] == "/t/acme/main/simple/no-such-project/"
        for s in spans:  # no credential crossed the collector
            assert token not in repr(s)
        assert telemetry.stats["dropped"] == 0 and telemetry.stats["exported"] >= 4

        # the collector goes away: requests are answered as before, the loss is counted
        rotel_collector.stop(close_sink=False)
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            for _ in range(5):
                assert c.get("/t/acme/main/simple/demo-pkg/").status_code == 200
        telemetry.force_flush(10)
        assert telemetry.stats["dropped"] >= 5 and telemetry.stats["failed_exports"] >= 1
    finally:
        handle.stop()
        telemetry.shutdown()
        app.close()


class _StuckCollector:
    """Accepts OTLP connections and never answers: an exporter talking to it is blocked."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_stuck_collector_never_blocks_requests_and_drops_are_counted(tmp_path):
    stuck = _StuckCollector()
    telemetry = Telemetry(
        otlp_endpoint=f"http://127.0.0.1:{stuck.port}",
        access_log=False,
        max_queue_size=4,
        export_timeout_s=20.0,  # the exporter stays blocked far longer than any request below
    )
    app, handle, _ = _serve(tmp_path, telemetry)
    try:
        with httpx.Client(base_url=handle.url(), timeout=5) as c:
            for _ in range(4):  # a full batch wakes the export thread
                assert c.get("/t/acme/main/simple/").status_code == 200
            assert stuck.accepted.wait(30), "the exporter never connected"
            # the export thread is now blocked on the collector; requests go on regardless
            for _ in range(20):
                assert c.get("/t/acme/main/simple/").status_code == 200
        assert telemetry.stats["dropped"] >= 20 - 4
        text = telemetry.metrics_text().decode()
        dropped = next(
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("registry_core_spans_dropped_total ")
        )
        assert dropped >= 16
    finally:
        handle.stop()
        stuck.close()  # the blocked export fails now
        telemetry.shutdown(timeout_s=0.5)  # then the exporter's retries are aborted
        app.close()
