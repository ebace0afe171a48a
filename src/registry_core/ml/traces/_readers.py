"""Readers of real access logs, and libCacheSim's oracleGeneral writer.

- :func:`read_access_log`: our JSON access log (``telemetry/_logs.py`` ``access_line``);
- :func:`read_nginx`: nginx's predefined ``combined`` log format;
- :func:`read_oracle_general` / :func:`write_oracle_general`: libCacheSim's binary trace
  (24-byte little-endian records ``uint32 time, uint64 obj_id, uint32 obj_size,
  int64 next_access_vtime``; -1: never again);
- :func:`load_trace`: any of them into a :class:`Trace` with an inferred catalogue and, for each
  download, ``held`` inferred as the client's last downloaded version of that project.

Every reader streams (one line or record at a time, lines bounded to :data:`MAX_LINE`), and
raises :class:`~registry_core.errors.TraceError` naming the file and line (or record) on bad
input; ``errors="skip"`` skips bad lines instead, counting them in a :class:`ReadStats`.
Client ids are the peer address (or subject) hashed, never the address itself.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import struct
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from ...errors import TraceError
from ._catalogue import infer_catalogue, normalize, parse_dist
from ._record import Request, Trace

__all__ = [
    "MAX_LINE",
    "ORACLE_RECORD",
    "ReadStats",
    "classify",
    "client_id",
    "infer_held",
    "load_trace",
    "read_access_log",
    "read_nginx",
    "read_oracle_general",
    "write_access_log",
    "write_oracle_general",
]

#: The longest log line accepted (bytes); longer is an error (or skipped).
MAX_LINE = 64 * 1024
#: libCacheSim's oracleGeneral record: time, object id, size, next access (virtual time).
ORACLE_RECORD = struct.Struct("<IQIq")
_U32 = (1 << 32) - 1
_MAX_KEPT_ERRORS = 20


@dataclass
class ReadStats:
    """What a reader saw: lines (or records) read, bad ones skipped and the first few errors."""

    lines: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.skipped += 1
        if len(self.errors) < _MAX_KEPT_ERRORS:
            self.errors.append(message)


def client_id(value: str, salt: str = "") -> str:
    """An opaque, stable client id for a peer address or subject (``c`` + 10 hex digits)."""
    return "c" + hashlib.blake2b(f"{salt}\0{value}".encode(), digest_size=5).hexdigest()


_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg")
_LOGIN_WORDS = frozenset({"login", "oidc", "saml", "logout", "tokens", "token", "oauth"})


def classify(method: str, path: str) -> tuple[str, str, str, str, str]:
    """``(kind, project, filename, version, route)`` of one request path (query removed).

    ``/simple/<p>/`` is a page; a path ending in a distribution file is a file download (project
    and version from the file name, packaging rules); ``<file>.metadata`` is metadata (PEP 658);
    ``POST /legacy/`` (or a POST to the root) an upload; login, OIDC, SAML and token routes are
    logins; anything else is "other"."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0])
    segments = [s for s in path.split("/") if s]
    method = method.upper()
    last = segments[-1] if segments else ""
    if last.endswith(".metadata"):
        filename = last[: -len(".metadata")]
        project, version = parse_dist(filename)
        return "metadata", project, filename, version, "/{file}.metadata"
    if last.endswith(_DIST_SUFFIXES):
        project, version = parse_dist(last)
        if not project and len(segments) >= 2:
            project = normalize(segments[-2])
        return "file", project, last, version, "/files/{project}/{file}"
    if "simple" in segments:
        rest = segments[segments.index("simple") + 1 :]
        if not rest:
            return "page", "", "", "", "/simple/"
        return "page", normalize(rest[0]), "", "", "/simple/{project}/"
    if method == "POST" and (last == "legacy" or not segments):
        return "upload", "", "", "", "/legacy/"
    if any(s in _LOGIN_WORDS for s in segments):
        return "login", "", "", "", "/_/login"
    return "other", "", "", "", "other"


def _open_text(path: str | os.PathLike[str]) -> IO[bytes]:
    try:
        return open(path, "rb")  # closed by the caller's with
    except OSError as e:
        raise TraceError(f"{path}: cannot open the trace: {e.strerror or e}") from None


def _lines(
    path: str | os.PathLike[str], errors: str, stats: ReadStats
) -> Iterator[tuple[int, str]]:
    if errors not in ("raise", "skip"):
        raise TraceError(f"errors must be 'raise' or 'skip', not {errors!r}")
    with _open_text(path) as f:
        n = 0
        while True:
            raw = f.readline(MAX_LINE + 1)
            if not raw:
                return
            n += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                # drain the rest of the over-long line, bounded reads
                while raw and not raw.endswith(b"\n"):
                    raw = f.readline(MAX_LINE + 1)
                _fail(f"{path}:{n}: line longer than {MAX_LINE} bytes", errors, stats)
                continue
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                _fail(f"{path}:{n}: not UTF-8", errors, stats)
                continue
            if not text:
                continue
            stats.lines += 1
            yield n, text


def _fail(message: str, errors: str, stats: ReadStats) -> None:
    if errors == "raise":
        raise TraceError(message)
    stats.note(message)


def _rfc3339(value: str) -> float:
    m = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})", value
    )
    if not m:
        raise ValueError(f"time {value!r} is not RFC 3339")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    epoch = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + float(m.group(7) or 0.0)
    tz = m.group(8)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        epoch -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return epoch


def read_access_log(
    path: str | os.PathLike[str],
    *,
    errors: str = "raise",
    stats: ReadStats | None = None,
    salt: str = "",
) -> Iterator[Request]:
    """The requests of our JSON access log, in file order. The client is the ``client`` field
    (the peer address) hashed, else the ``subject``, else "anonymous"; ``size`` is ``bytes``."""
    stats = stats if stats is not None else ReadStats()
    for n, text in _lines(path, errors, stats):
        try:
            rec = json.loads(text)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            t = _rfc3339(str(rec["time"]))
            method = str(rec.get("method", "GET"))
            route = str(rec.get("route", ""))
            kind, project, filename, version, guessed = classify(method, str(rec["path"]))
            status = int(rec.get("status", 200))
            sent = int(rec.get("bytes", 0))
            if sent < 0 or not (0 <= status < 1000):
                raise ValueError("negative bytes or a status out of range")
            peer = rec.get("client")
            subject = rec.get("subject")
            who = str(peer) if peer else (str(subject) if subject and subject != "-" else "")
        except (ValueError, KeyError, TypeError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            _fail(f"{path}:{n}: not an access log line: {what}", errors, stats)
            continue
        yield Request(
            t,
            client_id(who, salt) if who else "anonymous",
            kind,
            project,
            filename,
            version,
            sent,
            status=status,
            method=method,
            tenant=str(rec.get("tenant", "default")),
            route=route or guessed,
        )


# nginx's predefined "combined" format:
# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent"
_NGINX = re.compile(
    r'(?P<addr>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-)(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?'
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_NGINX_TIME = re.compile(
    r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})"
)


def _nginx_time(value: str) -> float:
    m = _NGINX_TIME.fullmatch(value)
    if not m or m.group(2) not in _MONTHS:
        raise ValueError(f"time {value!r} is not nginx's $time_local")
    d, y, h, mi, s = (
        int(m.group(1)),
        int(m.group(3)),
        int(m.group(4)),
        int(m.group(5)),
        int(m.group(6)),
    )
    epoch = calendar.timegm((y, _MONTHS[m.group(2)], d, h, mi, s, 0, 0, 0))
    offset = int(m.group(8)) * 3600 + int(m.group(9)) * 60
    return float(epoch - offset if m.group(7) == "+" else epoch + offset)


def read_nginx(
    path: str | os.PathLike[str],
    *,
    errors: str = "raise",
    stats: ReadStats | None = None,
    salt: str = "",
) -> Iterator[Request]:
    """The requests of an nginx ``combined`` access log, in file order (client: the remote
    address hashed)."""
    stats = stats if stats is not None else ReadStats()
    for n, text in _lines(path, errors, stats):
        m = _NGINX.match(text)
        try:
            if not m:
                raise ValueError("does not match nginx's combined format")
            t = _nginx_time(m.group("time"))
            parts = m.group("request").split(" ")
            if len(parts) < 2:
                raise ValueError(f"request {m.group('request')!r} is not 'METHOD path [proto]'")
            method, target = parts[0], parts[1]
            status = int(m.group("status"))
            sent = 0 if m.group("bytes") == "-" else int(m.group("bytes"))
        except ValueError as e:
            _fail(f"{path}:{n}: {e}", errors, stats)
            continue
        kind, project, filename, version, route = classify(method, target)
        yield Request(
            t,
            client_id(m.group("addr"), salt),
            kind,
            project,
            filename,
            version,
            sent,
            status=status,
            method=method,
            route=route,
        )


def read_oracle_general(
    path: str | os.PathLike[str], *, max_records: int | None = None
) -> Iterator[Request]:
    """The requests of a libCacheSim oracleGeneral trace: kind "file", the object id (decimal)
    as ``filename``, no project or client ("-"). A size that is not a whole number of records
    raises :class:`TraceError` naming the record."""
    with _open_text(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size % ORACLE_RECORD.size:
            raise TraceError(
                f"{path}: {size} bytes is not a whole number of {ORACLE_RECORD.size}-byte "
                f"oracleGeneral records (record {size // ORACLE_RECORD.size} is truncated)"
            )
        n = 0
        while max_records is None or n < max_records:
            chunk = f.read(ORACLE_RECORD.size * 4096)
            if not chunk:
                return
            if len(chunk) % ORACLE_RECORD.size:
                raise TraceError(f"{path}: record {n + len(chunk) // ORACLE_RECORD.size} truncated")
            for t, obj, obj_size, _next in ORACLE_RECORD.iter_unpack(chunk):
                if max_records is not None and n >= max_records:
                    return
                n += 1
                yield Request(float(t), "-", "file", "", str(obj), "", obj_size, route="")


def _obj_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def write_oracle_general(
    requests: Iterable[Request],
    path: str | os.PathLike[str],
    *,
    keys: Callable[[Request], int] | dict[str, int] | None = None,
    kinds: Iterable[str] | None = ("file",),
    start: float | None = None,
) -> int:
    """Write ``requests`` (only those of ``kinds``; None: all) as a libCacheSim oracleGeneral
    trace; returns the records written. The object id is ``keys(request)`` or ``keys[r.key]``,
    else a 64-bit BLAKE2b of :attr:`Request.key`. Times are whole seconds since ``start``
    (default: the first request's time); a size of 0 is written as 1 (libCacheSim skips
    zero-sized records); ``next_access_vtime`` is the index of the object's next request (-1:
    none). Two passes over arrays of the ids (8 bytes per request in memory); written to a
    temporary file and renamed, so a failure leaves nothing half-written."""
    times = array("I")
    ids = array("Q")
    sizes = array("I")
    wanted = None if kinds is None else frozenset(kinds)
    t0 = start
    for r in requests:
        if wanted is not None and r.kind not in wanted:
            continue
        if t0 is None:
            t0 = r.time
        rel = int(r.time - t0)
        if not (0 <= rel <= _U32):
            raise TraceError(f"request at {r.time} is outside the 32-bit second range from {t0}")
        if not (0 <= r.size <= _U32):
            raise TraceError(f"request size {r.size} does not fit oracleGeneral's uint32")
        if keys is None:
            obj = _obj_id(r.key)
        elif callable(keys):
            obj = keys(r)
        else:
            obj = keys[r.key]
        times.append(rel)
        ids.append(obj & 0xFFFFFFFFFFFFFFFF)
        sizes.append(max(1, r.size))
    nxt = array("q", [-1]) * len(ids)
    last: dict[int, int] = {}
    for i in range(len(ids) - 1, -1, -1):
        nxt[i] = last.get(ids[i], -1)
        last[ids[i]] = i
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            buf = bytearray()
            for i in range(len(ids)):
                buf += ORACLE_RECORD.pack(times[i], ids[i], sizes[i], nxt[i])
                if len(buf) >= 1 << 20:
                    f.write(buf)
                    buf.clear()
            f.write(buf)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(ids)


def _path_of(r: Request) -> str:
    if r.kind == "file":
        return f"/files/{r.project}/{r.filename}"
    if r.kind == "metadata":
        return f"/files/{r.project}/{r.filename}.metadata"
    if r.kind == "page":
        return f"/simple/{r.project}/" if r.project else "/simple/"
    if r.kind == "upload":
        return "/legacy/"
    if r.kind == "login":
        return "/_/login"
    return r.route if r.route.startswith("/") else "/"


def write_access_log(
    requests: Iterable[Request], path: str | os.PathLike[str], *, epoch: float = 0.0
) -> int:
    """Write ``requests`` as our JSON access log (``access_line``), times shifted by ``epoch``
    seconds, the client id as the ``client`` field: a generated trace becomes a log that the
    replay path (and ``registry-core ml train --trace``) reads like a real one. ``held`` and
    ``label`` are not in the log format (the reader infers ``held`` again). Written to a
    temporary file and renamed; returns the lines written."""
    from ...telemetry._logs import access_line

    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in requests:
                line = access_line(
                    start_s=r.time + epoch,
                    request_id=f"g{n:08x}",
                    tenant=r.tenant,
                    method=r.method,
                    route=r.route,
                    path=_path_of(r),
                    status=r.status,
                    sent=r.size,
                    duration_s=0.0,
                    subject=None,
                    client=r.client,
                )
                f.write(line + "\n")
                n += 1
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def infer_held(requests: Iterable[Request]) -> Iterator[Request]:
    """``requests`` with ``held`` set, where unknown, to the client's last successfully
    downloaded version of the project before this request (an inference: the client may have
    other versions from elsewhere). Memory: one entry per (client, project) seen."""
    last: dict[tuple[str, str], str] = {}
    for r in requests:
        if r.project and not r.held:
            held = last.get((r.client, r.project), "")
            if held:
                r = _with_held(r, held)
        if r.kind == "file" and r.version and r.status < 400 and r.client not in ("-", ""):
            last[(r.client, r.project)] = r.version
        yield r


def _with_held(r: Request, held: str) -> Request:
    return Request(
        r.time,
        r.client,
        r.kind,
        r.project,
        r.filename,
        r.version,
        r.size,
        r.status,
        r.method,
        r.tenant,
        r.route,
        held,
        r.label,
    )


_FORMATS = ("json", "nginx", "oracle")


def _sniff(path: Path) -> str:
    if path.suffix in (".bin", ".oracleGeneral") or path.name.endswith(
        (".oracleGeneral.bin", ".oracleGeneral")
    ):
        return "oracle"
    with _open_text(path) as f:
        head = f.read(4096)
    if not head:
        return "json"
    if head.lstrip()[:1] == b"{":
        return "json"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "oracle"
    return "nginx"


def load_trace(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    errors: str = "raise",
    stats: ReadStats | None = None,
    max_requests: int | None = 50_000_000,
) -> Trace:
    """A whole log as a :class:`Trace`: requests sorted by time, ``held`` inferred
    (:func:`infer_held`), the catalogue inferred (:func:`infer_catalogue`), no episodes, and
    ``source="file:<name>"``. ``format``: "json", "nginx", "oracle" or "auto" (by suffix, else the
    first bytes). More than ``max_requests`` requests raise :class:`TraceError` (memory bound)."""
    p = Path(path)
    fmt = _sniff(p) if format == "auto" else format
    if fmt not in _FORMATS:
        raise TraceError(f"unknown trace format {format!r}: one of auto, {', '.join(_FORMATS)}")
    stats = stats if stats is not None else ReadStats()
    it: Iterable[Request]
    if fmt == "json":
        it = read_access_log(p, errors=errors, stats=stats)
    elif fmt == "nginx":
        it = read_nginx(p, errors=errors, stats=stats)
    else:
        it = read_oracle_general(p)
    reqs: list[Request] = []
    for r in it:
        reqs.append(r)
        if max_requests is not None and len(reqs) > max_requests:
            raise TraceError(f"{p}: more than {max_requests} requests; split the log first")
    reqs.sort(key=_time)
    reqs = list(infer_held(reqs))
    return Trace(reqs, infer_catalogue(reqs), [], f"file:{p.name}")


def _time(r: Request) -> float:
    return r.time
