"""Two ``registry-core serve --config`` processes on PostgreSQL + S3 (moto) + Redis behind
Debian's haproxy, while a bounded client load runs (threads with httpx: index pages, file
downloads, delta fetches, every answer checked by digest):

- both instances computing patches: each (base, target) pair computed once across them
  (the instances' /metrics counters against the patches stored in Redis);
- each instance restarted in turn with SIGTERM (drain, exit status 0): zero failed requests
  and zero client retries through the balancer;
- one instance killed with SIGKILL: only the requests it had in flight are retried (by
  haproxy, or by the client for an answer cut mid-body: at most one per client thread);
- afterwards every file's SHA-256 is checked again: nothing lost or corrupted.

No sleeps to synchronise: the test waits on conditions (a process's "serving on" line, its
exit, haproxy's view of a server on its stats socket, the load's progress) with deadlines.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import httpx
import pytest

import _haproxy
import _postgres
from _dists import make_wheel
from _moto import MotoServer
from _redis import RedisServer

pytestmark = pytest.mark.network

VERSIONS = ("1.0", "1.1", "1.2")
THREADS = 4
DEADLINE = 30.0  # generous bound for conditions that take well under a second
JSON = "application/vnd.pypi.simple.v1+json"


def _wheel(version: str) -> bytes:
    """A stored (uncompressed) wheel of ~200 KiB whose versions differ a little: deltas
    between them are small, as between real releases."""
    rng = random.Random("scale-pkg")
    body = "".join(f"LINE_{i} = {rng.random()!r}\n" for i in range(6000))
    changed = "".join(
        f"CHANGED_{j} = {random.Random(version + str(j)).random()!r}\n" for j in range(8)
    )
    return make_wheel(
        "scale-pkg",
        version,
        members={"scale_pkg/data.py": (body + changed).encode()},
        compression=zipfile.ZIP_STORED,
    )


class Instance:
    """One ``python -m registry_core.cli serve --config FILE`` process on a fixed port."""

    def __init__(self, name: str, port: int, config: Path, env: dict[str, str], workdir: Path):
        self.name = name
        self.port = port
        self.config = config
        self.env = env
        self.workdir = workdir
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.workdir / f"{self.name}-{self.starts}.stderr", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry_core.cli", "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=self.env,
        )
        log.close()
        up = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line)
                if "serving on" in line:
                    up.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not up.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (self.workdir / f"{self.name}-{self.starts}.stderr").read_text()
                raise AssertionError(f"{self.name} did not start: {lines}\n{err[-3000:]}")

    def terminate(self) -> int:
        """SIGTERM (graceful drain); the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE + 30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(DEADLINE)

    def metric(self, name: str) -> float:
        """The sum of a counter's samples on this instance's /metrics (loopback: allowed)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", re.M)
        return sum(float(v) for v in pattern.findall(text))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


CONFIG = """\
version = 2

[server]
host = "127.0.0.1"
port = {port}
tls = "plain-http"
http3 = false
drain_timeout_s = 20

[storage]
directory = "{state}"
backend = "s3"
bucket = "{bucket}"
prefix = "registry/"
endpoint_url = "{s3}"
region = "us-east-1"

[database]
backend = "postgresql"
url_env = "RC_SCALE_DSN"

[cache]
backend = "redis"
redis_url = "{redis}"

[flags]
DELTA_AGGREGATOR = true
DELTA_STABLE = true

[rate_limits.plans.load]
rate = 100000
burst = 100000
upload_rate = 100
upload_burst = 100

[tenants.acme]
public = true
plan = "load"

[tenants.acme.roles]
"user:ci" = ["owner@*"]
"""


@pytest.fixture
def cluster(tmp_path):
    _postgres.require()
    _haproxy.require()
    pg = _postgres.shared_server()
    dsn = pg.create_database("scale")
    moto = MotoServer(tmp_path)
    redis_server = RedisServer(tmp_path)
    bucket = moto.bucket()
    env = {**os.environ, **moto.env(), "RC_SCALE_DSN": dsn}
    env.pop("REGISTRY_CORE_FLAGS", None)
    instances = {}
    for name in ("a", "b"):
        port = _haproxy.free_port()
        config = tmp_path / f"{name}.toml"
        config.write_text(
            CONFIG.format(
                port=port,
                state=tmp_path / f"state-{name}",
                bucket=bucket,
                s3=moto.endpoint_url,
                redis=redis_server.url,
            )
        )
        instances[name] = Instance(name, port, config, env, tmp_path)
    proxy = None
    try:
        # the token lives in the shared tenant store (PostgreSQL): valid on both instances
        from registry_core.auth import Scope, TenantStore

        store = TenantStore(dsn, tenant="acme")
        token, _ = store.create_token(
            owner="user:ci", scopes=[Scope.parse("acme", "read,upload,create:*")]
        )
        store.close()
        errors: list[BaseException] = []

        def start(instance: Instance) -> None:
            try:
                instance.start()
            except BaseException as exc:
                errors.append(exc)

        # at once, on a fresh database: both first starts migrate (one waits for the other)
        starting = [threading.Thread(target=start, args=(i,)) for i in instances.values()]
        for t in starting:
            t.start()
        for t in starting:
            t.join(120)
        if errors:
            raise errors[0]
        proxy = _haproxy.HAProxy(tmp_path, {n: i.port for n, i in instances.items()})
        for name in instances:
            proxy.wait_state(name, "UP")
        yield {
            "instances": instances,
            "proxy": proxy,
            "token": token,
            "redis": redis_server,
            "bucket": bucket,
            "moto": moto,
        }
    finally:
        if proxy is not None:
            proxy.stop()
        for instance in instances.values():
            instance.stop()
        redis_server.stop()
        moto.stop()


def _upload(client: httpx.Client, token: str, version: str, blob: bytes) -> None:
    r = client.post(
        "/t/acme/main/legacy/",
        auth=("__token__", token),
        data={
            ":action": "file_upload",
            "protocol_version": "1",
            "sha256_digest": hashlib.sha256(blob).hexdigest(),
        },
        files={"content": (f"scale_pkg-{version}-py3-none-any.whl", blob)},
    )
    assert r.status_code == 200, (r.status_code, r.text)


def _file_urls(client: httpx.Client) -> dict[str, tuple[str, str]]:
    """filename -> (absolute URL, sha256 hex) from the JSON project page."""
    r = client.get("/t/acme/main/simple/scale-pkg/", headers={"accept": JSON})
    assert r.status_code == 200, r.status_code
    return {
        f["filename"]: (str(r.url.join(f["url"]).copy_with(fragment=None)), f["hashes"]["sha256"])
        for f in r.json()["files"]
    }


class Load:
    """THREADS client threads through the balancer until stopped; every answer checked."""

    def __init__(self, url: str, files: dict[str, tuple[str, str]], blobs: dict[str, bytes]):
        from registry_core.delta import DeltaAggregator
        from registry_core.wire import etag_for

        self.url = url
        self.files = files
        self.blobs = blobs  # filename -> the bytes uploaded
        self.names = sorted(files)
        self.apply = DeltaAggregator().apply
        self.etag_for = etag_for
        self.phase = "warm-up"
        self.done: Counter[str] = Counter()
        self.retries: list[tuple[str, str, str]] = []  # (phase, kind, error)
        self.failures: list[tuple[str, str, str]] = []
        self.deltas = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(THREADS)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(DEADLINE + 30)

    def completed(self) -> int:
        with self._lock:
            return sum(self.done.values())

    def wait_progress(self, n: int = 30) -> None:
        """Wait until the load has completed ``n`` more requests (the load really runs)."""
        target = self.completed() + n
        deadline = time.monotonic() + DEADLINE
        while self.completed() < target:
            assert time.monotonic() < deadline, f"load stalled at {self.completed()} requests"
            assert not self.failures, self.failures
            time.sleep(0.01)

    def _one(self, client: httpx.Client, kind: str, rng: random.Random) -> None:
        if kind == "page":
            r = client.get("/t/acme/main/simple/scale-pkg/", headers={"accept": JSON})
            assert r.status_code == 200, r.status_code
            assert sorted(f["filename"] for f in r.json()["files"]) == self.names
            return
        name = rng.choice(self.names)
        url, digest = self.files[name]
        want = self.blobs[name]
        if kind == "file":
            r = client.get(url)
            assert r.status_code == 200, r.status_code
            assert (
                hashlib.sha256(r.content).hexdigest() == digest == hashlib.sha256(want).hexdigest()
            )
            return
        older = [n for n in self.names if n < name] or [self.names[-1]]
        base_name = rng.choice(older)
        base = self.blobs[base_name]
        r = client.get(url, headers={"if-none-match": self.etag_for(base), "a-im": "rcdelta"})
        assert r.status_code in (200, 226, 304), r.status_code
        if r.status_code == 304:
            assert base_name == name
            return
        body = self.apply(base, r.content) if r.status_code == 226 else r.content
        assert hashlib.sha256(body).hexdigest() == digest, "delta result digest mismatch"
        if r.status_code == 226:
            with self._lock:
                self.deltas += 1

    def _run(self, i: int) -> None:
        rng = random.Random(i)
        transport = httpx.HTTPTransport(retries=0)
        with httpx.Client(base_url=self.url, timeout=30, transport=transport) as client:
            while not self._stop.is_set():
                kind = rng.choice(("page", "file", "delta"))
                for attempt in range(4):
                    try:
                        self._one(client, kind, rng)
                    except httpx.HTTPError as exc:
                        with self._lock:
                            self.retries.append((self.phase, kind, repr(exc)))
                        if attempt == 3:
                            with self._lock:
                                self.failures.append((self.phase, kind, repr(exc)))
                        continue
                    except AssertionError as exc:
                        with self._lock:
                            self.failures.append((self.phase, kind, str(exc)))
                        break
                    with self._lock:
                        self.done[kind] += 1
                    break


def _redis_patch_keys(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = [k.decode() for k in client.scan_iter(match="registry-core:acme:patches:*")]
    finally:
        client.close()
    return sum(1 for k in keys if re.search(r":[0-9a-f]{64}-[0-9a-f]{64}\.[a-z]+$", k))


def test_two_instances_behind_haproxy(cluster):
    instances: dict[str, Instance] = cluster["instances"]
    proxy: _haproxy.HAProxy = cluster["proxy"]
    blobs = {f"scale_pkg-{v}-py3-none-any.whl": _wheel(v) for v in VERSIONS}
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for name, blob in blobs.items():
            _upload(client, cluster["token"], name.split("-")[1], blob)
        files = _file_urls(client)
    assert sorted(files) == sorted(blobs)

    # 1. both instances asked for every pair at once: each pair is computed once in all
    from registry_core.wire import etag_for

    names = sorted(blobs)
    pairs = [(b, t) for i, b in enumerate(names) for t in names[i + 1 :]]
    barrier = threading.Barrier(len(pairs) * len(instances))
    statuses: list[int] = []

    def ask(instance: Instance, base: str, target: str) -> None:
        path = httpx.URL(files[target][0]).raw_path.decode()
        barrier.wait(DEADLINE)
        r = httpx.get(
            f"http://127.0.0.1:{instance.port}{path}",
            headers={"if-none-match": etag_for(blobs[base]), "a-im": "rcdelta"},
            timeout=30,
        )
        statuses.append(r.status_code)

    askers = [
        threading.Thread(target=ask, args=(inst, b, t))
        for inst in instances.values()
        for b, t in pairs
    ]
    for t in askers:
        t.start()
    for t in askers:
        t.join(DEADLINE + 30)
    assert statuses and set(statuses) <= {200, 226}, statuses

    def computed() -> float:
        return sum(
            i.metric("registry_core_shared_patches_computed_total") for i in instances.values()
        )

    deadline = time.monotonic() + DEADLINE
    while computed() != _redis_patch_keys(cluster["redis"].url):  # upload precomputes settle
        assert time.monotonic() < deadline, (computed(), _redis_patch_keys(cluster["redis"].url))
        time.sleep(0.02)
    stored = _redis_patch_keys(cluster["redis"].url)
    assert stored >= len(pairs) and computed() == stored  # every stored patch computed once
    shared = sum(
        i.metric("registry_core_shared_patches_shared_hits_total")
        + i.metric("registry_core_shared_patches_waited_total")
        for i in instances.values()
    )
    assert shared >= 1  # the other instance took results from Redis

    # 2. rolling restart under load: SIGTERM (drain), restart, wait until haproxy has it back
    load = Load(proxy.url, files, blobs)
    load.start()
    try:
        load.wait_progress()
        load.phase = "graceful"
        for name, instance in instances.items():
            assert instance.terminate() == 0  # drained, clean exit
            load.wait_progress(10)  # served by the other one meanwhile
            instance.start()
            proxy.wait_state(name, "UP")
            load.wait_progress()
        load.wait_progress()
        graceful_retries = list(load.retries)
        assert not load.failures, load.failures
        assert not graceful_retries, graceful_retries  # zero failed requests, zero retries
        logged_before_kill = len(proxy.requests())

        # 3. SIGKILL one: only what it had in flight is retried
        load.phase = "kill"
        instances["a"].kill()
        proxy.wait_state("a", "DOWN")
        load.wait_progress()
    finally:
        load.stop()
    assert not load.failures, load.failures
    client_retries = [r for r in load.retries if r[0] == "kill"]
    assert len(client_retries) <= THREADS, client_retries  # one in flight per thread at most
    after = proxy.requests()[logged_before_kill:]
    haproxy_retried = [r for r in after if r.retries > 0]
    assert all(r.status in (200, 226, 304) for r in after if r.backend == "instances"), [
        r for r in after if r.status not in (200, 226, 304)
    ]
    assert len(haproxy_retried) + len(client_retries) <= 2 * THREADS, haproxy_retried
    assert load.done["page"] and load.done["file"] and load.deltas, (load.done, load.deltas)

    # 4. nothing lost or corrupted: every file again, through the survivor, by digest
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        again = _file_urls(client)
        assert again == files
        for name, (url, digest) in again.items():
            body = client.get(url).content
            assert (
                hashlib.sha256(body).hexdigest()
                == digest
                == hashlib.sha256(blobs[name]).hexdigest()
            )
    print(
        f"\nload: {dict(load.done)} ({load.deltas} deltas); graceful retries 0; kill: "
        f"{len(client_retries)} client retries, {len(haproxy_retried)} haproxy retries"
    )
