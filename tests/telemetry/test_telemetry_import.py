"""The telemetry seams stay cheap: importing registry_core, registry_core.server or
registry_core.telemetry (and calling span/annotate) loads neither OpenTelemetry nor
prometheus-client; a Telemetry with tracing and metrics off loads neither either. And the
JSON access line decodes back to what went in, on one line, for any text (hypothesis)."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from registry_core.telemetry._logs import access_line

_PROBE = """
import sys
import registry_core, registry_core.server, registry_core.proxy
from registry_core.telemetry import annotate, span
with span("x", a=1):
    annotate(tenant="t")
from registry_core.telemetry import Telemetry
Telemetry(metrics=False, access_log=False)
heavy = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "prometheus_client")))
print(",".join(heavy))
"""


def test_seams_import_nothing_heavy():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_import_registry_core_does_not_import_telemetry():
    probe = "import sys, registry_core; print('registry_core.telemetry' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


_text = st.text(max_size=40)


@given(
    start=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    request_id=_text,
    tenant=_text,
    method=_text,
    route=_text,
    path=_text,
    status=st.integers(0, 999),
    sent=st.integers(0, 1 << 50),
    duration=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    subject=st.none() | _text,
    trace_id=st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
)
def test_access_line_round_trips_on_one_line(
    start, request_id, tenant, method, route, path, status, sent, duration, subject, trace_id
):
    line = access_line(
        start_s=start,
        request_id=request_id,
        tenant=tenant,
        method=method,
        route=route,
        path=path,
        status=status,
        sent=sent,
        duration_s=duration,
        subject=subject,
        trace_id=trace_id,
    )
    assert "\n" not in line and "\r" not in line
    record = json.loads(line)
    assert (record["request_id"], record["tenant"], record["method"]) == (
        request_id,
        tenant,
        method,
    )
    assert (record["route"], record["path"], record["status"], record["bytes"]) == (
        route,
        path,
        status,
        sent,
    )
    assert record["subject"] == (subject or "-")
    assert record.get("trace_id") == (trace_id or None)
    assert record["time"].endswith("Z") and len(record["time"]) == 24
