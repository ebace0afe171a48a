"""A real PostgreSQL server (Debian's binaries) on a free loopback port, started by the tests.

``shared_server()`` starts one server per test process (stopped at exit) and returns it;
``PostgresServer(workdir)`` starts a private one (``stop()`` it). ``create_database()`` gives
each test its own database (a DSN with the password), so tests never see each other's rows.

PostgreSQL refuses to run as root: when the tests run as root (CI), initdb and postgres run as
``nobody`` (``subprocess`` ``user=``/``group=``) in a directory it owns, outside pytest's
root-only tmp tree. Host connections use scram-sha-256 with a generated password, so the
password handling of the code under test is exercised; the unix socket sits in the work dir.

Tests skip (with the reason) only when the binaries are absent and ``CI`` is not ``true``; on
CI a missing binary fails them. A server that is present but fails to start is a test error.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
INITDB = PG_BIN / "initdb"
POSTGRES = PG_BIN / "postgres"
SUPERUSER = "registry"


def available() -> bool:
    return INITDB.is_file() and POSTGRES.is_file()


def require() -> None:
    """Skip (locally) or fail (CI=true) when the PostgreSQL binaries are missing."""
    if available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is not installed ({INITDB}), and CI=true: install postgresql")
    pytest.skip(f"PostgreSQL is not installed ({INITDB}; apt-get install -y postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> dict[str, Any]:
    """Popen arguments running the child as ``nobody`` when we are root, else nothing."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("nobody")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PostgresServer:
    """One postgres process. ``dsn`` reaches its ``postgres`` database as the superuser;
    ``create_database()`` a fresh database; ``stop()`` takes it down and removes its files."""

    def __init__(self, workdir: Path | None = None) -> None:
        require()
        user = _as_user()
        # pytest's tmp tree is root-only (0700): as root, the server's user could not enter
        # it, so ``workdir`` is then ignored for the system temp directory
        self.root = Path(tempfile.mkdtemp(prefix="rc-pg-", dir=None if user else workdir))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.password = secrets.token_urlsafe(18)
        self.port = free_port()
        self.host = "127.0.0.1"
        self._counter = itertools.count()
        self._lock = threading.Lock()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        for d in (self.data, self.socket_dir):
            d.mkdir(mode=0o700)
        self.log.touch()
        if user:
            for p in (self.data, self.socket_dir, self.log, pwfile):
                os.chown(p, user["user"], user["group"])
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        subprocess.run(
            [
                str(INITDB),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self.root,
            **user,
        )
        pwfile.unlink()
        self._env, self._user = env, user
        self.dsn = self.dsn_for("postgres")
        self._start()

    def _start(self) -> None:
        env, user = self._env, self._user
        self._logf = open(self.log, "ab")  # noqa: SIM115 (held for the process's life)
        self.proc = subprocess.Popen(
            [
                str(POSTGRES),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
                # a test server: durability is not what is under test, speed is
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
            **user,
        )
        self._wait_ready()

    def dsn_for(self, dbname: str, *, password: bool = True) -> str:
        auth = f"{SUPERUSER}:{self.password}" if password else SUPERUSER
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2) as c:
                    c.execute("SELECT 1")
                    return
            except psycopg.OperationalError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(remove=False)
                raise RuntimeError(
                    f"postgres did not start on port {self.port}:\n{self.log.read_text()[-4000:]}"
                )
            time.sleep(0.05)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its DSN (with the password)."""
        import psycopg

        with self._lock:
            name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def execute(self, dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """Run one statement (autocommit) as the superuser on ``dsn``; its rows, if any."""
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as c:
            cur = c.execute(sql, params)  # type: ignore[call-overload]
            return cur.fetchall() if cur.description else []

    def terminate_backends(self, dsn: str) -> int:
        """Kill every other connection to ``dsn``'s database (a dropped-connection test)."""
        import psycopg

        dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        rows = self.execute(
            self.dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        return len(rows)

    def restart(self) -> None:
        """Stop (fast shutdown: every connection dropped) and start again on the same port
        and data: what a failover or a restart does to the clients."""
        self.stop(remove=False)
        self._start()

    def stop(self, *, remove: bool = True) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """The test process's PostgreSQL server, started on first use and stopped at exit."""
    global _shared
    require()
    with _shared_lock:
        if _shared is None or _shared.proc.poll() is not None:
            _shared = PostgresServer()
            atexit.register(_shared.stop)
        return _shared
