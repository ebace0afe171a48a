"""The rotel OTLP collector (PyPI ``rotel``: a rotel-agent binary) running in the test.

rotel receives OTLP/HTTP on a loopback port and forwards what it receives over a second
OTLP/HTTP hop (no compression) to :class:`_Sink`, a tiny receiver here that decodes the
``ExportTraceServiceRequest`` protobufs (opentelemetry-proto) so tests read back exactly the
spans that crossed the collector. Missing binary: skip locally, fail when CI=true.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_START_DEADLINE_S = 30.0


def rotel_binary() -> Path | None:
    try:
        import rotel
    except ImportError:
        return None
    path = Path(rotel.__file__).parent / "rotel-agent"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def require_rotel() -> Path:
    path = rotel_binary()
    if path is None:
        reason = "the rotel collector (pip install rotel) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _value(v) -> object:
    kind = v.WhichOneof("value")
    return None if kind is None else getattr(v, kind)


class _Sink:
    """The second hop: an OTLP/HTTP traces receiver that keeps the decoded spans."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.endswith("/v1/traces"):
                    request = trace_service_pb2.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    sink._add(request)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _add(self, request) -> None:
        found = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    found.append(
                        {
                            "name": s.name,
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "kind": s.kind,
                            "status": s.status.code,
                            "resource": resource,
                        }
                    )
        with self.cond:
            self.spans.extend(found)
            self.cond.notify_all()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Collector:
    """A running rotel-agent; ``endpoint`` is where an OTLP/HTTP exporter sends."""

    def __init__(self, binary: Path, directory: Path) -> None:
        self.sink = _Sink()
        self.directory = directory
        self.proc: subprocess.Popen | None = None
        for _attempt in range(3):  # a port taken between free_port() and rotel's bind: retry
            self.http_port, grpc_port = free_port(), free_port()
            args = [
                str(binary),
                "start",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.http_port}",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{grpc_port}",
                "--exporter",
                "otlp",
                "--otlp-exporter-protocol",
                "http",
                "--otlp-exporter-endpoint",
                f"http://127.0.0.1:{self.sink.port}",
                "--otlp-exporter-compression",
                "none",
                "--batch-timeout",
                "20ms",
                "--pid-file",
                str(directory / "rotel.pid"),
                "--log-file",
                str(directory / "rotel.log"),
            ]
            self.log = open(directory / "rotel.out", "wb")  # noqa: SIM115 - closed in stop()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}
            self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
            if self._wait_listening():
                return
            self.stop(close_sink=False)
        self.sink.close()
        raise RuntimeError(f"rotel did not start: {(directory / 'rotel.out').read_text()[-2000:]}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _wait_listening(self) -> bool:
        # a bounded poll for the port (rotel prints nothing machine-readable when ready)
        deadline = time.monotonic() + _START_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.http_port), timeout=1),
            ):
                return True
            time.sleep(0.02)
        return False

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict]:
        """The spans received so far, once ``predicate(spans)`` holds (fails after timeout)."""
        deadline = time.monotonic() + timeout
        with self.sink.cond:
            while not predicate(self.sink.spans):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [s["name"] for s in self.sink.spans]
                    raise AssertionError(f"spans never arrived; got {names}")
                self.sink.cond.wait(left)
            return list(self.sink.spans)

    def stop(self, *, close_sink: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if close_sink:
            self.sink.close()


@pytest.fixture()
def rotel_collector(tmp_path):
    """A rotel collector forwarding to an in-test sink; stopped after the test."""
    collector = Collector(require_rotel(), tmp_path)
    try:
        yield collector
    finally:
        collector.stop()
