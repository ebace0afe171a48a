"""moto's S3 server on a free loopback port, as a separate process, shared by the S3 tests.

``moto_server`` (installed with ``moto[server]`` in the test extra) runs as a subprocess, not
``ThreadedMotoServer`` in the test process: the server processes of the scale tests reach it
too, and its request handling never competes with the test for the GIL.

Credentials reach the code under test the way they do in production: through boto3's chain,
here the environment (:data:`AWS_ENV`: moto accepts any key; IMDS and the shared files are
switched off so nothing on the machine leaks in). Use the ``moto`` fixture (session scoped) or
``MotoServer(workdir)``; ``bucket(name)`` creates a fresh bucket. Tests skip with the reason
when moto's server is not installed, and fail when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: The ``moto_server`` script next to the interpreter (the venv's), else on PATH.
MOTO_SERVER = (
    str(Path(sys.executable).with_name("moto_server"))
    if Path(sys.executable).with_name("moto_server").exists()
    else shutil.which("moto_server")
)

#: Environment for boto3's credential chain to find moto's (fake) keys and nothing else.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MotoServer:
    """One ``moto_server`` process; ``endpoint_url`` to reach it, ``stop()`` to take it down."""

    def __init__(self, workdir: Path) -> None:
        if MOTO_SERVER is None:
            if os.environ.get("CI") == "true":
                pytest.fail("moto_server is not installed, and CI=true: pip install 'moto[server]'")
            pytest.skip("moto_server is not installed (pip install 'moto[server]')")
        self._client: Any = None
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moto.log"
        env = {**os.environ, **AWS_ENV}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"moto_server did not start on port {self.port}:\n"
                    + self.log.read_text(errors="replace")
                )
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        """Environment variables for a child process (a server) to use this S3."""
        return dict(AWS_ENV)

    def client(self) -> Any:
        """A plain boto3 S3 client on this server (for setting up and tampering in tests)."""
        if self._client is not None:
            return self._client
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=AWS_ENV["AWS_SESSION_TOKEN"],
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        )
        self._client = session.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name by default) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server for the session; boto3's chain sees its keys while it runs."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
