"""BazelHTTPTier against a real nginx WebDAV cache (the Bazel docs' configuration).

nginx comes from Debian (tests/cache/_nginx.py); the tests skip with the reason when it is
absent and fail when CI=true. bazel-remote is not packaged here, so its zstd convention (PUT
``Content-Encoding: zstd`` + ``X-Digest-SizeBytes``, GET ``Accept-Encoding: zstd``) is checked
against ``_ZstdCache`` below: a small loopback server that does what bazel-remote's README and
server/http.go say (decode, check the size, store under the uncompressed digest).
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from _nginx import NginxServer, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.cache import BuildCache, LocalStore
from registry_core.cache._bazel import PASSWORD_ENV, TOKEN_ENV, USER_ENV, BazelHTTPTier
from registry_core.cache._reapi import Digest
from registry_core.cache._run import RunResult
from registry_core.cache._tiers import ActionTier
from registry_core.errors import CacheError, InvalidArgumentError, InvalidTypeError
from registry_core.flags import FeatureFlags

pytestmark = pytest.mark.network

HEX = "0123456789abcdef"
keys = st.text(alphabet=HEX, min_size=64, max_size=64)
_FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    server = NginxServer(tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


@pytest.fixture
def private_nginx(tmp_path: Path) -> Iterator[NginxServer]:
    """A server of this test's own, so the test may stop it."""
    server = NginxServer(tmp_path / "nginx")
    yield server
    server.stop()


@pytest.fixture
def tier(nginx: NginxServer) -> Iterator[BazelHTTPTier]:
    t = BazelHTTPTier(nginx.url, timeout=5.0)
    yield t
    t.close()


def test_is_an_action_tier(tier):
    assert isinstance(tier, ActionTier)
    assert tier.name == "bazel-http"


@settings(max_examples=25, suppress_health_check=_FIXTURE_OK)
@given(key=keys, data=st.binary(max_size=4096))
def test_action_round_trip_and_miss(tier, nginx, key, data):
    other = key[::-1] if key[::-1] != key else "f" * 64
    if not nginx.blob_path(f"ac/{other}").exists():
        assert tier.get_action(other) is None  # a 404 is a miss
    tier.put_action(key, data)
    assert tier.get_action(key) == data
    assert nginx.blob_path(f"ac/{key}").read_bytes() == data  # stored as sent: the protocol


@pytest.mark.parametrize("size", [0, 1, 1000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3_000_001])
def test_blob_round_trip_head_and_miss(tier, nginx, size):
    data = hashlib.shake_256(str(size).encode()).digest(size) if size else b""
    digest = Digest.of(data)
    nginx.blob_path(f"cas/{digest.hash}").unlink(missing_ok=True)
    assert tier.get_blob(digest) is None
    assert not tier.has_blob(digest)
    tier.put_blob(digest, data)
    assert tier.has_blob(digest)
    assert tier.get_blob(digest) == data
    assert nginx.blob_path(f"cas/{digest.hash}").read_bytes() == data


def test_ten_megabyte_blob_streamed_to_and_from_files(tier, nginx, tmp_path):
    data = os.urandom(10 << 20)
    src = tmp_path / "out.bin"
    src.write_bytes(data)
    digest = Digest.of(data)
    tier.put_blob_file(digest, src)
    assert nginx.blob_path(f"cas/{digest.hash}").read_bytes() == data
    dest = tmp_path / "restored.bin"
    assert tier.fetch_blob(digest, dest)
    assert dest.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "restored.bin"]
    stats = tier.stats
    assert stats.bytes_read >= len(data) and stats.bytes_written >= len(data)


def test_instance_prefix(nginx):
    key = hashlib.sha256(b"instance").hexdigest()
    with (
        BazelHTTPTier(nginx.url, instance="team-a/linux") as a,
        BazelHTTPTier(nginx.url, instance="team-b") as b,
    ):
        a.put_action(key, b"result-a")
        assert nginx.blob_path(f"team-a/linux/ac/{key}").read_bytes() == b"result-a"
        assert a.get_action(key) == b"result-a"
        assert b.get_action(key) is None
        assert a.url.endswith("/cache/team-a/linux")


@pytest.mark.parametrize("bad", ["", "a//b", "../x", "a/./b", "a b", "x?y", "é", "/lead", "t/"])
def test_bad_instance_names_refused(nginx, bad):
    with pytest.raises(InvalidArgumentError):
        BazelHTTPTier(nginx.url, instance=bad)


@pytest.mark.parametrize("how", ["flipped", "truncated", "longer", "replaced-empty"])
def test_tampered_blob_on_disk_is_a_miss_with_a_warning(tier, nginx, tmp_path, caplog, how):
    data = os.urandom(200_000) + how.encode()
    digest = Digest.of(data)
    tier.put_blob(digest, data)
    path = nginx.blob_path(f"cas/{digest.hash}")
    stored = bytearray(path.read_bytes())
    if how == "flipped":
        stored[1234] ^= 0x01
    elif how == "truncated":
        del stored[-10:]
    elif how == "longer":
        stored += b"!"
    else:
        stored = bytearray()
    path.write_bytes(stored)
    before = tier.stats.corrupt
    with caplog.at_level(logging.WARNING, logger="registry_core.cache"):
        assert tier.get_blob(digest) is None
        assert not tier.fetch_blob(digest, tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left
    assert tier.stats.corrupt == before + 2
    assert "treated as a miss" in caplog.text and digest.hash in caplog.text
    # HEAD cannot see content, but the tier remembers what came back wrong: has_blob says
    # False so a caller uploads the good bytes again; a fresh tier sees a wrong length only
    assert not tier.has_blob(digest)
    with BazelHTTPTier(nginx.url) as fresh:
        assert fresh.has_blob(digest) == (how == "flipped")
    tier.put_blob(digest, data)
    assert tier.has_blob(digest) and tier.get_blob(digest) == data


def test_an_action_result_over_the_bound_is_an_error_not_a_read(nginx):
    key = hashlib.sha256(b"too big").hexdigest()
    path = nginx.blob_path(f"ac/{key}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 5000)  # written by someone else
    with BazelHTTPTier(nginx.url, max_action_bytes=1000) as tier:
        with pytest.raises(CacheError, match="over max_action_bytes=1000"):
            tier.get_action(key)
        assert tier.stats.bytes_read == 0


def test_one_tier_shared_by_threads(tier):
    blobs = [os.urandom(50_000 + i) for i in range(24)]
    errors: list[BaseException] = []

    def work(part: list[bytes]) -> None:
        try:
            for data in part:
                d = Digest.of(data)
                tier.put_blob(d, data)
                assert tier.has_blob(d) and tier.get_blob(d) == data
                tier.put_action(d.hash, data[:100])
                assert tier.get_action(d.hash) == data[:100]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(blobs[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert tier.stats.errors == 0


def test_nginx_stopped_mid_use_raises_cache_error(private_nginx, tmp_path):
    tier = BazelHTTPTier(private_nginx.url, timeout=2.0)
    data = b"before the outage"
    digest = Digest.of(data)
    key = "1" * 64
    tier.put_blob(digest, data)
    tier.put_action(key, b"r")
    assert tier.get_blob(digest) == data  # a keep-alive connection is now in the pool
    private_nginx.stop()
    calls = [
        lambda: tier.get_action(key),
        lambda: tier.put_action(key, b"r"),
        lambda: tier.get_blob(digest),
        lambda: tier.has_blob(digest),
        lambda: tier.put_blob(digest, data),
        lambda: tier.fetch_blob(digest, tmp_path / "f"),
        tier.ping,
    ]
    for call in calls:
        with pytest.raises(CacheError, match=r"bazel-http tier \(http://127\.0\.0\.1:\d+/cache\)"):
            call()
    assert tier.stats.errors == len(calls)
    assert not (tmp_path / "f").exists()
    tier.close()


def test_nothing_listening_raises_cache_error():
    url = f"http://127.0.0.1:{free_port()}/"
    with (
        BazelHTTPTier(url, timeout=2.0) as tier,
        pytest.raises(CacheError, match="ConnectError"),
    ):
        tier.get_action("2" * 64)


def test_body_too_large_for_nginx_is_a_cache_error_with_the_remedy(tmp_path):
    server = NginxServer(tmp_path / "small", max_body="1k")
    try:
        with BazelHTTPTier(server.url) as tier:
            data = b"x" * 4096
            with pytest.raises(CacheError, match="HTTP 413.*client_max_body_size"):
                tier.put_blob(Digest.of(data), data)
            tier.ping()  # still usable
        with pytest.raises(InvalidArgumentError, match="CA bundle"):
            BazelHTTPTier(server.url, verify=str(tmp_path / "missing.pem"))
    finally:
        server.stop()


def test_a_changed_file_is_not_uploaded(tier, nginx, tmp_path):
    src = tmp_path / "o.bin"
    src.write_bytes(os.urandom(3 << 20))
    digest = Digest.of(src.read_bytes())
    src.write_bytes(src.read_bytes()[:-1] + b"\0")  # changed after it was hashed
    with pytest.raises(InvalidArgumentError, match="did it change"):
        tier.put_blob_file(digest, src)
    assert not nginx.blob_path(f"cas/{digest.hash}").exists()  # the request was cut short
    tier.ping()  # the tier goes on


def test_put_blob_refuses_content_that_is_not_the_digest(tier, nginx):
    digest = Digest.of(b"right")
    with pytest.raises(InvalidArgumentError):
        tier.put_blob(digest, b"wrong")
    assert not nginx.blob_path(f"cas/{digest.hash}").exists()


def test_argument_checks(nginx):
    with pytest.raises(InvalidArgumentError):
        BazelHTTPTier("ftp://host/cache")
    with pytest.raises(InvalidArgumentError):
        BazelHTTPTier("http:///nohost")
    with pytest.raises(InvalidArgumentError):
        BazelHTTPTier(nginx.url + "?x=1")
    with pytest.raises(InvalidArgumentError):
        BazelHTTPTier(nginx.url, timeout=0)
    with BazelHTTPTier(nginx.url) as tier:
        with pytest.raises(InvalidArgumentError):
            tier.get_action("A" * 64)
        with pytest.raises(InvalidArgumentError):
            tier.put_action("../" + "a" * 61, b"")
        with pytest.raises(InvalidTypeError):
            tier.get_blob("a" * 64)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            tier.put_action("a" * 64, b"x" * (tier.max_action_bytes + 1))


def test_credentials_never_shown_and_refused_in_clear_text(nginx):
    secret = "s3cr3t-token-value"
    with pytest.raises(InvalidArgumentError, match="clear text"):
        BazelHTTPTier("http://cache.example.com/", bearer_token=secret)
    with pytest.raises(InvalidArgumentError, match="more than one"):
        BazelHTTPTier(nginx.url, bearer_token=secret, basic_auth=("u", "p"))
    with pytest.raises(InvalidArgumentError, match="not both"):
        BazelHTTPTier(nginx.url, env={TOKEN_ENV: "a", USER_ENV: "b"})
    url = nginx.url.replace("http://", f"http://user:{secret}@")
    with BazelHTTPTier(url) as tier:
        assert secret not in repr(tier) and secret not in tier.url and secret not in tier.name
        tier.put_action("3" * 64, b"ok")  # nginx ignores the credentials; loopback allows them
    dead = f"http://user:{secret}@127.0.0.1:{free_port()}/cache"
    with BazelHTTPTier(dead, timeout=2.0) as tier, pytest.raises(CacheError) as info:
        tier.get_action("3" * 64)
    assert secret not in str(info.value) and "user" not in str(info.value)
    with BazelHTTPTier(nginx.url, env={TOKEN_ENV: secret}) as tier:
        assert tier._client.headers["authorization"] == f"Bearer {secret}"
    with BazelHTTPTier(nginx.url, env={USER_ENV: "ci", PASSWORD_ENV: secret}) as tier:
        assert tier._client.headers["authorization"].startswith("Basic ")
    with BazelHTTPTier(nginx.url, env={}) as tier:
        assert "authorization" not in tier._client.headers


def test_zstd_against_nginx_stores_the_frame_and_reads_miss(nginx, caplog):
    """nginx keeps bodies as sent: with zstd on, reads fail their check (so keep it off)."""
    data = b"compressible " * 10_000
    digest = Digest.of(data)
    with BazelHTTPTier(nginx.url, zstd_uploads=True, zstd_downloads=False) as tier:
        tier.put_blob(digest, data)
        stored = nginx.blob_path(f"cas/{digest.hash}").read_bytes()
        assert len(stored) < len(data)
        assert zstandard.ZstdDecompressor().decompress(stored) == data
        with caplog.at_level(logging.WARNING, logger="registry_core.cache"):
            assert tier.get_blob(digest) is None
        assert "treated as a miss" in caplog.text


# -- bazel-remote's zstd convention, on a stand-in server ------------------------------------


class _ZstdCache(http.server.ThreadingHTTPServer):
    """A loopback server doing what bazel-remote documents for zstd (see the module doc)."""

    daemon_threads = True
    bomb: bytes | None = None  # served as the zstd body of every CAS GET when set

    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}
        self.seen: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _ZstdHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ZstdHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ZstdCache

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self) -> None:
        self.server.seen.append(dict(self.headers))
        body = self.rfile.read(int(self.headers["Content-Length"]))
        size = int(self.headers.get("X-Digest-SizeBytes") or len(body))
        if self.headers.get("Content-Encoding") == "zstd":
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=size)
        name = self.path.rsplit("/", 1)[-1]
        if len(body) != size or ("/cas/" in self.path and hashlib.sha256(body).hexdigest() != name):
            self._reply(400, b"sizes or digest do not match")
            return
        self.server.store[self.path] = body
        self._reply(200)

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        body = self.server.store.get(self.path)
        if body is None:
            self._reply(404, b"Not found")
            return
        if "/cas/" in self.path and "zstd" in self.headers.get("Accept-Encoding", ""):
            frame = self.server.bomb or zstandard.ZstdCompressor().compress(body)
            self._reply(200, frame, {"Content-Encoding": "zstd"})
            return
        self._reply(200, body)

    do_HEAD = do_GET


@pytest.fixture
def zstd_cache() -> Iterator[_ZstdCache]:
    server = _ZstdCache()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@settings(max_examples=20, suppress_health_check=_FIXTURE_OK)
@given(data=st.binary(max_size=20_000) | st.builds(lambda n: b"a" * n, st.integers(0, 3 << 20)))
def test_zstd_uploads_and_downloads_round_trip(zstd_cache, data):
    digest = Digest.of(data)
    with BazelHTTPTier(zstd_cache.url, zstd_uploads=True) as tier:
        tier.put_blob(digest, data)
        put = zstd_cache.seen[-1]
        assert put["Content-Encoding"] == "zstd"
        assert put["X-Digest-SizeBytes"] == str(len(data))
        assert tier.get_blob(digest) == data
        assert "zstd" in zstd_cache.seen[-1]["Accept-Encoding"]


def test_zstd_file_upload_via_spool(zstd_cache, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(b"pattern-" * (2 << 20))  # 16 MiB: past the in-memory spool size
    digest = Digest.of(src.read_bytes())
    with BazelHTTPTier(zstd_cache.url, zstd_uploads=True) as tier:
        tier.put_blob_file(digest, src)
        assert int(zstd_cache.seen[-1]["Content-Length"]) < digest.size_bytes // 100
        assert tier.fetch_blob(digest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_zstd_bomb_is_a_bounded_miss(zstd_cache, caplog):
    data = b"small"
    digest = Digest.of(data)
    with BazelHTTPTier(zstd_cache.url, zstd_uploads=True) as tier:
        tier.put_blob(digest, data)
        zstd_cache.bomb = zstandard.ZstdCompressor().compress(b"\0" * (256 << 20))
        with caplog.at_level(logging.WARNING, logger="registry_core.cache"):
            assert tier.get_blob(digest) is None  # decoding stops past 5 bytes
        assert "longer than its size" in caplog.text


def test_action_results_travel_uncompressed_even_with_zstd(zstd_cache):
    with BazelHTTPTier(zstd_cache.url, zstd_uploads=True) as tier:
        tier.put_action("4" * 64, b"result")
        assert "Content-Encoding" not in zstd_cache.seen[-1]
        assert tier.get_action("4" * 64) == b"result"
        assert zstd_cache.seen[-1]["Accept-Encoding"] == "identity"


def test_unexpected_status_and_encoding_are_cache_errors():
    """A server answering 500, a redirect or gzip: each a CacheError naming it."""
    # One connection per answer, closed after it: each says so (Connection: close), or the
    # client may reuse the closed connection and see a reset instead of the next answer.
    answers = iter(
        [
            b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 302 Found\r\nConnection: close\r\nLocation: http://elsewhere/\r\n"
            b"Content-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100\r\n\r\nshort",
        ]
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with BazelHTTPTier(url, timeout=5.0) as tier:
        with pytest.raises(CacheError, match="HTTP 500"):
            tier.get_action("5" * 64)
        with pytest.raises(CacheError, match="HTTP 302.*redirects are not followed"):
            tier.get_action("5" * 64)
        with pytest.raises(CacheError, match="Content-Encoding 'gzip'"):
            tier.get_action("5" * 64)
        with pytest.raises(CacheError, match="RemoteProtocolError|ReadError"):
            tier.get_action("5" * 64)  # the body stopped short of its Content-Length
    thread.join(5)
    listener.close()


# -- BuildCache.run with the Bazel tier on nginx ------------------------------------------------

ON = FeatureFlags(overrides={"INCREMENTAL_CACHE": True})

# A build step: two outputs (one executable, one of 3 MB), stdout and stderr, a run log.
STEP = textwrap.dedent(
    """
    import os, sys
    with open("runs.log", "a") as log:
        log.write("run\\n")
    src = open("in.txt", "rb").read()
    with open("out.bin", "wb") as f:
        f.write(src * (3_000_000 // len(src) + 1))
    with open("tool.sh", "wb") as f:
        f.write(b"#!/bin/sh\\necho " + src.strip() + b"\\n")
    os.chmod("tool.sh", 0o755)
    print("built", len(src))
    print("note", file=sys.stderr)
    """
)


def _work(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "step.py").write_text(STEP)
    (root / "in.txt").write_bytes(b"same input\n")
    return root


def _step(cache: BuildCache, work: Path, remote: BazelHTTPTier | None = None) -> RunResult:
    return cache.run(
        [sys.executable, "step.py"],
        inputs=["in.txt", "step.py"],
        outputs=["out.bin", "tool.sh"],
        cwd=work,
        remote=remote,
    )


def _runs(work: Path) -> int:
    log = work / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_second_machine_gets_a_remote_hit_restoring_outputs_byte_identical(nginx, tmp_path):
    remote = BazelHTTPTier(nginx.url, instance=f"t{os.getpid()}-{time.monotonic_ns()}")
    first_work = _work(tmp_path / "machine1" / "src")
    m1 = BuildCache(LocalStore(tmp_path / "machine1" / "cache", fsync=False), flags=ON)
    first = _step(m1, first_work, remote)
    assert not first.hit and first.stored and _runs(first_work) == 1
    # machine 2: another checkout path, an empty local cache, the same remote
    work2 = _work(tmp_path / "machine2" / "checkout")
    m2 = BuildCache(LocalStore(tmp_path / "machine2" / "cache", fsync=False), flags=ON)
    hit = _step(m2, work2, remote)
    assert hit.hit and hit.tier == "bazel-http" and _runs(work2) == 0
    assert hit.stdout == first.stdout and hit.stderr == first.stderr
    for name in ("out.bin", "tool.sh"):
        assert (work2 / name).read_bytes() == (first_work / name).read_bytes()
    assert (work2 / "tool.sh").stat().st_mode & stat.S_IXUSR
    assert not (work2 / "out.bin").stat().st_mode & stat.S_IXUSR
    assert remote.stats.hits >= 4  # the action result, two outputs, stdout (stderr differs)
    # back-filled: machine 2 now hits locally without the remote
    (work2 / "out.bin").unlink()
    assert _step(m2, work2).tier == "local"
    remote.close()


def test_a_tampered_remote_blob_is_a_miss_then_healed(nginx, tmp_path, caplog):
    remote = BazelHTTPTier(nginx.url, instance=f"h{os.getpid()}-{time.monotonic_ns()}")
    w1 = _work(tmp_path / "m1" / "w")
    _step(BuildCache(LocalStore(tmp_path / "m1" / "c", fsync=False), flags=ON), w1, remote)
    out = (w1 / "out.bin").read_bytes()
    blob = nginx.blob_path(f"{remote.instance}/cas/{Digest.of(out).hash}")
    damaged = bytearray(blob.read_bytes())
    damaged[100] ^= 0x55
    blob.write_bytes(damaged)
    w2 = _work(tmp_path / "m2" / "w")
    with caplog.at_level(logging.WARNING, logger="registry_core.cache"):
        r = _step(BuildCache(LocalStore(tmp_path / "m2" / "c", fsync=False), flags=ON), w2, remote)
    assert not r.hit and r.stored and _runs(w2) == 1  # rebuilt, never the damaged bytes
    assert (w2 / "out.bin").read_bytes() == out
    assert "treated as a miss" in caplog.text
    assert blob.read_bytes() == out  # the rerun overwrote it
    w3 = _work(tmp_path / "m3" / "w")
    r3 = _step(BuildCache(LocalStore(tmp_path / "m3" / "c", fsync=False), flags=ON), w3, remote)
    assert r3.hit and r3.tier == "bazel-http"
    remote.close()


def test_nginx_stopped_the_build_still_succeeds_with_one_warning(private_nginx, tmp_path, caplog):
    remote = BazelHTTPTier(private_nginx.url, timeout=2.0)
    work = _work(tmp_path / "w")
    cache = BuildCache(LocalStore(tmp_path / "c", fsync=False), remote, flags=ON)
    assert _step(cache, work).stored  # uploaded while nginx ran
    private_nginx.stop()
    (work / "in.txt").write_bytes(b"changed input\n")  # a new action: lookup and upload fail
    with caplog.at_level(logging.WARNING, logger="registry_core.cache"):
        r = _step(cache, work)
        assert r.exit_code == 0 and not r.hit and r.stored  # built and cached locally
        assert _step(cache, work).tier == "local"
        (work / "in.txt").write_bytes(b"third input\n")
        assert _step(cache, work).exit_code == 0
    warnings = [m for m in caplog.messages if "remote cache tier 'bazel-http' failed" in m]
    assert len(warnings) == 1 and "ConnectError" in warnings[0]
    assert remote.stats.errors >= 2
    remote.close()


# -- the CLI, in real processes: two "machines" sharing nginx -----------------------------------

DRIVER = textwrap.dedent(
    """
    import sys
    from registry_core.cli._main import _load_flags, _one_line_errors, _Parser
    from registry_core.cli._cache import add_cache_parser
    parser = _Parser(prog="registry-core")
    add_cache_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:])
    with _one_line_errors(args.command_name):
        args.flags = _load_flags()
        sys.exit(int(args.func(args) or 0))
    """
)


def test_cli_remote_hit_on_a_second_machine(nginx, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    secret = "token-that-must-not-show"
    instance = f"cli{os.getpid()}-{time.monotonic_ns()}"

    def machine(n: int) -> subprocess.CompletedProcess[bytes]:
        work = _work(tmp_path / f"m{n}" / "w")
        env = {
            **os.environ,
            "REGISTRY_CORE_FLAGS": "INCREMENTAL_CACHE=on",
            TOKEN_ENV: secret,  # sent to loopback nginx, which ignores it
        }
        argv = [sys.executable, str(driver), "cache", "run", "--cache-dir", str(tmp_path / f"c{n}")]
        argv += ["--remote", f"{nginx.url}/{instance}", "--input", "in.txt", "--input", "step.py"]
        argv += ["--output", "out.bin", "--output", "tool.sh", "--", sys.executable, "step.py"]
        r = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert secret.encode() not in r.stderr + r.stdout
        return r

    first = machine(1)
    assert b"miss" in first.stderr
    second = machine(2)
    assert b"hit (bazel-http)" in second.stderr, second.stderr
    assert second.stdout == first.stdout
    a, b = tmp_path / "m1" / "w", tmp_path / "m2" / "w"
    assert (b / "out.bin").read_bytes() == (a / "out.bin").read_bytes()
    assert _runs(b) == 0


def test_tls_is_verified(tmp_path):
    server = NginxServer(tmp_path / "tls", tls=True)
    try:
        key = "6" * 64
        with (
            BazelHTTPTier(server.url, timeout=5.0) as tier,  # the test CA is not trusted
            pytest.raises(CacheError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"),
        ):
            tier.put_action(key, b"x")
        with BazelHTTPTier(server.url, verify=str(server.ca_pem), bearer_token="t") as tier:
            tier.put_action(key, b"over tls")
            assert tier.get_action(key) == b"over tls"
        with pytest.raises(InvalidArgumentError, match="CA bundle"):
            BazelHTTPTier(server.url, verify=str(tmp_path / "missing.pem"))
    finally:
        server.stop()
