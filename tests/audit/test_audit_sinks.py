"""Audit events and sinks: JSON form, bounds, log / JSON-lines / memory / fan-out sinks that
never raise into the audited operation."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from registry_core.audit import AuditEvent, AuditSink, FanOutSink, JsonlSink, LogSink, MemorySink


def _event(**kw: object) -> AuditEvent:
    fields: dict[str, object] = dict(kind="upload", tenant="acme", subject="user:a", outcome="ok")
    fields.update(kw)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_event_json() -> None:
    e = _event(action="upload", resource="main/foo", detail={"filename": "foo-1.0.tar.gz"})
    assert e.time_ns > 0
    assert e.to_json() == {
        "time_ns": e.time_ns,
        "kind": "upload",
        "tenant": "acme",
        "subject": "user:a",
        "outcome": "ok",
        "action": "upload",
        "resource": "main/foo",
        "detail": {"filename": "foo-1.0.tar.gz"},
    }
    assert _event(time_ns=5).time_ns == 5
    big = _event(subject="x" * 10_000, detail={str(i): "y" * 5000 for i in range(100)})
    j = big.to_json()
    assert len(j["subject"]) <= 1024 and len(j["detail"]) == 32
    assert all(len(v) <= 1024 for v in j["detail"].values())


def test_log_sink(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="registry_core.audit"):
        LogSink().emit(_event())
    (rec,) = [r for r in caplog.records if r.name == "registry_core.audit"]
    assert json.loads(rec.getMessage())["kind"] == "upload"


def test_memory_sink_bounded() -> None:
    sink = MemorySink(max_events=3)
    for i in range(5):
        sink.emit(_event(detail={"i": str(i)}))
    assert [e.detail["i"] for e in sink.events] == ["2", "3", "4"] and sink.kinds() == [
        "upload"
    ] * 3
    assert isinstance(sink, AuditSink)


def test_jsonl_sink(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlSink(path) as a, JsonlSink(path) as b:  # two writers (two processes) append
        barrier = threading.Barrier(4)

        def work(sink: JsonlSink, n: int) -> None:
            barrier.wait()
            for i in range(100):
                sink.emit(_event(detail={"w": str(n), "i": str(i)}))

        threads = [threading.Thread(target=work, args=(s, n)) for n, s in enumerate((a, b, a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["kind"] == "upload" for line in lines)
    assert path.stat().st_mode & 0o077 == 0
    a.emit(_event())  # closed: dropped, no error


def test_failing_sinks_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def emit(self, event: AuditEvent) -> None:
            raise RuntimeError("disk on fire")

    mem = MemorySink()
    FanOutSink(Broken(), mem).emit(_event())
    assert len(mem.events) == 1
    sink = JsonlSink(tmp_path / "a.jsonl")
    sink.close()
    sink._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail (EBADF)
    with caplog.at_level(logging.WARNING):
        sink.emit(_event())
        sink.emit(_event())
    assert sum("write failed" in r.getMessage() for r in caplog.records) == 1  # once per streak
    sink.close()
