"""First-download negotiation on RegistryApp over a real loopback hypercorn server (httpx):
files put in the served directory by hand (no upload, so no patch yet) get ``200`` and have
their EXPANDED patch queued once; then ``226`` in the mode the client's engines allow. Also
HEAD, Range and If-None-Match with first-download headers, the flags, a file nothing can be
expanded in (plain, remembered), a layout that needs ``recon``, a restart serving from the
PatchStore, and the ``exe`` suffix of delta modes. Waits are events, never sleeps.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
import zlib

import httpx
import pytest

from _servers import make_versions
from registry_core.delta import DeltaAggregator
from registry_core.flags import FeatureFlags
from registry_core.server import RegistryApp, start_server
from registry_core.server._app import EMPTY_SHA256, split_mode
from registry_core.server._patch_store import PatchStore

ON = FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": True})
EMPTY_TAG = f'"{hashlib.sha256(b"").hexdigest()}"'
TODAY = "zlib, miniz, recon, zstd-prefix, expanded, exe"
NO_RECON = "zlib, miniz, zstd-prefix, expanded"
WHEEL = "pkg/pkg-{}-py3-none-any.whl"


def first(engines: str = TODAY, **extra: str) -> dict[str, str]:
    return {"a-im": "rcdelta", "delta-engines": engines, **extra}


def _text(seed: int, n: int) -> bytes:
    rnd = random.Random(seed)
    words = [b'"name": ', b'"value"', b"{", b"}", b",\n", b"  ", b"true", b"null", b"12", b"[]"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words)
    return bytes(out[:n])


def _zip_raw(name: str, content: bytes, body: bytes) -> bytes:
    """A one-member zip whose deflated member is exactly ``body`` (written field by field)."""
    fname = name.encode()
    crc = zlib.crc32(content)
    fixed = struct.pack("<HHHHHIII", 20, 0, 8, 0, 0x5821, crc, len(body), len(content))
    local = b"PK\x03\x04" + fixed + struct.pack("<HH", len(fname), 0) + fname + body
    central = b"PK\x01\x02" + struct.pack("<H", 20) + fixed
    central += struct.pack("<HHHHHII", len(fname), 0, 0, 0, 0, 0, 0) + fname
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local), 0)
    out = local + central + end
    assert zipfile.ZipFile(io.BytesIO(out)).read(name) == content
    return out


def _needs_recon() -> bytes:
    """A zip whose member no zlib / miniz parameters reproduce (a sync flush in the middle):
    only the C core's reconstruction (``recon``) rebuilds it from its content."""
    text = _text(7, 400_000)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    half = len(text) // 2
    body = c.compress(text[:half]) + c.flush(zlib.Z_SYNC_FLUSH) + c.compress(text[half:])
    return _zip_raw("pkg/data.json", text, body + c.flush())


def _stored_random() -> bytes:
    """A wheel-named zip of random bytes, stored: nothing to expand, nothing smaller."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("noise/blob.bin", random.Random(3).randbytes(200_000))
    return buf.getvalue()


@pytest.fixture(scope="module")
def releases():
    return make_versions(2)


@pytest.fixture()
def tree(tmp_path, releases):
    (tmp_path / "pkg").mkdir()
    files = {WHEEL.format(v): data for v, data in releases}
    files["pkg/recon-1.0-py3-none-any.whl"] = _needs_recon()
    files["pkg/noise-1.0-py3-none-any.whl"] = _stored_random()
    for path, data in files.items():
        (tmp_path / path).write_bytes(data)
    return tmp_path, files


@pytest.fixture()
def serve(tree):
    """``serve(**kw)`` -> (app, httpx client) for the tree; all stopped at the end."""
    root, _ = tree
    opened = []

    def start(**kw):
        app = RegistryApp(root, **{"flags": ON, **kw})
        handle = start_server(app, tls=False)
        client = httpx.Client(base_url=handle.url(), timeout=60)
        opened.append((app, handle, client))
        return app, client

    yield start
    for app, handle, client in opened:
        client.close()
        handle.stop()
        app.close()


def _check_226(r: httpx.Response, data: bytes) -> None:
    assert r.status_code == 226
    assert r.headers["delta-base"] == EMPTY_TAG and r.headers["im"] == "rcdelta"
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert "delta-engines" in r.headers["vary"]
    assert int(r.headers["content-length"]) == len(r.content) < len(data)
    rebuilt = DeltaAggregator().apply(b"", r.content)
    assert hashlib.sha256(rebuilt).digest() == hashlib.sha256(data).digest()


def test_file_without_a_patch_gets_200_and_its_computation_queued_once(tree, serve, releases):
    _, files = tree
    app, client = serve()
    path = WHEEL.format(releases[1][0])
    data = files[path]
    for _ in range(3):  # never computed on the request path: the file at once, queued once
        r = client.get("/" + path, headers=first())
        assert r.status_code == 200 and r.content == data
    assert app.stats.first_downloads_scheduled == 1
    assert app.precompute_idle(timeout=120)
    assert app.stats.first_downloads_computed == 1
    _check_226(client.get("/" + path, headers=first()), data)
    assert app.stats.first_downloads_served == 1 and app.stats.first_downloads_computed == 1


def test_head_range_and_conditional_requests_stay_correct(tree, serve, releases):
    _, files = tree
    app, client = serve()
    path = WHEEL.format(releases[0][0])
    data = files[path]
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    # HEAD with nothing ready: 200 and no work queued (HEAD never causes work)
    h = client.head("/" + path, headers=first())
    assert h.status_code == 200 and int(h.headers["content-length"]) == len(data)
    assert app.stats.first_downloads_scheduled == 0
    app.precompute_first(path)
    assert app.precompute_idle(timeout=120)
    got = client.get("/" + path, headers=first())
    _check_226(got, data)
    # HEAD now says what GET sends, without a body
    h = client.head("/" + path, headers=first())
    assert h.status_code == 226 and h.content == b""
    assert h.headers["content-length"] == got.headers["content-length"]
    assert h.headers["content-digest"] == got.headers["content-digest"]
    # a Range is the file's bytes, not the patch's
    r = client.get("/" + path, headers=first(range="bytes=10-99"))
    assert r.status_code == 206 and r.content == data[10:100]
    # an If-Range naming another version: the range is dropped, the first download stands
    r = client.get("/" + path, headers=first(range="bytes=10-99", **{"if-range": EMPTY_TAG}))
    assert r.status_code == 226
    # the client holds the file already: 304, whatever else it names
    r = client.get("/" + path, headers=first(**{"if-none-match": etag}))
    assert r.status_code == 304 and r.content == b""
    # tags naming nothing the store holds: still a first download
    r = client.get("/" + path, headers=first(**{"if-none-match": f'"{"ab" * 32}"'}))
    assert r.status_code == 226 and r.content == got.content


def test_clients_that_cannot_rebuild_it_get_the_file(tree, serve, releases):
    _, files = tree
    app, client = serve()
    path = WHEEL.format(releases[0][0])
    data = files[path]
    app.precompute_first(path)
    assert app.precompute_idle(timeout=120)
    for headers in (
        {"a-im": "rcdelta", "delta-engines": "zlib, miniz, recon, zstd-prefix"},  # no expanded
        {"a-im": "rcdelta", "delta-engines": "recon, expanded"},  # not the reference engines
        {"a-im": "rcdelta"},  # says nothing about engines
        {"delta-engines": TODAY},  # no A-IM: no 226, ever
        {},
    ):
        r = client.get("/" + path, headers=headers)
        assert r.status_code == 200 and r.content == data, headers
    assert app.stats.first_downloads_served == 0


def test_flags_off_serve_the_file(tree, serve, releases):
    _, files = tree
    path = WHEEL.format(releases[0][0])
    for kw in (
        {"flags": FeatureFlags(overrides={"DELTA_AGGREGATOR": False, "DELTA_STABLE": True})},
        {"flags": FeatureFlags(overrides={"DELTA_AGGREGATOR": True, "DELTA_STABLE": False})},
        {"first_downloads": False},
    ):
        app, client = serve(**kw)
        app.precompute_first(path)
        assert app.precompute_idle(timeout=120)
        r = client.get("/" + path, headers=first())
        assert r.status_code == 200 and r.content == files[path]
        assert app.stats.first_downloads_computed == 0 and app.stats.first_downloads_scheduled == 0


def test_nothing_smaller_is_remembered_as_plain(tree, serve):
    root, files = tree
    app, client = serve()
    path = "pkg/noise-1.0-py3-none-any.whl"
    app.precompute_first(path)
    assert app.precompute_idle(timeout=120)
    assert app.stats.first_downloads_computed == 1 and app.stats.first_downloads_plain == 1
    for _ in range(2):
        r = client.get("/" + path, headers=first())
        assert r.status_code == 200 and r.content == files[path]
    assert app.stats.first_downloads_scheduled == 0  # known to be plain: nothing queued again
    store = PatchStore(root / ".registry-core" / "patches")
    sha = hashlib.sha256(files[path]).digest()
    assert store.get(EMPTY_SHA256, sha, "expandedrecon") == b""


def test_a_layout_that_needs_recon(tree, serve):
    _, files = tree
    app, client = serve()
    path = "pkg/recon-1.0-py3-none-any.whl"
    data = files[path]
    app.precompute_first(path)  # today's clients: expandedrecon
    assert app.precompute_idle(timeout=120)
    _check_226(client.get("/" + path, headers=first()), data)
    # a client without recon gets the file now, and the recon-free mode is computed apart
    r = client.get("/" + path, headers=first(NO_RECON))
    assert r.status_code == 200 and r.content == data
    assert app.stats.first_downloads_scheduled == 1
    assert app.precompute_idle(timeout=120)
    r = client.get("/" + path, headers=first(NO_RECON))
    # its only stream needs recon: without it nothing is smaller, so the file, remembered
    assert r.status_code == 200 and r.content == data
    assert app.stats.first_downloads_plain == 1
    assert DeltaAggregator(reconstruct=False).recompress(data) is None


def test_recon_free_mode_serves_reference_engine_layouts(tree, serve, releases):
    _, files = tree
    app, client = serve()
    path = WHEEL.format(releases[1][0])
    app.precompute_first(path, "expanded")
    assert app.precompute_idle(timeout=120)
    _check_226(client.get("/" + path, headers=first(NO_RECON)), files[path])
    # the two modes are kept apart: a recon client finds nothing yet
    assert client.get("/" + path, headers=first()).status_code == 200


def test_a_restart_serves_from_the_patch_store(tree, serve, releases):
    _, files = tree
    path = WHEEL.format(releases[0][0])
    app, _ = serve()
    app.precompute_first(path)
    assert app.precompute_idle(timeout=120) and app.stats.first_downloads_computed == 1
    fresh, client = serve()
    _check_226(client.get("/" + path, headers=first()), files[path])
    assert fresh.stats.first_downloads_computed == 0 and fresh.stats.patches_from_store == 1


def test_a_delta_wins_over_a_first_download(tree, serve, releases):
    _, files = tree
    (v0, d0), (v1, d1) = releases
    app, client = serve()
    app.precompute_first(WHEEL.format(v1))
    app.precompute(WHEEL.format(v1), [WHEEL.format(v0)])
    assert app.precompute_idle(timeout=120)
    r = client.get(
        "/" + WHEEL.format(v1),
        headers=first(
            "zlib, miniz, recon, zstd-prefix, expanded",
            **{"if-none-match": f'"{hashlib.sha256(d0).hexdigest()}"'},
        ),
    )
    assert r.status_code == 226 and r.headers["delta-base"] == f'"{hashlib.sha256(d0).hexdigest()}"'
    assert DeltaAggregator().apply(d0, r.content) == d1


def test_exe_is_a_mode_suffix_and_off_unless_named(tmp_path):
    app = RegistryApp(tmp_path, flags=ON)
    try:
        assert app._mode_for(frozenset({"zlib", "miniz", "recon", "zstd-prefix"})) == "reconz"
        assert app._mode_for(frozenset(TODAY.split(", "))) == "reconzexe"
        assert app._mode_for(frozenset({"exe"})) == "binaryexe"
        assert app._mode_for(None) == "archive"
        assert split_mode("reconzexe") == ("recon", True, True)
        assert split_mode("archive") == ("archive", False, False)
        assert split_mode("expandedrecon") == ("expandedrecon", False, False)
        for mode, exe in (
            ("reconz", False),
            ("reconzexe", True),
            ("binaryexe", True),
            ("archive", False),
            ("expandedrecon", True),  # expanded clients read EXEC sections
        ):
            assert app._aggregator(mode).exe is exe, mode
        assert app._aggregator("expandedrecon").reconstruct
        # a recompression may expand further than a diff (memory: one expanded form)
        assert app._aggregator("expanded").max_expanded_size == app.max_first_expanded_bytes
        assert app._aggregator("reconz").max_expanded_size == app.max_expanded_bytes
        assert not app._aggregator("expanded").reconstruct
        assert app._first_mode_for(frozenset(TODAY.split(", "))) == "expandedrecon"
        assert app._first_mode_for(frozenset(NO_RECON.split(", "))) == "expanded"
        assert app._first_mode_for(frozenset({"expanded", "zlib"})) is None
        assert app._first_mode_for(None) is None
    finally:
        app.close()


def test_first_download_patches_are_signed_when_first_served(tree, serve, releases):
    """With ``envelopes``, the 226 carries the envelope of the patch against the empty base;
    it is signed on first serve (the background worker signs nothing) and then reused."""
    _, files = tree
    calls: list[tuple[str, bytes, bytes, bytes]] = []

    def sign(path: str, target: bytes, base: bytes, patch: bytes) -> bytes:
        calls.append((path, target, base, patch))
        return b'{"payload": "", "signatures": []}'

    path = WHEEL.format(releases[0][0])
    app, client = serve(envelopes=sign)
    app.precompute_first(path)
    assert app.precompute_idle(timeout=120) and calls == []
    for _ in range(2):
        r = client.get("/" + path, headers=first())
        _check_226(r, files[path])
        assert "delta-envelope" in r.headers and 'rel="delta-envelope"' in r.headers["link"]
    assert len(calls) == 1
    (signed_path, target, base, patch) = calls[0]
    assert signed_path == path and base == EMPTY_SHA256
    assert target == hashlib.sha256(files[path]).digest()
    assert patch == hashlib.sha256(r.content).digest()


def test_a_small_saving_is_not_worth_the_rebuild(tree, serve):
    """A patch saving less than ``min_delta_saving`` of the file is remembered as plain: the
    client's rebuild would cost more than the bytes it saves."""
    import io
    import os
    import zipfile

    root, _ = tree
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("pkg/data.bin", date_time=(2026, 1, 1, 0, 0, 0))
        zf.writestr(info, os.urandom(200_000))  # stored, incompressible: most of the file
        info = zipfile.ZipInfo("pkg/text.py", date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, b"".join(b"value_%d = %d\n" % (i, i * i) for i in range(4000)))
    data = buf.getvalue()
    path = "pkg/mostly-1.0-py3-none-any.whl"
    (root / path).write_bytes(data)
    from registry_core.delta import DeltaAggregator

    patch = DeltaAggregator().recompress(data)
    assert patch is not None and 0.9 * len(data) < len(patch) < len(data)  # a small saving
    app, client = serve()  # min_delta_saving=0.1, the default
    app.precompute_first(path)
    assert app.precompute_idle(timeout=120)
    for _ in range(2):
        r = client.get("/" + path, headers=first())
        assert r.status_code == 200 and r.content == data
    assert app.stats.first_downloads_computed == 1 and app.stats.first_downloads_plain == 1
    assert app.stats.first_downloads_scheduled == 0  # remembered: nothing queued again
