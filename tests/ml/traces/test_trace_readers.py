"""Readers on real producer output: our access log (written by Telemetry around a real ASGI
app and by access_line), a hand-written nginx combined log, and oracleGeneral files that the
libcachesim package reads back; bad input names the line or record."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.errors import TraceError
from registry_core.ml.traces import (
    ReadStats,
    Request,
    classify,
    generate,
    infer_held,
    load_trace,
    read_access_log,
    read_nginx,
    read_oracle_general,
    write_access_log,
    write_oracle_general,
)
from registry_core.telemetry import Telemetry
from registry_core.telemetry._logs import access_line


async def _app(scope, receive, send):
    body = b"x" * (1234 if scope["path"].endswith(".whl") else 56)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _call(app, method: str, path: str, peer: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "client": (peer, 40000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        return None

    asyncio.run(app(scope, receive, send))


def test_access_log_written_by_telemetry_reads_back(tmp_path):
    lines: list[str] = []
    app = Telemetry(metrics=False, access_log=lines.append).wrap(_app)
    calls = [
        ("GET", "/simple/Demo_Pkg/", "198.51.100.7"),
        ("GET", "/simple/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata", "198.51.100.7"),
        ("GET", "/files/demo-pkg/demo_pkg-1.0-py3-none-any.whl", "198.51.100.7"),
        ("GET", "/files/demo-pkg/demo_pkg-1.1-py3-none-any.whl", "198.51.100.7"),
        ("GET", "/files/demo-pkg/demo_pkg-1.1-py3-none-any.whl", "203.0.113.9"),
        ("POST", "/legacy/", "203.0.113.9"),
        ("GET", "/_/login", "203.0.113.9"),
    ]
    for method, path, peer in calls:
        _call(app, method, path, peer)
    assert len(lines) == len(calls)
    assert json.loads(lines[0])["client"] == "198.51.100.7"
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    reqs = list(read_access_log(log))
    assert [r.kind for r in reqs] == ["page", "metadata", "file", "file", "file", "upload", "login"]
    assert reqs[0].project == "demo-pkg" and reqs[0].route == "/simple/{project}/"
    assert (reqs[2].filename, reqs[2].version, reqs[2].size) == (
        "demo_pkg-1.0-py3-none-any.whl",
        "1.0",
        1234,
    )
    assert reqs[1].key == "demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata"
    # clients are hashed peers: the same peer, the same id; the address is not kept
    assert reqs[0].client == reqs[2].client != reqs[4].client
    assert "198.51.100.7" not in reqs[0].client
    trace = load_trace(log)
    assert trace.source == "file:access.log"
    held = [r.held for r in trace.requests if r.kind == "file"]
    assert held == ["", "1.0", ""]  # the inference: the client's last downloaded version
    rels = trace.catalogue.projects["demo-pkg"]
    assert [r.version for r in rels] == ["1.0", "1.1"]
    assert trace.catalogue.newer("demo-pkg", "1.0", trace.end) == rels[1:]


_names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    project=st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,10}[A-Za-z0-9])?", fullmatch=True),
    status=st.integers(100, 599),
    sent=st.integers(0, 1 << 40),
    tenant=_names,
    subject=st.none() | _names,
    client=st.none() | _names,
)
def test_access_line_round_trip(
    tmp_path_factory, start, method, project, status, sent, tenant, subject, client
):
    path = f"/simple/{project}/"
    line = access_line(
        start_s=start,
        request_id="r",
        tenant=tenant,
        method=method,
        route="/simple/{project}/",
        path=path,
        status=status,
        sent=sent,
        duration_s=0.01,
        subject=subject,
        client=client,
    )
    log = tmp_path_factory.mktemp("al") / "a.log"
    log.write_text(line + "\n")
    (r,) = read_access_log(log)
    assert abs(r.time - start) < 1e-3 + 1e-9 * start  # milliseconds on the wire
    assert (r.kind, r.project, r.status, r.size, r.method, r.tenant) == (
        "page",
        re.sub(r"[-_.]+", "-", project).lower(),  # PEP 503
        status,
        sent,
        method,
        tenant,
    )
    who = client or (subject if subject and subject != "-" else None)
    assert (r.client == "anonymous") == (who is None)


def test_access_line_without_client_and_bad_lines(tmp_path):
    good = access_line(
        start_s=1_700_000_000.25,
        request_id="r1",
        tenant="acme",
        method="GET",
        route="/simple/{project}/",
        path="/t/acme/main/simple/x/",
        status=200,
        sent=10,
        duration_s=0.001,
        subject="user:alice",
    )
    assert "client" not in json.loads(good)
    log = tmp_path / "a.log"
    log.write_text(
        good + "\n" + "not json\n" + '{"time": "yesterday", "path": "/"}\n' + good + "\n"
    )
    with pytest.raises(TraceError, match=r"a\.log:2:"):
        list(read_access_log(log))
    stats = ReadStats()
    reqs = list(read_access_log(log, errors="skip", stats=stats))
    assert len(reqs) == 2 and stats.skipped == 2 and stats.lines == 4
    assert ":3:" in stats.errors[1]
    assert reqs[0].time == 1_700_000_000.25 and reqs[0].tenant == "acme"
    assert reqs[0].project == "x" and reqs[0].client != "anonymous"  # the subject, hashed


def test_over_long_and_non_utf8_lines_are_bounded(tmp_path):
    log = tmp_path / "b.log"
    log.write_bytes(b"{" + b"a" * 70_000 + b"\n" + b"\xff\xfe\n")
    with pytest.raises(TraceError, match=r"b\.log:1: line longer"):
        list(read_access_log(log))
    stats = ReadStats()
    assert list(read_nginx(log, errors="skip", stats=stats)) == []
    assert stats.skipped == 2 and "not UTF-8" in stats.errors[1]
    with pytest.raises(TraceError, match="errors must be"):
        list(read_nginx(log, errors="ignore"))
    with pytest.raises(TraceError, match="cannot open"):
        list(read_nginx(tmp_path / "missing.log"))


UA = ' "-" "pip/24.0"'
NGINX = (
    "\n".join(
        [
            '203.0.113.5 - - [10/Oct/2000:13:55:36 -0700] "GET /simple/requests/ HTTP/1.1" 200 2326'
            + UA,
            '203.0.113.5 - - [10/Oct/2000:13:55:37 -0700] "GET /packages/ab/cd/'
            'requests-2.32.3-py3-none-any.whl HTTP/1.1" 200 64928' + UA,
            "198.51.100.2 - frank [10/Oct/2000:20:56:00 +0000] "
            '"GET /simple/internal-utils/ HTTP/2.0" 404 0 "-" "curl/8"',
            "198.51.100.2 - - [10/Oct/2000:20:57:00 +0000] "
            '"HEAD /robots.txt?x=1 HTTP/1.1" 200 - "-" "-"',
        ]
    )
    + "\n"
)


def test_nginx_combined(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(NGINX)
    reqs = list(read_nginx(log))
    assert [r.kind for r in reqs] == ["page", "file", "page", "other"]
    # 13:55:36 at -0700 is 20:55:36 UTC
    assert reqs[0].time == 971_211_336.0
    assert reqs[2].time - reqs[0].time == 24
    assert (reqs[1].project, reqs[1].version, reqs[1].size) == ("requests", "2.32.3", 64928)
    assert reqs[2].status == 404 and reqs[2].project == "internal-utils"
    assert reqs[3].size == 0 and reqs[3].method == "HEAD"
    assert reqs[0].client == reqs[1].client != reqs[2].client
    trace = load_trace(log)  # auto: text that is not JSON is nginx
    assert trace.catalogue.latest("requests", trace.end).version == "2.32.3"
    bad = tmp_path / "bad.log"
    bad.write_text(
        NGINX
        + 'garbage line\n203.0.113.5 - - [99/Foo/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1\n'
    )
    with pytest.raises(TraceError, match=r"bad\.log:5: does not match"):
        list(read_nginx(bad))
    stats = ReadStats()
    assert len(list(read_nginx(bad, errors="skip", stats=stats))) == 4
    assert stats.skipped == 2 and "bad.log:6" in stats.errors[1]


def test_classify_routes():
    assert classify("GET", "/t/acme/main/simple/") == ("page", "", "", "", "/simple/")
    assert classify("GET", "/simple/Foo.Bar/?format=json")[:2] == ("page", "foo-bar")
    assert classify("POST", "/")[0] == "upload"
    assert classify("GET", "/_/oidc/callback")[0] == "login"
    assert classify("GET", "/files/x/not-a-dist.whl")[:4] == ("file", "x", "not-a-dist.whl", "")
    assert classify("GET", "/files/x/x-1.0.tar.gz")[3] == "1.0"
    assert classify("GET", "/healthz")[0] == "other"


def _libcachesim():
    """The libcachesim package (a benchmark dependency): skip without it, fail on CI."""
    try:
        import libcachesim
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("libcachesim is not installed, and CI=true: pip install libcachesim")
        pytest.skip("libcachesim is not installed")
    return libcachesim


def test_oracle_general_is_read_by_libcachesim(tmp_path):
    lcs = _libcachesim()
    trace = generate(seed=2, days=1, clients=200)
    path = tmp_path / "t.oracleGeneral.bin"
    n = write_oracle_general(trace.requests, path)
    files = [r for r in trace.requests if r.kind == "file"]
    assert n == len(files) and path.stat().st_size == 24 * n
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    assert reader.get_num_of_req() == n
    ours = list(read_oracle_general(path))
    seen: dict[int, int] = {}
    for i in range(n):
        req = reader.read_one_req()
        assert (req.clock_time, req.obj_id, req.obj_size) == (
            int(ours[i].time),
            int(ours[i].filename),
            ours[i].size,
        )
        assert ours[i].size == max(1, files[i].size)
        if int(ours[i].filename) in seen:  # same key, same id
            assert files[seen[int(ours[i].filename)]].key == files[i].key
        seen[int(ours[i].filename)] = i
    # the simulator runs on it (an LRU of a tenth of the bytes misses less than everything)
    reader.reset()
    total = sum({r.key: r.size for r in files}.values())
    miss, byte_miss = lcs.LRU(total // 10).process_trace(reader)
    assert 0 < miss < 1 and 0 < byte_miss < 1


records = st.lists(
    st.tuples(st.integers(0, 2**31), st.integers(0, 30), st.integers(0, 2**32 - 1)),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(recs=records)
def test_oracle_general_round_trip(tmp_path_factory, recs):
    recs = sorted(recs)
    reqs = [Request(float(t), "c", "file", "p", f"f{k}", "", size) for t, k, size in recs]
    path = tmp_path_factory.mktemp("og") / "rt.bin"
    ids = {f"p/f{k}": 1000 + k for k in range(31)}
    assert write_oracle_general(reqs, path, keys=ids, start=0.0) == len(reqs)
    back = list(read_oracle_general(path))
    assert [(r.time, r.filename, r.size) for r in back] == [
        (float(t), str(1000 + k), max(1, size)) for t, k, size in recs
    ]
    raw = path.read_bytes()
    for i, (_, k, _) in enumerate(recs):
        nxt = struct.unpack_from("<q", raw, 24 * i + 16)[0]
        later = [j for j in range(i + 1, len(recs)) if recs[j][1] == k]
        assert nxt == (later[0] if later else -1)


def test_oracle_general_bad_input(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(b"\0" * 50)
    with pytest.raises(TraceError, match="record 2 is truncated"):
        list(read_oracle_general(path))
    with pytest.raises(TraceError, match="32-bit"):
        write_oracle_general([Request(-5.0, "c", "file", "p", "f", "", 1)], path, start=0.0)
    with pytest.raises(TraceError, match="uint32"):
        write_oracle_general([Request(0.0, "c", "file", "p", "f", "", 2**33)], path)
    assert path.read_bytes() == b"\0" * 50  # nothing half-written
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(TraceError, match="unknown trace format"):
        load_trace(path, format="csv")


def test_infer_held_uses_only_the_past():
    reqs = [
        Request(1.0, "a", "file", "p", "p-1.0.tar.gz", "1.0", 10),
        Request(2.0, "a", "page", "p", "", "", 10),
        Request(3.0, "a", "file", "p", "p-2.0.tar.gz", "2.0", 10, status=404),
        Request(4.0, "a", "file", "p", "p-2.0.tar.gz", "2.0", 10),
        Request(5.0, "a", "file", "p", "p-3.0.tar.gz", "3.0", 10),
        Request(5.0, "b", "file", "p", "p-3.0.tar.gz", "3.0", 10),
    ]
    assert [r.held for r in infer_held(reqs)] == ["", "1.0", "1.0", "1.0", "2.0", ""]


def test_generated_trace_replays_through_the_access_log(tmp_path):
    trace = generate(seed=4, days=1, clients=150)
    log = tmp_path / "generated.log"
    assert write_access_log(trace.requests, log, epoch=1_750_000_000.0) == len(trace)
    back = load_trace(log)
    assert back.source == "file:generated.log" and len(back) == len(trace)
    ids: dict[str, str] = {}
    for a, b in zip(trace.requests, back.requests, strict=True):
        assert abs(b.time - 1_750_000_000.0 - a.time) < 2e-3
        if a.kind == "upload":  # the form names the project, the log line does not
            assert (b.kind, b.project, b.size) == ("upload", "", a.size)
            continue
        assert (b.kind, b.project, b.filename, b.version, b.size, b.status, b.tenant) == (
            a.kind,
            a.project,
            a.filename,
            a.version,
            a.size,
            a.status,
            a.tenant,
        )
        assert ids.setdefault(a.client, b.client) == b.client  # one hashed id per client
    assert len(set(ids.values())) == len(ids)
    # the inferred catalogue holds every release downloaded in the log, at or after its upload
    for r in back.requests:
        if r.kind == "file" and r.status < 400:
            rel = back.catalogue.release(r.project, r.version)
            real = trace.catalogue.release(r.project, r.version)
            assert rel is not None and rel.time - 1_750_000_000.0 >= real.time - 1e-3
    # held, inferred from the log alone, never names a version the client did not download
    seen: dict[tuple[str, str], set[str]] = {}
    for r in back.requests:
        if r.held:
            assert r.held in seen[(r.client, r.project)]
        if r.kind == "file":
            seen.setdefault((r.client, r.project), set()).add(r.version)
