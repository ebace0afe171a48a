"""What authentication, authorization and rate limiting cost per request, in one run.

(a) Request latency through the real ASGI app (``registry_core.server.build_app`` over a v2
    ``registry_core.config`` with one tenant): an anonymous read of a public index (the
    unauthenticated path, the anchor), the same read with an API token (Basic
    ``__token__:<token>``: token authentication + authorize()), and with a session cookie (the
    path an OIDC or SAML sign-in takes after the callback: ``TenantStore.create_session``, then
    the cached session lookup). Called in-process with ASGI messages (no sockets), and over
    loopback HTTP/1.1 keep-alive with httpx against the app served by hypercorn. The rate
    limiter is off for (a) so the figures are auth alone. Goals (issue 14): under 0.2 ms p99
    added for tokens, under 1 ms p99 added for a cached session.
(b) Limiter throughput: the sans-IO ``gcra`` step, ``MemoryRateLimiter.hit``,
    ``TieredLimiter.check`` (two keys, principal and tenant) in-process and on a real
    ``redis-server`` (one Lua script per check), one thread and four threads.
(c) The decision engine: pycasbin (an RBAC model with domains, resource patterns and a role ->
    action table) against our ``authorize()`` on the same random permission table (tenants,
    indexes, projects, users, groups, ``*`` and ``authenticated`` bindings): the same 1000
    random queries, asserted to get the same answers; decision latency p50/p99 and the lines of
    model and policy each needs.

    .venv/bin/python benchmarks/bench_auth.py [--quick] [--out /tmp/rc/bench_auth.txt]
                                              [--json build/bench/auth.json]

Needs redis-server on PATH for the Redis rows (skipped with a note otherwise), casbin (the
bench extra) for (c), hypercorn + httpx for the HTTP rows of (a).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import importlib.metadata
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from registry_core.auth import ACTIONS, ROLES, Policy, Principal, Resource, RoleBinding, authorize
from registry_core.auth._ratelimit import (
    MemoryRateLimiter,
    Plan,
    RedisRateLimiter,
    TieredLimiter,
    gcra,
)
from registry_core.auth._rbac import PERMISSIONS

ROOT = Path(__file__).resolve().parents[1]

# -- helpers ------------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(samples_ns: list[int]) -> dict[str, float]:
    us = [s / 1000 for s in samples_ns]
    return {
        "n": len(us),
        "p50_us": pct(us, 0.50),
        "p99_us": pct(us, 0.99),
        "mean_us": statistics.fmean(us),
    }


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port, or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-auth-redis-") as tmp:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp]
        proc = subprocess.Popen(
            [*argv, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(5)


# -- (b) limiter throughput ---------------------------------------------------------------------

BENCH_PLAN = Plan("bench", 100_000, 100_000_000, 100_000, 100_000_000)  # never limits here


def rate(fn: Callable[[int], object], n: int, threads: int = 1) -> dict[str, float]:
    """Calls/s of ``fn(i)`` over n calls split across ``threads``, and per-call latency."""
    lat: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def work(offset: int) -> None:
        mine = []
        barrier.wait()
        for i in range(offset, n, threads):
            t = time.perf_counter_ns()
            fn(i)
            mine.append(time.perf_counter_ns() - t)
        with lock:
            lat.extend(mine)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    return {"per_s": n / elapsed, "threads": threads, **summary(lat)}


def bench_limiters(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    out: dict[str, Any] = {}
    principals = [
        Principal(tenant="acme", subject=f"user:u{i}", method="token") for i in range(1000)
    ]
    state: dict[str, int | None] = {"tat": None}
    clock = time.monotonic_ns

    def step(i: int) -> None:
        result, state["tat"] = gcra(state["tat"], clock(), rate=1e6, burst=10**9)

    out["gcra step (sans-IO)"] = rate(step, n)
    memory = MemoryRateLimiter()
    out["MemoryRateLimiter.hit"] = rate(
        lambda i: memory.hit(f"k{i % 1000}", rate=1e6, burst=10**9), n
    )
    tiers = TieredLimiter(MemoryRateLimiter(), {"bench": BENCH_PLAN})
    out["TieredLimiter.check, memory"] = rate(
        lambda i: tiers.check(principals[i % 1000], "bench"), n
    )
    out["TieredLimiter.check, memory, 4 threads"] = rate(
        lambda i: tiers.check(principals[i % 1000], "bench"), n, threads=4
    )
    with redis_server() as url:
        if url is None:
            out["redis"] = "skipped: redis-server is not installed"
            return out
        rn = 5_000 if quick else 30_000
        redis_limiter = RedisRateLimiter(url)
        out["RedisRateLimiter.hit"] = rate(
            lambda i: redis_limiter.hit(f"k{i % 1000}", rate=1e6, burst=10**9), rn
        )
        rtiers = TieredLimiter(redis_limiter, {"bench": BENCH_PLAN})
        out["TieredLimiter.check, redis"] = rate(
            lambda i: rtiers.check(principals[i % 1000], "bench"), rn
        )
        out["TieredLimiter.check, redis, 4 threads"] = rate(
            lambda i: rtiers.check(principals[i % 1000], "bench"), rn, threads=4
        )
        redis_limiter.close()
    # the server is gone now: reads fail open, at once (the limiter does not wait on a dead
    # server between probes); the one warning per 10 s is silenced here
    logging.getLogger("registry_core.ratelimit").setLevel(logging.ERROR)
    dead = TieredLimiter(RedisRateLimiter(url), {"bench": BENCH_PLAN})
    out["TieredLimiter.check, redis down (fail open)"] = rate(
        lambda i: dead.check(principals[i % 1000], "bench"), rn
    )
    return out


# -- (c) casbin vs authorize() ------------------------------------------------------------------

CASBIN_MODEL = """\
[request_definition]
r = sub, pdom, dom, obj, act

[policy_definition]
p = sub, dom, obj, role

[role_definition]
g = _, _, _
g2 = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.pdom == r.dom && r.dom == p.dom && (p.sub == "*" || (p.sub == "authenticated" && \
r.sub != "anonymous") || g(r.sub, p.sub, r.dom)) && g2(p.role, r.act) && \
regexMatch(r.obj, p.obj)
"""


def casbin_obj(resource: Resource) -> str:
    if resource.index is None:
        return "/"
    return f"/{resource.index}" + (f"/{resource.project}" if resource.project else "")


def casbin_pattern(resource: Resource) -> str:
    """The regex of everything a binding on ``resource`` covers (our Resource.covers)."""
    if resource.index is None:
        return "^/.*$"
    if resource.project is None:
        return f"^/{resource.index}(/.*)?$"
    return f"^/{resource.index}/{resource.project}$"


def world(seed: int) -> dict[str, Any]:
    """A random permission table: 3 tenants x 3 indexes x 25 projects, 60 users, 8 groups."""
    rnd = random.Random(seed)
    tenants = ["acme", "globex", "initech"]
    indexes = ["main", "dev", "ext"]
    projects = [f"proj-{i}" for i in range(25)]
    users = {t: [f"user:u{i}" for i in range(60)] for t in tenants}
    groups = [f"group:g{i}" for i in range(8)]
    member = {
        (t, u): frozenset(rnd.sample(groups, rnd.randint(0, 2))) for t in tenants for u in users[t]
    }
    bindings: dict[str, list[RoleBinding]] = {}
    for t in tenants:
        bs = [
            RoleBinding("user:u0", "owner", Resource(t)),
            RoleBinding("user:u1", "admin", Resource(t)),
            RoleBinding("*", "reader", Resource(t, "main")),
            RoleBinding("authenticated", "reader", Resource(t, "dev")),
            RoleBinding("user:u2", "auditor", Resource(t)),
        ]
        for _ in range(60):
            subject = rnd.choice(users[t] + groups)
            where = rnd.random()
            index = rnd.choice(indexes)
            if where < 0.1:
                resource = Resource(t)
            elif where < 0.5:
                resource = Resource(t, index)
            else:
                resource = Resource(t, index, rnd.choice(projects))
            bs.append(RoleBinding(subject, rnd.choice(ROLES), resource))
        bindings[t] = bs
    queries = []
    for _ in range(1000):
        t = rnd.choice(tenants)
        if rnd.random() < 0.15:
            principal = Principal.anonymous(t)
        else:
            u = rnd.choice(users[t])
            principal = Principal(tenant=t, subject=u, method="session", groups=member[(t, u)])
        rt = t if rnd.random() < 0.9 else rnd.choice(tenants)
        where = rnd.random()
        if where < 0.1:
            resource = Resource(rt)
        elif where < 0.4:
            resource = Resource(rt, rnd.choice(indexes))
        else:
            resource = Resource(rt, rnd.choice(indexes), rnd.choice(projects))
        queries.append((principal, rnd.choice(ACTIONS), resource))
    return {
        "tenants": tenants,
        "users": users,
        "member": member,
        "bindings": bindings,
        "queries": queries,
    }


def toml_roles(bindings: list[RoleBinding]) -> list[str]:
    """Our policy as the config file holds it: one line per subject (``[tenants.T.roles]``)."""
    by_subject: dict[str, list[str]] = {}
    for b in bindings:
        by_subject.setdefault(b.subject, []).append(f"{b.role}@{b.resource}")
    return [f"{json.dumps(s)} = {json.dumps(v)}" for s, v in sorted(by_subject.items())]


def bench_engines(quick: bool) -> dict[str, Any]:
    import casbin

    w = world(14)
    with tempfile.TemporaryDirectory(prefix="bench-auth-casbin-") as tmp:
        model_path = Path(tmp) / "model.conf"
        model_path.write_text(CASBIN_MODEL)
        lines = []
        for t, bs in w["bindings"].items():
            for b in bs:
                lines.append(f"p, {b.subject}, {t}, {casbin_pattern(b.resource)}, {b.role}")
        for (t, u), gs in sorted(w["member"].items()):
            for g in sorted(gs):
                lines.append(f"g, {u}, {g}, {t}")
        for role in ROLES:
            for action in sorted(PERMISSIONS[role]):
                lines.append(f"g2, {role}, {action}")
        policy_path = Path(tmp) / "policy.csv"
        policy_path.write_text("\n".join(lines) + "\n")
        enforcer = casbin.Enforcer(str(model_path), str(policy_path))

    policies = {t: Policy(bs) for t, bs in w["bindings"].items()}
    queries = w["queries"]

    def ours(q: tuple[Principal, str, Resource]) -> bool:
        principal, action, resource = q
        return authorize(principal, action, resource, policies[principal.tenant]).allowed

    def theirs(q: tuple[Principal, str, Resource]) -> bool:
        principal, action, resource = q
        return bool(
            enforcer.enforce(
                principal.subject, principal.tenant, resource.tenant, casbin_obj(resource), action
            )
        )

    # groups live in the principal (from the IdP) for us, in g lines for casbin: same table
    answers_ours = [ours(q) for q in queries]
    answers_theirs = [theirs(q) for q in queries]
    mismatches = [
        (str(q[0].subject), q[1], f"{q[2].tenant}:{q[2]}", a, b)
        for q, a, b in zip(queries, answers_ours, answers_theirs, strict=True)
        if a != b
    ]
    if mismatches:
        raise SystemExit(f"casbin and authorize() disagree on {len(mismatches)}: {mismatches[:5]}")
    rounds = 1 if quick else 3

    def timed(fn: Callable[[Any], bool]) -> list[int]:
        out = []
        for _ in range(rounds):
            for q in queries:
                t = time.perf_counter_ns()
                fn(q)
                out.append(time.perf_counter_ns() - t)
        return out

    ours_ns = timed(ours)
    theirs_ns = timed(theirs)
    rbac_src = (ROOT / "src" / "registry_core" / "auth" / "_rbac.py").read_text().splitlines()
    start = next(i for i, line in enumerate(rbac_src) if line.startswith("_READ ="))
    end = next(i for i, line in enumerate(rbac_src) if line.startswith("assert set(PERMISSIONS)"))
    our_model = [line for line in rbac_src[start:end] if line.strip()]
    our_policy = [line for bs in w["bindings"].values() for line in toml_roles(bs)]
    return {
        "queries": len(queries),
        "allowed": sum(answers_ours),
        "same_answers": True,
        "bindings": sum(len(bs) for bs in w["bindings"].values()),
        "casbin": {
            **summary(theirs_ns),
            "model_lines": len([x for x in CASBIN_MODEL.splitlines() if x.strip()]),
            "policy_lines": len(lines),
            "version": importlib.metadata.version("casbin"),
        },
        "ours": {
            **summary(ours_ns),
            "model_lines": len(our_model),
            "policy_lines": len(our_policy),
        },
    }


# -- (a) through the ASGI app -------------------------------------------------------------------

APP_CONFIG = """\
version = 2

[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"

[storage]
directory = "{root}"

# a plan that never limits here: (a) measures authentication and authorization (every row,
# the anonymous one too, passes the same in-process limiter check)
[rate_limits.plans.bench]
rate = 100000.0
burst = 100000000
upload_rate = 100000.0
upload_burst = 100000000

[tenants.acme]
plan = "bench"
public = true

[tenants.acme.roles]
"user:alice" = ["reader@main"]
"group:devs" = ["uploader@main"]
"""

READ_PATH = "/t/acme/main/simple/"


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def _asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(path, headers), receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def _credentials(app: Any) -> dict[str, list[tuple[bytes, bytes]]]:
    """The three callers: anonymous, an API token (Basic __token__), a signed-in session."""
    from registry_core.auth import Identity, Scope

    store = app.tenants["acme"].store
    raw, _ = store.create_token(owner="user:alice", scopes=[Scope.parse("acme", "read:main")])
    session = store.create_session(
        Identity(
            subject="user:alice",
            issuer="https://idp.example",
            method="oidc",
            groups=frozenset({"devs"}),
        )
    )
    basic = base64.b64encode(b"__token__:" + raw.encode()).decode()
    return {
        "anonymous": [],
        "token (Basic __token__)": [(b"authorization", f"Basic {basic}".encode())],
        "session cookie (OIDC/SAML)": [(b"cookie", f"rc_session={session}".encode())],
    }


def _whoami(status_body: tuple[int, bytes]) -> tuple[str, str]:
    status, body = status_body
    if status != 200:
        raise SystemExit(f"whoami answered {status}: {body[:200]!r}")
    data = json.loads(body)
    return data.get("subject", "?"), data.get("method", "?")


def _interleaved(
    rows: dict[str, Callable[[], Any]], rounds: int, per_round: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Each row's latency, the rows taking turns request by request (so a busy moment of the
    shared machine lands on every row alike); the garbage collector runs between rounds only."""
    samples: dict[str, list[int]] = {name: [] for name in rows}
    items = list(rows.items())
    for fn in rows.values():
        for _ in range(warmup):
            fn()
    clock = time.perf_counter_ns
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            for _ in range(per_round):
                for name, fn in items:
                    t = clock()
                    fn()
                    samples[name].append(clock() - t)
        finally:
            gc.enable()
    return {name: summary(s) for name, s in samples.items()}


def bench_app(quick: bool) -> dict[str, Any]:
    """(a): see the module docstring."""
    try:
        from registry_core.config import parse
        from registry_core.server import build_app
    except ImportError as exc:
        return {"skipped": f"registry_core.server.build_app is not available: {exc}"}
    rounds, per_round, warmup = (3, 300, 100) if quick else (5, 2000, 300)
    out: dict[str, Any] = {"rows": {}, "path": READ_PATH}
    with tempfile.TemporaryDirectory(prefix="bench-auth-app-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config_path = Path(tmp) / "registry.toml"
        config_path.write_text(APP_CONFIG.format(port=port, root=Path(tmp) / "root"))
        from registry_core.audit import MemorySink

        app = build_app(parse(config_path.read_text(), source=str(config_path)), audit=MemorySink())
        try:
            callers = _credentials(app)
            loop = asyncio.new_event_loop()
            try:
                for name, headers in callers.items():
                    who = _whoami(
                        loop.run_until_complete(_asgi_get(app, "/t/acme/_/whoami", headers))
                    )
                    out.setdefault("whoami", {})[name] = who
                    status, _ = loop.run_until_complete(_asgi_get(app, READ_PATH, headers))
                    if status != 200:
                        raise SystemExit(f"{name}: GET {READ_PATH} answered {status}")
                out["rows"]["in-process ASGI"] = _interleaved(
                    {
                        name: (
                            lambda h=headers: loop.run_until_complete(_asgi_get(app, READ_PATH, h))
                        )
                        for name, headers in callers.items()
                    },
                    rounds,
                    per_round,
                    warmup,
                )
                out["rows"]["direct (no app)"] = _direct(app, callers, rounds, per_round, warmup)
                out["hop"] = _hop(loop, rounds, per_round, warmup)
            finally:
                loop.close()
        finally:
            app.close()
        out["rows"]["HTTP/1.1 keep-alive (httpx -> registry-core serve)"] = _over_http(
            config_path, port, callers, rounds, per_round // 2, warmup
        )
    out["goals"] = _goals(out["rows"])
    return out


def _direct(
    app: Any, callers: dict[str, list[tuple[bytes, bytes]]], rounds: int, n: int, warmup: int
) -> dict[str, dict[str, float]]:
    """What the middleware adds, called directly: token -> principal -> authorize(read), and
    session id -> principal -> authorize(read), against doing nothing."""
    from registry_core.auth import authorize

    runtime = app.tenants["acme"]
    store = runtime.store
    resource = Resource("acme", "main")
    token = base64.b64decode(dict(callers["token (Basic __token__)"])[b"authorization"][6:])
    raw = token.decode().split(":", 1)[1]
    session = dict(callers["session cookie (OIDC/SAML)"])[b"cookie"].decode().split("=", 1)[1]

    def by_token() -> None:
        principal = store.authenticate_token(raw)
        assert authorize(principal, "read", resource, store.policy()).allowed

    def by_session() -> None:
        principal = store.session(session)
        assert principal is not None and authorize(principal, "upload", resource, store.policy())

    return _interleaved(
        {
            "anonymous": lambda: None,
            "token (Basic __token__)": by_token,
            "session cookie (OIDC/SAML)": by_session,
        },
        rounds,
        n,
        warmup,
    )


def _hop(
    loop: asyncio.AbstractEventLoop, rounds: int, n: int, warmup: int
) -> dict[str, dict[str, float]]:
    """What one ``asyncio.to_thread`` round trip (no work) costs on this machine, against an
    event-loop turn: the middleware authenticates in a worker thread."""

    def nothing() -> None:
        return None

    async def turn() -> None:
        return None

    async def hop() -> None:
        await asyncio.to_thread(nothing)

    return _interleaved(
        {
            "event-loop turn": lambda: loop.run_until_complete(turn()),
            "turn + asyncio.to_thread": lambda: loop.run_until_complete(hop()),
        },
        rounds,
        n,
        warmup,
    )


def _over_http(
    config_path: Path,
    port: int,
    callers: dict[str, list[tuple[bytes, bytes]]],
    rounds: int,
    n: int,
    warmup: int,
) -> dict[str, dict[str, float]] | str:
    import httpx

    exe = Path(sys.executable).with_name("registry-core")
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    return f"skipped: registry-core serve did not start: {err[-400:]}"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}{READ_PATH}"
        with httpx.Client(http1=True, timeout=30) as client:

            def get(headers: list[tuple[bytes, bytes]]) -> None:
                r = client.get(url, headers=[(k.decode(), v.decode()) for k, v in headers])
                if r.status_code != 200:
                    raise SystemExit(f"GET {url} answered {r.status_code}")

            return _interleaved(
                {name: (lambda h=headers: get(h)) for name, headers in callers.items()},
                rounds,
                n,
                warmup,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _goals(rows: dict[str, Any]) -> list[str]:
    lines = []
    for transport, table in rows.items():
        if not isinstance(table, dict):
            continue
        base = table["anonymous"]["p99_us"]
        for name, goal in (
            ("token (Basic __token__)", 200.0),
            ("session cookie (OIDC/SAML)", 1000.0),
        ):
            added = table[name]["p99_us"] - base
            verdict = "met" if added < goal else "NOT met"
            lines.append(
                f"goal {name} < {goal:.0f} us p99 added, {transport}: {added:+.1f} us -> {verdict}"
            )
    return lines


# -- report -------------------------------------------------------------------------------------


def report(out: dict[str, Any]) -> str:
    lines = [
        f"bench_auth  {out['when']}  python {out['python']}  {out['cpus']} CPUs  "
        f"{'quick' if out['quick'] else 'full'}",
        "",
    ]
    app = out["app"]
    lines.append("(a) request latency through the ASGI app (p50 / p99 in us; added vs anonymous)")
    if "skipped" in app:
        lines.append(f"    skipped: {app['skipped']}")
    else:
        for transport, rows in app["rows"].items():
            if isinstance(rows, str):
                lines.append(f"    {transport}: {rows}")
                continue
            base = rows["anonymous"]
            lines.append(f"    {transport}:")
            for name, r in rows.items():
                added = (
                    ""
                    if name == "anonymous"
                    else (
                        f"   added p50 {r['p50_us'] - base['p50_us']:+8.1f}  "
                        f"p99 {r['p99_us'] - base['p99_us']:+8.1f}"
                    )
                )
                lines.append(
                    f"      {name:<28} p50 {r['p50_us']:8.1f}  p99 {r['p99_us']:8.1f}{added}"
                )
        hop = app.get("hop")
        if hop:
            a, b = hop["event-loop turn"], hop["turn + asyncio.to_thread"]
            lines.append(
                f"    one asyncio.to_thread round trip (the middleware authenticates in a worker "
                f"thread): p50 {b['p50_us'] - a['p50_us']:+.1f} us, "
                f"p99 {b['p99_us'] - a['p99_us']:+.1f} us"
            )
        for goal in app.get("goals", []):
            lines.append(f"    {goal}")
    lines += ["", "(b) limiter throughput"]
    for name, r in out["limiters"].items():
        if isinstance(r, str):
            lines.append(f"    {name}: {r}")
            continue
        lines.append(
            f"    {name:<46} {r['per_s']:>9,.0f} checks/s   p50 {r['p50_us']:7.1f} us"
            f"   p99 {r['p99_us']:7.1f} us"
        )
    e = out["engines"]
    lines += [
        "",
        f"(c) decision engine: {e['queries']} random queries ({e['allowed']} allowed), "
        f"{e['bindings']} role bindings over 3 tenants; same answers: {e['same_answers']}",
        f"    {'engine':<22} {'p50 us':>8} {'p99 us':>8} {'model lines':>12} {'policy lines':>13}",
    ]
    for name, key in (
        ("pycasbin " + str(e["casbin"]["version"]), "casbin"),
        ("authorize()", "ours"),
    ):
        r = e[key]
        lines.append(
            f"    {name:<22} {r['p50_us']:8.2f} {r['p99_us']:8.2f} {r['model_lines']:>12} "
            f"{r['policy_lines']:>13}"
        )
    lines.append(
        "    (casbin's policy: p lines per binding + g lines per group membership + g2 lines per "
        "role action; ours: one TOML line per subject, groups come from the IdP)"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/rc/bench_auth.txt"))
    ap.add_argument("--json", type=Path, default=ROOT / "build" / "bench" / "auth.json")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: app,limiters,engines")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
    }
    out["app"] = {"skipped": "--skip"} if "app" in skip else bench_app(args.quick)
    out["limiters"] = {} if "limiters" in skip else bench_limiters(args.quick)
    out["engines"] = bench_engines(args.quick)
    text = report(out)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    sys.exit(main())
