"""The ``[ml]`` section in a running MultiTenantApp (a real server on loopback): typosquat
uploads audited (warn) or refused (refuse), a scraper-like burst of page requests raising an
``ml.anomaly`` audit event, ``/_/scaling`` for tenant admins only, the counters on the
telemetry registry, and, with the section absent or the flag off, nothing of the ML layer
imported and nothing changed. Plus the pieces on their own: ``popular_from_index``,
``requires_dist`` (a property test), the observer's bounded queue."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
import threading

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _dists import core_metadata, make_wheel
from registry_core.audit import MemorySink
from registry_core.auth import Scope
from registry_core.config import parse
from registry_core.flags import FeatureFlags
from registry_core.index import Index
from registry_core.server import MultiTenantApp, start_server

CONFIG = """
version = 2
[server]
tls = "plain-http"
[storage]
directory = "{root}"
[audit]
enabled = false
{ml}
[tenants.acme]
public = true
plan = "enterprise"
[tenants.acme.roles]
"user:root" = ["admin@*"]
"user:alice" = ["owner@*"]
"""
ML = """
[ml]
anomaly_detection = true
upload_checks = "{action}"
scaling = true
per_worker_rps = 10
"""
ON = FeatureFlags(overrides={"ML_ANOMALY_DETECTION": True})
OFF = FeatureFlags(overrides={"ML_ANOMALY_DETECTION": False})


def _config(tmp_path, ml=ML, action="warn", audit_log=False):
    text = CONFIG.format(root=tmp_path / "root", ml=ml.format(action=action))
    if audit_log:  # the tenant's tamper-evident log too
        text = text.replace("enabled = false", "enabled = true")
    return parse(text, source="test")


def _form(filename, blob):
    return {
        "data": {
            ":action": "file_upload",
            "protocol_version": "1",
            "sha256_digest": hashlib.sha256(blob).hexdigest(),
        },
        "files": {"content": (filename, blob)},
    }


def _wheel(name, version="1.0", requires=()):
    extra = "".join(f"Requires-Dist: {r}\n" for r in requires)
    blob = make_wheel(name, version, metadata=core_metadata(name, version, extra=extra))
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl", blob


class _Site:
    def __init__(self, tmp_path, action="warn", flags=ON, ml=ML, audit_log=False):
        self.audit = MemorySink()
        config = _config(tmp_path, ml, action, audit_log)
        self.app = MultiTenantApp(config, flags=flags, audit=self.audit)
        try:
            self.handle = start_server(self.app, tls=False)
        except BaseException:
            self.app.close()
            raise
        self.client = httpx.Client(base_url=self.handle.url(), timeout=30)
        store = self.app.tenants["acme"].store
        self.tokens = {
            who: store.create_token(
                owner=f"user:{who}",
                scopes=[Scope.parse("acme", "read,upload,create,index.admin:*")],
            )[0]
            for who in ("root", "alice")
        }
        self.tokens["root-narrow"] = store.create_token(
            owner="user:root", scopes=[Scope.parse("acme", "read:*")]
        )[0]

    def upload(self, name, requires=(), who="alice"):
        filename, blob = _wheel(name, requires=requires)
        return self.client.post(
            "/t/acme/main/legacy/", auth=("__token__", self.tokens[who]), **_form(filename, blob)
        )

    def events(self, kind):
        return [e for e in self.audit.events if e.kind == kind]

    def close(self):
        self.client.close()
        self.handle.stop()
        self.app.close()


@pytest.fixture
def site(tmp_path):
    s = _Site(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_typosquat_upload_is_audited_and_published_with_warn(site):
    assert site.upload("web-app", requires=["requests>=2", "Click[extra]"]).status_code == 200
    assert site.upload("tool-two", requires=["requests"]).status_code == 200
    assert not site.events("upload.suspicious")
    r = site.upload("reqeusts")
    assert r.status_code == 200, r.text
    (event,) = site.events("upload.suspicious")
    assert event.outcome == "ok" and event.resource == "acme/reqeusts"
    assert event.subject == "user:alice"
    assert event.detail["check"] == "typosquat" and event.detail["target"] == "requests"
    assert event.detail["transformation"] == "swapped-characters"
    assert site.client.get("/t/acme/main/simple/reqeusts/").status_code == 200
    # a further upload to the same (now existing) project is its owners' business
    filename, blob = _wheel("reqeusts", "1.1")
    r = site.client.post(
        "/t/acme/main/legacy/",
        auth=("__token__", site.tokens["alice"]),
        **_form(filename, blob),
    )
    assert r.status_code == 200 and len(site.events("upload.suspicious")) == 1
    # the popular list was read once, then kept current per upload
    popular = site.app.tenants["acme"].entry("main").index.checks.checks[0].popular
    assert popular.scans == 1 and popular.popular()[:2] == ["requests", "click"]


def test_typosquat_upload_is_refused_with_refuse(tmp_path):
    site = _Site(tmp_path, action="refuse", audit_log=True)
    try:
        assert site.upload("web-app", requires=["requests"]).status_code == 200
        r = site.upload("requestz")
        assert r.status_code == 400, r.text
        assert "typosquat" in r.text
        (event,) = site.events("upload.suspicious")
        assert event.outcome == "denied" and event.detail["target"] == "requests"
        log = site.app.tenants["acme"].audit_log
        logged = [json.loads(log.entry(i)) for i in range(len(log))]
        (entry,) = [e for e in logged if e["kind"] == "upload.suspicious"]
        assert entry["outcome"] == "denied" and entry["resource"] == "acme/requestz"
        assert site.client.get("/t/acme/main/simple/requestz/").status_code == 404
        assert site.upload("unrelated-name").status_code == 200
    finally:
        site.close()


def test_a_scraper_burst_of_page_requests_raises_an_anomaly_alert(site):
    assert site.upload("web-app").status_code == 200
    for _ in range(5):  # an ordinary client
        assert site.client.get("/t/acme/main/simple/web-app/").status_code == 200
    assert site.app.ml.drain()
    assert not site.events("ml.anomaly")
    for n in range(150):  # every project name in turn, most of them not there
        site.client.get(f"/t/acme/main/simple/project-{n}/")
    assert site.app.ml.drain()
    alerts = site.events("ml.anomaly")
    assert len(alerts) == 1  # one per client per alert interval
    (alert,) = alerts
    assert alert.tenant == "acme" and alert.subject.startswith("c")
    assert alert.detail["detector"] == "rules"
    assert alert.detail["route"] == "/simple/{project}/"
    assert alert.detail["reason"] in ("not-found-probing", "many-new-projects", "high-rate")
    stats = site.app.tenants["acme"].ml.stats()
    assert stats["scored"] >= 156 and stats["alerts"] == 1 and stats["flagged"] >= 1


def test_scaling_answers_json_to_tenant_admins_only(site):
    for _ in range(3):
        site.client.get("/t/acme/main/simple/")
    assert site.app.ml.drain()
    r = site.client.get("/t/acme/_/scaling", headers={"authorization": _bearer(site, "root")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    hint = r.json()
    assert hint["tenant"] == "acme"
    assert hint["workers"] >= 1 and hint["instances"] >= 1
    assert {"start", "expected_rps", "upper_rps", "reason"} <= set(hint)
    head = site.client.head("/t/acme/_/scaling", headers={"authorization": _bearer(site, "root")})
    assert head.status_code == 200 and head.content == b""
    post = site.client.post("/t/acme/_/scaling", headers={"authorization": _bearer(site, "root")})
    assert post.status_code == 405
    uniform = site.client.get("/t/acme/_/nothing-here")
    assert uniform.status_code == 404
    for who in ("alice", "root-narrow"):  # an owner; the admin's token without index.admin
        r = site.client.get("/t/acme/_/scaling", headers={"authorization": _bearer(site, who)})
        assert (r.status_code, r.content) == (404, uniform.content)
    r = site.client.get("/t/acme/_/scaling")
    assert (r.status_code, r.content) == (404, uniform.content)
    assert any(e.kind == "authz.denied" and e.action == "index.admin" for e in site.audit.events)


def _bearer(site, who):
    return f"Bearer {site.tokens[who]}"


def test_counters_and_hints_reach_the_telemetry_registry(site):
    from registry_core.telemetry import Telemetry

    telemetry = Telemetry(access_log=False)
    site.app.attach_telemetry(telemetry)
    site.client.get("/t/acme/main/simple/")
    assert site.app.ml.drain()
    text = telemetry.metrics_text().decode()
    assert 'registry_core_ml_scored_total{tenant="acme"}' in text
    assert 'registry_core_ml_scaling_workers{tenant="acme"}' in text
    assert "registry_core_ml_dropped_total 0.0" in text


def test_requests_are_observed_behind_the_telemetry_access_log(tmp_path, call):
    from registry_core.telemetry import Telemetry

    lines: list[str] = []
    app = MultiTenantApp(_config(tmp_path), flags=ON, audit=MemorySink())
    try:
        wrapped = Telemetry(access_log=lines.append, metrics=False).wrap(app)
        for path in ("/t/acme/main/simple/", "/t/acme/main/simple/absent/"):
            call(wrapped, "GET", path)
        assert app.ml.drain()
        assert len(lines) == 2
        assert app.tenants["acme"].ml.stats()["observed"] == 2
    finally:
        app.close()


def test_flag_off_leaves_the_upload_path_and_routes_unchanged(tmp_path):
    site = _Site(tmp_path, flags=OFF, ml=ML.replace("scaling = true", "scaling = false"))
    try:
        assert site.app.ml is None
        assert site.app.tenants["acme"].entry("main").index.checks is None
        assert site.upload("web-app", requires=["requests"]).status_code == 200
        assert site.upload("reqeusts").status_code == 200
        assert not site.events("upload.suspicious")
        r = site.client.get("/t/acme/_/scaling", headers={"authorization": _bearer(site, "root")})
        assert r.status_code == 404
    finally:
        site.close()


_PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from registry_core.config import parse
    from registry_core.flags import FeatureFlags
    from registry_core.server import MultiTenantApp

    text, flag = sys.argv[1], sys.argv[2] == "on"
    flags = FeatureFlags(overrides={"ML_ANOMALY_DETECTION": flag})
    app = MultiTenantApp(parse(text), flags=flags)

    async def get(path):
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "headers": [], "client": ("127.0.0.1", 1)}
        out = []
        async def receive():
            return {"type": "http.request", "body": b""}
        async def send(m):
            out.append(m)
        await app(scope, receive, send)
        return out[0]["status"]

    status = asyncio.run(get("/t/acme/main/simple/"))
    index = app.tenants["acme"].entry("main").index
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "river", "lightgbm",
                    "sklearn", "prometheus_client") or m.startswith("registry_core.ml"))
    print(json.dumps({"status": status, "ml": app.ml is not None,
                      "checks": index.checks is not None, "loaded": loaded,
                      "hooks": "registry_core.server._ml_hooks" in sys.modules}))
    app.close()
    """
)


def _probe(tmp_path, ml, flag):
    text = CONFIG.format(root=tmp_path / "root", ml=ml.format(action="warn"))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, text, flag],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("ml", "flag"),
    [("", "on"), ("", "off"), (ML.replace("scaling = true", "scaling = false"), "off")],
    ids=["section-absent", "section-absent-flag-off", "flag-off"],
)
def test_nothing_of_the_ml_layer_is_imported_unless_enabled(tmp_path, ml, flag):
    got = _probe(tmp_path, ml, flag)
    assert got == {"status": 200, "ml": False, "checks": False, "loaded": [], "hooks": False}


def test_enabled_rules_and_scaling_load_no_numpy_or_river(tmp_path):
    got = _probe(tmp_path, ML, "on")
    assert got["ml"] and got["checks"] and got["hooks"] and got["status"] == 200
    heavy = [m for m in got["loaded"] if not m.startswith("registry_core.ml")]
    assert heavy == []


# -- the pieces ---------------------------------------------------------------------------------


def test_popular_from_index_counts_newest_files_and_breaks_ties_by_name(tmp_path):
    from registry_core.auth import Principal
    from registry_core.ml._typosquat import popular_from_index

    with Index(tmp_path) as index:
        who = Principal.local(index.tenant)

        def put(name, version, requires):
            filename, blob = _wheel(name, version, requires)
            index.upload(filename, io.BytesIO(blob), principal=who)

        put("app-a", "1.0", ["old-dep", "shared"])
        put("app-a", "2.0", ["numpy", "shared", "Shared"])  # the newest file counts
        put("app-b", "1.0", ["shared", "zlib-ng; extra == 'fast'", "app-b"])  # self ignored
        put("app-c", "1.0", ["numpy (>=1)", "attrs"])
        assert popular_from_index(index, 10) == ["numpy", "shared", "attrs", "zlib-ng"]
        assert popular_from_index(index, 2) == ["numpy", "shared"]
        assert popular_from_index(index, 10, max_projects=1) == ["numpy", "shared"]
        with pytest.raises(Exception, match="positive int"):
            popular_from_index(index, 0)


_NAME = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_TAIL = st.sampled_from(["", ">=1.0", " (>=2)", "[extra]>=1", "; python_version < '3.12'"])


@given(st.lists(st.tuples(_NAME, _TAIL), max_size=8), st.text(max_size=40))
def test_requires_dist_recovers_every_declared_name(requirements, body):
    from registry_core.ml._typosquat import normalize_name, requires_dist

    headers = "Metadata-Version: 2.1\nName: x\nVersion: 1\n"
    headers += "".join(f"Requires-Dist: {n}{t}\n" for n, t in requirements)
    metadata = (headers + "\n" + body.replace("\r", "") + "\nRequires-Dist: in-body\n").encode()
    assert requires_dist(metadata) == {normalize_name(n) for n, _ in requirements}


def test_requires_dist_is_bounded():
    from registry_core.ml._typosquat import requires_dist

    metadata = "".join(f"Requires-Dist: p{i}\n" for i in range(2000)).encode()
    assert len(requires_dist(metadata)) == 512
    assert requires_dist(b"Requires-Dist: ???\nRequires-Dist\n") == frozenset()


def test_observer_queue_is_bounded_and_never_blocks():
    from registry_core.server._ml_hooks import MLObserver, TenantML

    entered, release = threading.Event(), threading.Event()
    seen: list[object] = []

    class Slow(TenantML):
        def observe(self, r):
            entered.set()
            release.wait(30)
            seen.append(r)

    observer = MLObserver({"acme": Slow("acme")}, clock=lambda: 1000.0, max_queue=2)
    try:
        observer.submit("acme", "GET", "/simple/a/", 200, 10, "10.0.0.1", "-")
        assert entered.wait(30)
        for path in ("/simple/b/", "/simple/c/", "/simple/d/"):
            observer.submit("acme", "GET", path, 200, 10, "10.0.0.1", "-")
        observer.submit("globex", "GET", "/simple/e/", 200, 10, "10.0.0.1", "-")  # unknown
        assert observer.stats() == {"queued": 2, "dropped": 1, "failed": 0}
        release.set()
        assert observer.drain()
    finally:
        release.set()
        observer.close()
    assert [r.project for r in seen] == ["a", "b", "c"]
    first = seen[0]
    assert (first.time, first.kind, first.route, first.tenant) == (
        1000.0,
        "page",
        "/simple/{project}/",
        "acme",
    )
    assert first.client.startswith("c") and "10.0.0.1" not in first.client


def _model_config(tmp_path, model, detector="rules"):
    ml = (
        f'\n[ml]\nanomaly_detection = true\nanomaly_detector = "{detector}"\n'
        f'anomaly_model = "{model}"\n'
    )
    return parse(CONFIG.format(root=tmp_path / "root", ml=ml), source="test")


def test_a_trained_model_file_replaces_the_built_in_rules(tmp_path, call):
    from registry_core.ml._anomaly import AnomalyScorer
    from registry_core.ml._artifact import ModelArtifact

    strict = AnomalyScorer("rules", rules={"two-404s": ("s404", 2.0, "dependency_confusion")})
    path = tmp_path / "anomaly.rcml"
    path.write_bytes(ModelArtifact(kind="anomaly", payload=strict.to_bytes()).to_bytes())
    audit = MemorySink()
    app = MultiTenantApp(_model_config(tmp_path, path), flags=ON, audit=audit)
    try:
        for n in range(3):
            call(app, "GET", f"/t/acme/main/simple/absent-{n}/")
        assert app.ml.drain()
        (alert,) = [e for e in audit.events if e.kind == "ml.anomaly"]
        assert alert.detail["reason"] == "two-404s"
    finally:
        app.close()


def test_a_bad_or_mismatched_model_file_is_a_config_error(tmp_path):
    from registry_core.errors import ConfigError
    from registry_core.ml._anomaly import AnomalyScorer
    from registry_core.ml._artifact import ModelArtifact

    bad = tmp_path / "bad.rcml"
    bad.write_bytes(b"RCML\x01 not an artifact")
    rules = tmp_path / "rules.rcml"
    rules.write_bytes(
        ModelArtifact(kind="anomaly", payload=AnomalyScorer("rules").to_bytes()).to_bytes()
    )
    for model, detector, message in (
        (tmp_path / "missing.rcml", "rules", "cannot read the anomaly model"),
        (bad, "rules", "bad.rcml"),
        (rules, "hst", "is a rules model, but anomaly_detector is 'hst'"),
    ):
        with pytest.raises(ConfigError, match=message):
            MultiTenantApp(_model_config(tmp_path, model, detector), flags=ON)
