"""``registry-core serve --config`` with issue 15's operations sections on the embedded setup
(SQLite + a directory): /healthz, /readyz, /metrics (loopback only), JSON access lines on
stderr, each tenant's audit log filled by its events and served at ``/_/audit/`` to auditors
only, and SIGTERM: a drain, then exit status 0."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from _dists import make_wheel
from _haproxy import free_port

CONFIG = """\
version = 2

[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"
http3 = false
drain_timeout_s = 5

[storage]
directory = "{root}"

[logging]
access_log = "json"

[telemetry]
service_name = "registry-ops-test"

[audit]
enabled = true
sign = true

[tenants.acme]
public = true

[tenants.acme.roles]
"user:ci" = ["owner@*"]
"user:eve" = ["auditor@*"]
"""


@pytest.fixture
def served(tmp_path):
    from registry_core.auth import Scope, TenantStore

    port = free_port()
    root = tmp_path / "root"
    (root / "acme" / ".registry-core").mkdir(parents=True)
    store = TenantStore(root / "acme" / ".registry-core" / "tenant.sqlite3", tenant="acme")
    tokens = {
        who: store.create_token(owner=f"user:{who}", scopes=[Scope.parse("acme", scope)])[0]
        for who, scope in (("ci", "read,upload,create:*"), ("eve", "read,audit.read:*"))
    }
    store.close()
    config = tmp_path / "registry.toml"
    config.write_text(CONFIG.format(port=port, root=root))
    stderr = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry_core.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "REGISTRY_CORE_KEY_PASSPHRASE": "ops-test-passphrase"},
    )
    up = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "serving on" in line:
                up.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not up.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            stderr.seek(0)
            pytest.fail(f"serve did not start: {stderr.read()[-3000:]}")
    try:
        yield {
            "url": f"http://127.0.0.1:{port}",
            "proc": proc,
            "tokens": tokens,
            "root": root,
            "stderr": tmp_path / "stderr.txt",
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stderr.close()


def test_health_metrics_access_log_audit_and_drain(served):
    url, tokens = served["url"], served["tokens"]
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        blob = make_wheel("ops-pkg", "1.0")
        r = c.post(
            "/t/acme/main/legacy/",
            auth=("__token__", tokens["ci"]),
            data={
                ":action": "file_upload",
                "protocol_version": "1",
                "sha256_digest": hashlib.sha256(blob).hexdigest(),
            },
            files={"content": ("ops_pkg-1.0-py3-none-any.whl", blob)},
        )
        assert r.status_code == 200, r.text
        assert c.get("/t/acme/main/simple/ops-pkg/").status_code == 200
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and "registry_core_" in metrics.text
        # a request relayed by a proxy is not a loopback scraper
        assert c.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"}).status_code == 404

        # the tenant's audit log: the upload is in it; auditors read it, nobody else
        assert c.get("/t/acme/_/audit/checkpoint").status_code == 404
        assert (
            c.get("/t/acme/_/audit/checkpoint", auth=("__token__", tokens["ci"])).status_code == 404
        )
        cp = c.get("/t/acme/_/audit/checkpoint", auth=("__token__", tokens["eve"]))
        assert cp.status_code == 200, cp.status_code
        origin, size = cp.text.splitlines()[:2]
        assert origin == "localhost/acme" and int(size) >= 1
    audit_dir = served["root"] / "acme" / ".registry-core" / "audit"
    assert (audit_dir / "checkpoint").is_file()

    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0  # drained and exited cleanly
    lines = [
        json.loads(line)
        for line in served["stderr"].read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(r.get("status") == 200 and "simple" in str(r.get("route", "")) for r in lines), lines
    text = served["stderr"].read_text()
    assert tokens["ci"] not in text and tokens["eve"] not in text  # never a secret in a log
