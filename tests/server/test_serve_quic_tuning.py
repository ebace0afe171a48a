"""The QUIC tuning ``_serve`` applies to hypercorn: the session-ticket store is the shared LRU
(bounded, each ticket used once), and when hypercorn's internals it relies on are missing the
server fails loudly naming the installed hypercorn version instead of serving untuned."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest


class _Ticket:
    def __init__(self, label: bytes) -> None:
        self.ticket = label


def test_ticket_store_is_the_shared_lru_bounded_and_single_use():
    from registry_core._util import LRU
    from registry_core.server._serve import _TicketStore

    store = _TicketStore(limit=3)
    assert isinstance(store._tickets, LRU)
    tickets = [_Ticket(bytes([i])) for i in range(5)]
    for t in tickets:
        store.add(t)
    assert len(store) == 3
    assert store.pop(b"\x00") is None  # oldest evicted
    assert store.pop(b"\x04") is tickets[4]
    assert store.pop(b"\x04") is None  # used once


def _run(code: str, cache: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = cache
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("missing", ["QuicConnection", "QuicProtocol"])
def test_missing_quic_internals_fail_loudly_with_the_version(missing):
    proc = _run(
        "import hypercorn.protocol.quic as hq\n"
        f"del hq.{missing}\n"
        "from registry_core.errors import RegistryCoreError\n"
        "from registry_core.server._serve import _install_quic_tuning\n"
        "try:\n"
        "    _install_quic_tuning()\n"
        "except RegistryCoreError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('NO ERROR')\n"
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    assert f"hypercorn {version('hypercorn')} is not supported" in out
    assert missing in out and ">=0.18,<0.19" in out


def test_changed_server_class_signature_fails_loudly(tmp_path):
    proc = _run(
        "import hypercorn.asyncio.tcp_server as ts\n"
        "class TCPServer:\n"
        "    def __init__(self, app, loop, config, context, reader, writer): pass\n"
        "ts.TCPServer = TCPServer\n"
        "from registry_core.errors import RegistryCoreError\n"
        "from registry_core.server import MemoryStorage, RegistryApp, start_server\n"
        "try:\n"
        "    start_server(RegistryApp(MemoryStorage()), quic=False,\n"
        "                 certfile=None, keyfile=None, names=['localhost'])\n"
        "except RegistryCoreError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('NO ERROR')\n",
        cache=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "is not supported: TCPServer(" in proc.stdout, proc.stdout
