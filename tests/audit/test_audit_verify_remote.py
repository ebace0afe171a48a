"""The log over HTTP: the tenant route ``<base>/_/audit/`` (server/_audit_routes.handle on a
real hypercorn server, with a real TenantStore and tokens) serves it only to ``audit.read``
holders, the uniform 404 to everyone else; ``verify_log`` checks it by URL; any plain web
server serving the directory (the stdlib's) works as well. And the ``audit`` CLI."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from registry_core.audit import AuditEvent, AuditLog, MemorySink, verify_log
from registry_core.audit._note import verifiers_from_keyring
from registry_core.auth import Principal, Resource, Scope, TenantStore
from registry_core.cli._audit import add_audit_parser, run_audit
from registry_core.server import start_server
from registry_core.server._audit_routes import handle
from registry_core.server._auth_middleware import (
    NOT_FOUND_BODY,
    PRINCIPAL_KEY,
    authenticate,
    credentials,
    send_not_found,
)
from registry_core.signing import Keyring, keyring_dir

ORIGIN = "registry.example/acme"


class _TenantAudit:
    """The part of MultiTenantApp in front of the route: credentials -> principal -> handle."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        if not path.startswith("/_/audit/"):
            await send_not_found(send, scope["method"])
            return
        creds = credentials(scope["headers"])
        principal = Principal.anonymous("acme")
        if creds is not None:
            principal = authenticate(self.runtime.store, creds)
        child = {**scope, PRINCIPAL_KEY: principal}
        await handle(self.runtime, child, receive, send, path[len("/_/audit") :])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[SimpleNamespace]:
    registry = tmp_path / "acme"
    keyring = Keyring(keyring_dir(registry), insecure_plaintext=True)
    denials = MemorySink()
    store = TenantStore(tmp_path / "store.db", tenant="acme", audit=denials)
    store.grant("user:audrey", "auditor", Resource("acme"), by="test")
    store.grant("user:rita", "reader", Resource("acme"), by="test")
    auditor, _ = store.create_token(
        owner="user:audrey", scopes=[Scope.parse("acme", "audit.read:*")]
    )
    reader, _ = store.create_token(owner="user:rita", scopes=[Scope.parse("acme", "read:*")])
    log = AuditLog(
        registry / ".registry-core" / "audit", origin=ORIGIN, keyring=keyring, checkpoint_every=None
    )
    for i in range(300):
        log.emit(
            AuditEvent(
                kind="upload", tenant="acme", subject="user:a", outcome="ok", detail={"i": str(i)}
            )
        )
    runtime = SimpleNamespace(name="acme", store=store, audit=denials, audit_log=log)
    server = start_server(_TenantAudit(runtime), tls=False)
    try:
        yield SimpleNamespace(
            url=server.url().rstrip("/") + "/_/audit",
            log=log,
            keyring=keyring,
            registry=registry,
            auditor=auditor,
            reader=reader,
            denials=denials,
            tmp=tmp_path,
        )
    finally:
        server.stop()
        log.close()
        store.close()


def test_route_serves_auditors_only(site: SimpleNamespace) -> None:
    with httpx.Client() as http:
        r = http.get(site.url + "/checkpoint", headers={"Authorization": f"Bearer {site.auditor}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert r.headers["cache-control"] == "no-cache"
        assert r.content.startswith(f"{ORIGIN}\n300\n".encode())
        keys = verifiers_from_keyring(site.keyring, ORIGIN)  # generated with the first one
        r = http.get(
            site.url + "/tile/0/001.p/44", headers={"Authorization": f"Bearer {site.auditor}"}
        )
        assert r.status_code == 200 and len(r.content) == 44 * 32
        assert "immutable" in r.headers["cache-control"]
        nothing = [
            ("GET", "/checkpoint", None),  # anonymous
            ("GET", "/checkpoint", site.reader),  # read, not audit.read
            ("GET", "/tile/0/001.p/44", site.reader),
            ("POST", "/checkpoint", site.auditor),
            ("GET", "/tile/0/x000/001", site.auditor),  # not canonical
            ("GET", "/tile/0/../../lock", site.auditor),
            ("GET", "/tail", site.auditor),
            ("GET", "/lock", site.auditor),
            ("GET", "/tile/0/005", site.auditor),  # does not exist
            ("GET", "/", site.auditor),
        ]
        for method, path, token in nothing:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = http.request(method, site.url + path, headers=headers)
            assert (r.status_code, r.content) == (404, NOT_FOUND_BODY), (method, path)
    # denials were audited (to the tenant's sink), naming no secret
    assert "authz.denied" in site.denials.kinds() or site.denials.events
    assert all(site.reader not in repr(e) for e in site.denials.events)
    # the whole log verifies over the route, with the auditor's token
    report = verify_log(site.url, keys=keys, headers={"Authorization": f"Bearer {site.auditor}"})
    assert report.ok, report.problems
    assert report.size == 300 and report.entries_checked == 300
    # a new event: the next checkpoint fetched covers it
    site.log.emit(AuditEvent(kind="token.create", tenant="acme", subject="user:a", outcome="ok"))
    report = verify_log(site.url, keys=keys, headers={"Authorization": f"Bearer {site.auditor}"})
    assert report.ok and report.size == 301
    # without the token: nothing to verify, said in one line
    report = verify_log(site.url, keys=keys)
    assert report.problems == ["checkpoint: missing"]


@contextlib.contextmanager
def _static_server(directory: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="registry-core")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    return run_audit(parser.parse_args(list(argv)))


def test_cli_and_any_web_server(site: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    directory = site.registry / ".registry-core" / "audit"
    site.log.checkpoint()
    vkeys = site.tmp / "audit.vkeys"
    assert _cli("audit", "keys", str(site.registry), "--origin", ORIGIN) == 0
    vkeys.write_text(capsys.readouterr().out)
    assert len(vkeys.read_text().splitlines()) == 2
    trusted = site.tmp / "trusted"
    trusted.write_bytes((directory / "checkpoint").read_bytes())
    assert _cli("audit", "verify", str(directory), "--key", str(vkeys), "--origin", ORIGIN) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {ORIGIN} size 300 ") and "ed25519 + ml-dsa-65" in out
    with _static_server(directory) as url:
        args = ("audit", "verify", url, "--key", str(vkeys), "--trusted-checkpoint", str(trusted))
        assert _cli(*args) == 0
        assert "consistent with the trusted checkpoint" in capsys.readouterr().out
    token = site.tmp / "token"
    token.write_text(site.auditor + "\n")
    assert _cli("audit", "verify", site.url, "--key", str(vkeys), "--token-file", str(token)) == 0
    capsys.readouterr()
    assert _cli("audit", "show", str(directory), "--entries", "2") == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[:2] == [f"origin {ORIGIN}", "size 300"] and shown[-1].startswith("299 {")
    # tampered: exit 1, one line per problem
    bundle = directory / "tile" / "entries" / "000"
    data = bytearray(bundle.read_bytes())
    data[10] ^= 1
    bundle.write_bytes(bytes(data))
    assert _cli("audit", "verify", str(directory), "--key", str(vkeys)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith(f"{directory}: ") for line in lines)
    assert any("entry 0:" in line for line in lines) and any("root:" in line for line in lines)
