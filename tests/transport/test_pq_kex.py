"""The hybrid X25519MLKEM768 key exchange on HTTP/3 (flag PQ_KEY_EXCHANGE).

The patch is process-wide (it rewrites ``aioquic.tls``), so every patched peer runs in a
subprocess: a patched or unpatched server (start_server with or without pq_key_exchange) and
patched clients (Transport with the flag on). The pytest process only ever runs unpatched
peers and the sans-IO key objects, and checks at the end that it was never patched.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_core.flags import CATALOGUE, FeatureFlags, Stage
from registry_core.transport import Transport, _pqkex

pytestmark = pytest.mark.network

RESOLVE = {"registry.test": "127.0.0.1"}
BODY = b"hybrid key exchange\n" * 10

# A server in its own process: prints {"port": ...} once up, then one line of counters per
# line read on stdin; stops at EOF. argv: root cert key pq mangle ("1"/"0").
SERVER = textwrap.dedent(
    """
    import json, sys
    from registry_core.flags import FeatureFlags
    from registry_core.server import RegistryApp, start_server
    from registry_core.transport import _pqkex

    root, cert, key, pq, mangle = sys.argv[1:6]
    app = RegistryApp(root, flags=FeatureFlags(overrides={"QUIC_TRANSPORT": True}))
    handle = start_server(app, certfile=cert, keyfile=key, pq_key_exchange=pq == "1")
    if mangle == "1":  # the server's ciphertext share loses its last byte
        encode = _pqkex._PrivateKey.encode
        _pqkex._PrivateKey.encode = lambda self: encode(self)[:-1]

    def counts():
        return {"installed": _pqkex.installed(), "server": _pqkex.hybrid_exchanges("server"),
                "client": _pqkex.hybrid_exchanges("client")}

    print(json.dumps({"port": handle.port, **counts()}), flush=True)
    for _ in sys.stdin:
        print(json.dumps(counts()), flush=True)
    handle.stop()
    """
)

# Clients in one process: argv[1] is {"ca": ..., "pq": bool, "jobs": [{"url", "mangle"}]};
# prints one JSON object: per job the status or the error, with the client-side counter.
CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from registry_core.errors import TransportError
    from registry_core.flags import FeatureFlags
    from registry_core.transport import Transport, _pqkex

    cfg = json.loads(sys.argv[1])
    flags = FeatureFlags(overrides={"QUIC_TRANSPORT": True, "PQ_KEY_EXCHANGE": cfg["pq"]})
    state = {"mangle": False, "wrapped": False}

    def wrap():  # the client's encapsulation-key share loses its last byte while mangling
        encode = _pqkex._PrivateKey.encode
        _pqkex._PrivateKey.encode = lambda self: encode(self)[:-1] if state["mangle"] else (
            encode(self))
        state["wrapped"] = True

    async def job(url):
        async with Transport(verify=cfg["ca"], resolve={"registry.test": "127.0.0.1"},
                             http3=True, flags=flags, timeout=10) as t:
            try:
                r = await t.get(url)
            except TransportError as exc:
                return {"error": type(exc).__name__, "message": str(exc)}
            return {"status": r.status, "version": r.http_version, "body": r.content.decode()}

    async def main():
        out = []
        for j in cfg["jobs"]:
            if j.get("mangle") and not state["wrapped"]:
                wrap()
            state["mangle"] = bool(j.get("mangle"))
            before = _pqkex.hybrid_exchanges("client")
            res = await job(j["url"])
            res["hybrid"] = _pqkex.hybrid_exchanges("client") - before
            res["installed"] = _pqkex.installed()
            out.append(res)
        return out

    print(json.dumps(asyncio.run(main())))
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REGISTRY_CORE_FLAGS", None)
    return env


class _Server:
    def __init__(self, root, pki, *, pq: bool, mangle: bool = False) -> None:
        _, cert, key = pki
        args = [sys.executable, "-c", SERVER, str(root), cert, key, "1" if pq else "0"]
        self.proc = subprocess.Popen(
            [*args, "1" if mangle else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError(f"server process died (exit {self.proc.wait()})")
        self.started = json.loads(line)
        self.port = self.started["port"]

    def url(self, path: str = "/hello.txt") -> str:
        return f"https://registry.test:{self.port}{path}"

    def counts(self) -> dict:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("pq-root")
    (d / "hello.txt").write_bytes(BODY)
    return d


@pytest.fixture(scope="module")
def pq_server(root, pki):
    s = _Server(root, pki, pq=True)
    yield s
    s.close()


@pytest.fixture(scope="module")
def classical_server(root, pki):
    s = _Server(root, pki, pq=False)
    yield s
    s.close()


def _clients(pki, *, pq: bool, jobs: list[dict]) -> list[dict]:
    cfg = json.dumps({"ca": pki[0], "pq": pq, "jobs": jobs})
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, cfg],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def _get(pki, url: str) -> tuple[int, str, bytes]:
    flags = FeatureFlags(overrides={"QUIC_TRANSPORT": True})  # PQ_KEY_EXCHANGE off
    async with Transport(verify=pki[0], resolve=RESOLVE, http3=True, flags=flags) as t:
        r = await t.get(url)
        return r.status, r.http_version, r.content


def test_flag_is_experimental_and_off():
    flag = CATALOGUE["PQ_KEY_EXCHANGE"]
    assert flag.stage is Stage.EXPERIMENTAL and flag.component == "transport"
    assert not FeatureFlags().is_enabled("PQ_KEY_EXCHANGE")


def test_hybrid_both_sides_patched_classical_fallback_and_mangled_shares(pki, pq_server):
    assert pq_server.started["installed"] and pq_server.started["server"] == 0
    results = _clients(
        pki,
        pq=True,
        jobs=[
            {"url": pq_server.url()},
            {"url": pq_server.url(), "mangle": True},
            {"url": pq_server.url()},
        ],
    )
    ok, mangled, again = results
    # (1) patched client + patched server: 200 over HTTP/3, one hybrid exchange on each side
    assert ok["status"] == 200 and ok["version"] == "HTTP/3" and ok["body"] == BODY.decode()
    assert ok["installed"] and ok["hybrid"] == 1
    # (4) a client share one byte short: the handshake fails cleanly on both sides
    assert mangled["error"] in ("H3ConnectError", "TransportError"), mangled
    assert "error 303: ClientHello has an invalid key share" in mangled["message"]  # alert 47
    assert mangled["hybrid"] == 0
    assert again["status"] == 200 and again["hybrid"] == 1  # the server kept serving
    assert pq_server.counts()["server"] == 2  # the mangled share was refused, not counted
    # (3) an unpatched client (this process) -> patched server: classical, 200
    status, version, body = asyncio.run(_get(pki, pq_server.url()))
    assert (status, version, body) == (200, "HTTP/3", BODY)
    assert pq_server.counts()["server"] == 2


def test_patched_client_falls_back_on_unpatched_server(pki, classical_server):
    assert not classical_server.started["installed"]
    (res,) = _clients(pki, pq=True, jobs=[{"url": classical_server.url()}])
    # (2) the server does not know the group: it picks a classical share of the client's
    assert res["status"] == 200 and res["version"] == "HTTP/3" and res["hybrid"] == 0
    assert res["installed"]
    assert classical_server.counts() == {"installed": False, "server": 0, "client": 0}


def test_mangled_server_share_fails_the_client_cleanly(pki, root):
    server = _Server(root, pki, pq=True, mangle=True)
    try:
        res, again = _clients(pki, pq=True, jobs=[{"url": server.url()}, {"url": server.url()}])
        assert res["error"] in ("H3ConnectError", "TransportError"), res
        assert "error 303: ServerHello has an invalid key share" in res["message"]
        assert res["hybrid"] == 0  # the client refused the 1119-byte share
        # an unpatched client is unaffected (classical group, the mangling never runs)
        status, _, body = asyncio.run(_get(pki, server.url()))
        assert (status, body) == (200, BODY)
    finally:
        server.close()
    assert again["error"] in ("H3ConnectError", "TransportError")  # every time, not once


# -- the key objects, sans-IO (no aioquic patch: _PrivateKey is plain cryptography) -----------


def _pair() -> tuple[_pqkex._PrivateKey, bytes, _pqkex._PrivateKey, bytes, bytes, bytes]:
    client = _pqkex._PrivateKey()
    client_share = client.encode()
    server = _pqkex._PrivateKey()
    server_secret = server.exchange(None, _pqkex._Share(client_share))
    server_share = server.encode()
    client_secret = client.exchange(None, _pqkex._Share(server_share))
    return client, client_share, server, server_share, client_secret, server_secret


def test_wire_layout_matches_the_draft():
    from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    _, client_share, _, server_share, client_secret, server_secret = _pair()
    assert len(client_share) == 1184 + 32 and len(server_share) == 1088 + 32
    assert client_secret == server_secret and len(client_secret) == 64
    # an independent server built from the primitives, following the draft's layout
    x = x25519.X25519PrivateKey.generate()
    fresh = _pqkex._PrivateKey()
    fresh_share = fresh.encode()
    ek = mlkem.MLKEM768PublicKey.from_public_bytes(fresh_share[:1184])
    ss, ct = ek.encapsulate()
    xs = x.exchange(x25519.X25519PublicKey.from_public_bytes(fresh_share[1184:]))
    share = ct + x.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert fresh.exchange(None, _pqkex._Share(share)) == ss + xs  # ML-KEM ss first, then X25519
    assert _pqkex.hybrid_exchanges("client") >= 2 and _pqkex.hybrid_exchanges("server") >= 1


def test_a_key_is_single_use():
    client, _, server, server_share, _, _ = _pair()
    with pytest.raises(ValueError):
        client.exchange(None, _pqkex._Share(server_share))
    with pytest.raises(ValueError):
        client.encode()
    with pytest.raises(ValueError, match="1216"):  # a server refuses a server-sized share
        _pqkex._PrivateKey().exchange(None, _pqkex._Share(server_share))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=1300))
def test_any_share_is_refused_with_valueerror_or_gives_64_bytes(data):
    for share in (data, data.ljust(1216, b"\x01")[:1216], data.ljust(1120, b"\x02")[:1120]):
        for role in ("client", "server"):
            key = _pqkex._PrivateKey()
            if role == "client":
                key.encode()
            try:
                secret = key.exchange(None, _pqkex._Share(share))
            except ValueError:
                continue
            assert len(secret) == 64
            assert len(share) == (1120 if role == "client" else 1216)
        if len(share) not in (1216, 1120):
            with pytest.raises(ValueError):
                _pqkex._decode_share(share)
        else:
            assert _pqkex._decode_share(share).data == share


def test_install_fails_loudly_and_is_idempotent():
    script = textwrap.dedent(
        """
        import sys
        from aioquic import tls
        from registry_core.transport import _pqkex

        decode = tls.decode_public_key
        del tls.decode_public_key
        assert not _pqkex.supported()
        try:
            _pqkex.install()
        except _pqkex.PQKeyExchangeUnsupportedError as exc:
            print("internals:", exc)
        assert not _pqkex.installed()
        tls.decode_public_key = decode
        _pqkex.install(); _pqkex.install()
        groups = tls.Context(is_client=True)._supported_groups
        assert groups.count(_pqkex.X25519MLKEM768) == 1 and groups[0] == 0x11EC, groups
        assert tls.Context(is_client=False)._supported_groups[0] == 0x11EC
        print("installed:", _pqkex.installed())
        from registry_core.signing._report import _tls_facts
        print("report:", _tls_facts()["h3_pq_kex"])  # installed in this process, flag off

        import cryptography.hazmat.primitives.asymmetric as asymmetric
        del asymmetric.mlkem  # as if cryptography were older than 47
        sys.modules["cryptography.hazmat.primitives.asymmetric.mlkem"] = None
        try:
            _pqkex._primitives()
        except _pqkex.PQKeyExchangeUnsupportedError as exc:
            print("mlkem:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert done.returncode == 0, done.stderr
    import aioquic
    import cryptography

    out = done.stdout
    assert f"internals: aioquic {aioquic.__version__}" in out and "decode_public_key" in out
    assert "installed: True" in out and "report: True" in out
    assert "mlkem: X25519MLKEM768 needs ML-KEM-768 from cryptography >= 47" in out
    assert f"installed: cryptography {cryptography.__version__}" in out


def test_this_process_was_never_patched():
    from aioquic import tls

    assert _pqkex.supported()  # checks the stack without patching it
    assert not _pqkex.installed()
    assert not hasattr(tls, "X25519MLKEM768")
    assert _pqkex.X25519MLKEM768 not in tls.Context(is_client=True)._supported_groups
