"""Debian's pebble (an RFC 8555 ACME test server) started by the test, on loopback.

- Its HTTPS listener (the ACME directory) and management listener use a certificate from a
  CA generated here (trustme): the ACME client verifies TLS against ``ca_bundle``. The Debian
  package ships no test certificates.
- ``-dnsserver`` points at a loopback DNS server written with dnslib that answers A
  127.0.0.1 for the test domains (AAAA and CAA: no records), so the validator connects to us.
- ``httpPort`` is our HTTP-01 server's port; PEBBLE_VA_NOSLEEP=1 (no random validation delay),
  PEBBLE_WFE_NONCEREJECT=0 (no random bad nonces).
- Its issuing root is fetched from the management endpoint (``/roots/0``): pebble makes a new
  one at every start.

Missing binary: skip with the reason locally, fail when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PEBBLE = "/usr/bin/pebble"
STARTUP_S = 30.0


def require_pebble() -> str:
    path = shutil.which("pebble") or (PEBBLE if os.path.exists(PEBBLE) else None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pebble is not installed, and CI=true: apt-get install pebble")
        pytest.skip("pebble (Debian package) is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackDNS:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) answering ``names`` with 127.0.0.1."""

    def __init__(self, names: list[str]) -> None:
        from dnslib import QTYPE, RR, A
        from dnslib.server import BaseResolver, DNSServer

        wanted = {n.lower().rstrip(".") for n in names}
        self.queries: list[tuple[str, str]] = []
        queries = self.queries

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: Any, handler: Any) -> Any:
                reply = request.reply()
                qname = str(request.q.qname).lower().rstrip(".")
                qtype = QTYPE[request.q.qtype]
                queries.append((qname, qtype))
                if qname in wanted:
                    if qtype == "A":
                        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=5))
                else:
                    reply.header.rcode = 3  # NXDOMAIN
                return reply

        class QuietLogger:
            def __getattr__(self, name: str) -> Any:
                return lambda *a, **k: None

        resolver = Resolver()
        for _ in range(20):
            port = free_port()
            try:
                self.udp = DNSServer(resolver, port=port, address="127.0.0.1", logger=QuietLogger())
                self.tcp = DNSServer(
                    resolver, port=port, address="127.0.0.1", tcp=True, logger=QuietLogger()
                )
            except OSError:
                continue
            break
        self.port = port
        self.udp.start_thread()
        self.tcp.start_thread()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.udp.stop()
        self.tcp.stop()


@dataclass
class Pebble:
    directory_url: str
    management_url: str
    ca_bundle: str
    dns: LoopbackDNS
    proc: subprocess.Popen[str] = field(repr=False)
    log: list[str] = field(default_factory=list, repr=False)

    def root_pem(self) -> bytes:
        """The root that signs this run's certificates (verified over TLS with ca_bundle)."""
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(f"{self.management_url}/roots/0", context=ctx, timeout=30) as r:
            return r.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.dns.stop()


def start_pebble(tmp: Path, *, http_port: int, domains: list[str], tls_port: int = 0) -> Pebble:
    """Start pebble validating HTTP-01 against ``127.0.0.1:http_port`` for ``domains``."""
    binary = require_pebble()
    import trustme

    tmp.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, bundle = tmp / "pebble-cert.pem", tmp / "pebble-key.pem", tmp / "pebble-ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(bundle))
    dns = LoopbackDNS(domains)
    listen, manage = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{manage}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port or free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    config_path = tmp / "pebble-config.json"
    config_path.write_text(json.dumps(config))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
    }
    proc = subprocess.Popen(
        [binary, "-config", str(config_path), "-dnsserver", dns.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    log: list[str] = []
    up = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line.rstrip())
            if "Listening on" in line and f":{listen}" in line:
                up.set()
        up.set()  # exited: the check below says so

    threading.Thread(target=pump, daemon=True).start()
    pebble = Pebble(
        f"https://127.0.0.1:{listen}/dir",
        f"https://127.0.0.1:{manage}",
        str(bundle),
        dns,
        proc,
        log,
    )
    if not up.wait(STARTUP_S) or proc.poll() is not None:
        pebble.stop()
        raise RuntimeError("pebble did not start:\n" + "\n".join(log[-20:]))
    return pebble
