"""Real clients meet the rate limits: twine uploads past a plan's upload burst and pip reads
past its read burst, against the multi-tenant app served on loopback (plain HTTP). The
limiter's clock is frozen, so nothing refills during the test and the outcome does not
depend on timing."""

from __future__ import annotations

import pytest

from _packages import build_project, run, tool
from registry_core.auth import Scope
from registry_core.auth._ratelimit import MemoryRateLimiter, Plan, TieredLimiter
from registry_core.config import parse
from registry_core.server import MultiTenantApp, start_server

pytestmark = pytest.mark.network

CONFIG = """
version = 2
[server]
tls = "plain-http"
[storage]
directory = "{root}"

[tenants.acme]
plan = "tiny"
public = true
[tenants.acme.roles]
"user:alice" = ["owner@*"]
"""


@pytest.fixture
def site(tmp_path):
    frozen = [10**15]
    plans = {"tiny": Plan("tiny", rate=1.0, burst=6, upload_rate=0.01, upload_burst=1)}
    limiter = TieredLimiter(MemoryRateLimiter(lambda: frozen[0]), plans, clock=lambda: frozen[0])
    text = CONFIG.replace(
        "[tenants.acme]",
        "[rate_limits.plans.tiny]\n"
        "rate = 1.0\nburst = 6\nupload_rate = 0.01\nupload_burst = 1\n\n"
        "[tenants.acme]",
    )
    app = MultiTenantApp(parse(text.format(root=tmp_path / "root"), source="test"), limiter=limiter)
    try:
        handle = start_server(app, tls=False)
    except BaseException:
        app.close()
        raise
    store = app.tenants["acme"].store
    raw, _ = store.create_token(
        owner="user:alice", scopes=[Scope.parse("acme", "read,upload,create:*")]
    )
    try:
        yield app, handle.url().rstrip("/") + "/t/acme/main", raw
    finally:
        handle.stop()
        app.close()


def test_twine_past_the_upload_burst_gets_429_and_says_so(site, tmp_path):
    app, base, token = site
    built = build_project(tmp_path, "limited-pkg", "1.0", payload_kb=1)
    proc = run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            base + "/legacy/",
            "-u",
            "__token__",
            "-p",
            token,
            str(built.wheel),
            str(built.sdist),
        ],
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "429" in output and "Too Many Requests" in output, output
    assert token not in output
    index = next(iter(app.tenants["acme"]._entries.values())).index
    stored = [f for f in (built.wheel.name, built.sdist.name) if index.file(f) is not None]
    assert len(stored) == 1  # the first upload passed, the second was refused, nothing half-written


def test_pip_reads_within_the_burst_then_gets_429(site, tmp_path):
    app, base, token = site
    built = build_project(tmp_path, "read-pkg", "1.0", payload_kb=1)
    index = next(iter(app.tenants["acme"]._entries.values())).index
    with built.wheel.open("rb") as f:  # straight into the index, not over HTTP
        index.upload(built.wheel.name, f, token=token)
    args = [
        tool("pip"),
        "download",
        "-vv",
        "--no-deps",
        "--no-cache-dir",
        "--retries",
        "0",
        "--index-url",
        base + "/simple/",
        "read-pkg==1.0",
    ]
    # each run is three reads (project page, .metadata, wheel); the read burst is 6
    first = run([*args, "-d", str(tmp_path / "a")])
    second = run([*args, "-d", str(tmp_path / "b")])
    third = run([*args, "-d", str(tmp_path / "c")], check=False)
    assert (tmp_path / "a" / built.wheel.name).read_bytes() == built.wheel.read_bytes()
    assert (tmp_path / "b" / built.wheel.name).exists()
    assert third.returncode != 0 and not (tmp_path / "c" / built.wheel.name).exists()
    # pip treats a 429 on the project page as "no versions" and names it only when verbose
    assert "429" in third.stdout + third.stderr, third.stdout + third.stderr
    assert "429" not in first.stdout + second.stdout
