"""A minimal codec for the Remote Execution API's ``ActionResult`` (what Bazel stores under /ac/).

Only the protobuf wire format's varint (type 0) and length-delimited (type 2) fields are read
as values; fixed32/fixed64 fields are skipped, groups (types 3/4, deprecated) are refused.
Unknown fields are skipped, so results written by Bazel or bazel-remote (which carry more
fields: output directories, symlinks, more timestamps) decode. Field numbers are those of
``build/bazel/remote/execution/v2/remote_execution.proto``::

    Digest        { string hash = 1; int64 size_bytes = 2; }
    OutputFile    { string path = 1; Digest digest = 2; bool is_executable = 4; }
    ActionResult  { repeated OutputFile output_files = 2; int32 exit_code = 4;
                    Digest stdout_digest = 6; Digest stderr_digest = 8;
                    ExecutedActionMetadata execution_metadata = 9; }
    ExecutedActionMetadata { string worker = 1;
                    Timestamp execution_start_timestamp = 7;
                    Timestamp execution_completed_timestamp = 8; }
    Timestamp     { int64 seconds = 1; int32 nanos = 2; }

Encoding is deterministic (fields in number order, proto3 defaults omitted), so one result has
one byte form. Decoding is bounded: at most ``MAX_RESULT_BYTES`` of input and
``MAX_OUTPUT_FILES`` files; the schema nests four levels, and unknown fields are skipped
without being parsed, so depth is bounded by construction. A singular message field given
twice is merged the protobuf way (its occurrences are concatenated, then decoded); a scalar
given twice keeps the last value. Any malformed input raises :class:`CacheError` (a stored
entry that does not decode is a corrupt cache entry), never another exception.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import CacheError, InvalidArgumentError

__all__ = [
    "MAX_OUTPUT_FILES",
    "MAX_RESULT_BYTES",
    "ActionResult",
    "Digest",
    "OutputFile",
    "decode_action_result",
    "encode_action_result",
]

MAX_RESULT_BYTES = 16 << 20  # an action result is metadata: blobs live in the CAS
MAX_OUTPUT_FILES = 100_000
_MAX_PATH = 4096
_MAX_WORKER = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_U64 = (1 << 64) - 1
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Digest:
    """A CAS address: lowercase hex SHA-256 of the content and its length."""

    hash: str
    size_bytes: int

    def __post_init__(self) -> None:
        if not isinstance(self.hash, str) or not _HEX64.fullmatch(self.hash):
            raise InvalidArgumentError(
                f"a digest hash is 64 lowercase hex characters (SHA-256), got {self.hash!r:.80}"
            )
        if (
            isinstance(self.size_bytes, bool)
            or not isinstance(self.size_bytes, int)
            or not 0 <= self.size_bytes < 1 << 63
        ):
            raise InvalidArgumentError(f"size_bytes must be an int >= 0, got {self.size_bytes!r}")

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> Digest:
        """The digest of ``data``."""
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    def matches(self, data: bytes | bytearray | memoryview) -> bool:
        """True when ``data`` is the content this digest names (length and SHA-256)."""
        return len(data) == self.size_bytes and hashlib.sha256(data).hexdigest() == self.hash


EMPTY_DIGEST = Digest(_EMPTY_SHA256, 0)


@dataclass(frozen=True)
class OutputFile:
    """One output file of an action: its path relative to the working directory."""

    path: str
    digest: Digest
    is_executable: bool = False


@dataclass(frozen=True)
class ActionResult:
    """What a run produced. ``start_ns`` (Unix ns) and ``duration_s`` come from the REAPI
    execution timestamps; ``duration_s`` is the time a hit saves."""

    output_files: tuple[OutputFile, ...]
    exit_code: int
    stdout_digest: Digest | None
    stderr_digest: Digest | None
    worker: str = ""
    duration_s: float = 0.0
    start_ns: int = 0


# -- encoding ------------------------------------------------------------------------------------


def _varint(out: bytearray, value: int) -> None:
    value &= _U64  # negative int32/int64 are sign-extended to 64 bits, as protobuf does
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _tag(out: bytearray, field: int, wire: int) -> None:
    _varint(out, (field << 3) | wire)


def _int_field(out: bytearray, field: int, value: int) -> None:
    if value:
        _tag(out, field, 0)
        _varint(out, value)


def _bytes_field(out: bytearray, field: int, value: bytes, *, always: bool = False) -> None:
    if value or always:
        _tag(out, field, 2)
        _varint(out, len(value))
        out += value


def _digest(d: Digest) -> bytes:
    out = bytearray()
    _bytes_field(out, 1, d.hash.encode("ascii"))
    _int_field(out, 2, d.size_bytes)
    return bytes(out)


def _timestamp(ns: int) -> bytes:
    seconds, nanos = divmod(ns, 1_000_000_000)
    out = bytearray()
    _int_field(out, 1, seconds)
    _int_field(out, 2, nanos)
    return bytes(out)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"{what} is not encodable as UTF-8: {text!r:.80}") from exc


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH or "\x00" in path:
        raise InvalidArgumentError(f"an output path is a non-empty str, got {path!r:.80}")
    return path


def encode_action_result(r: ActionResult) -> bytes:
    """The protobuf bytes of ``r`` (deterministic)."""
    if not isinstance(r, ActionResult):
        raise InvalidArgumentError(f"expected an ActionResult, got {type(r).__name__}")
    if isinstance(r.exit_code, bool) or not -(1 << 31) <= r.exit_code < 1 << 31:
        raise InvalidArgumentError(f"exit_code must be an int32, got {r.exit_code!r}")
    if not r.duration_s >= 0 or r.duration_s > 1e9:
        raise InvalidArgumentError(f"duration_s must be >= 0 seconds, got {r.duration_s!r}")
    if not 0 <= r.start_ns < 1 << 62:
        raise InvalidArgumentError(f"start_ns must be >= 0, got {r.start_ns!r}")
    if len(r.output_files) > MAX_OUTPUT_FILES:
        raise InvalidArgumentError(f"more than {MAX_OUTPUT_FILES} output files")
    out = bytearray()
    for f in r.output_files:
        body = bytearray()
        _bytes_field(body, 1, _utf8(_check_path(f.path), "an output path"))
        _bytes_field(body, 2, _digest(f.digest), always=True)
        _int_field(body, 4, int(bool(f.is_executable)))
        _bytes_field(out, 2, bytes(body), always=True)
    _int_field(out, 4, r.exit_code)
    if r.stdout_digest is not None:
        _bytes_field(out, 6, _digest(r.stdout_digest), always=True)
    if r.stderr_digest is not None:
        _bytes_field(out, 8, _digest(r.stderr_digest), always=True)
    if len(r.worker) > _MAX_WORKER:
        raise InvalidArgumentError(f"worker names are at most {_MAX_WORKER} characters")
    meta = bytearray()
    _bytes_field(meta, 1, _utf8(r.worker, "the worker name"))
    if r.start_ns or r.duration_s:
        _bytes_field(meta, 7, _timestamp(r.start_ns), always=True)
        end = r.start_ns + round(r.duration_s * 1e9)
        _bytes_field(meta, 8, _timestamp(end), always=True)
    if meta:
        _bytes_field(out, 9, bytes(meta), always=True)
    result = bytes(out)
    if len(result) > MAX_RESULT_BYTES:
        raise InvalidArgumentError(f"action result of {len(result)} bytes exceeds the bound")
    return result


# -- decoding ------------------------------------------------------------------------------------


def _bad(why: str) -> CacheError:
    return CacheError(f"malformed action result (REAPI ActionResult protobuf): {why}")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise _bad("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value > _U64:
                raise _bad("varint over 64 bits")
            return value, pos
    raise _bad("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every varint / length-delimited field, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    n = len(data)
    while pos < n:
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if field == 0 or field > (1 << 29) - 1:
            raise _bad(f"field number {field} out of range")
        if wire == 0:
            value, pos = _read_varint(data, pos)
            out.append((field, wire, value))
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if length > n - pos:
                raise _bad(f"field {field} claims {length} bytes, {n - pos} left")
            out.append((field, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            if n - pos < 8:
                raise _bad("truncated fixed64")
            pos += 8
        elif wire == 5:
            if n - pos < 4:
                raise _bad("truncated fixed32")
            pos += 4
        else:
            raise _bad(f"wire type {wire} (groups are not supported)")
    return out


def _want(field: int, wire: int, expected: int) -> None:
    if wire != expected:
        raise _bad(f"field {field} has wire type {wire}, expected {expected}")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _text(b: bytes, what: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"{what} is not UTF-8") from exc


class _Merged:
    """Occurrences of singular message fields, concatenated (protobuf merge semantics)."""

    def __init__(self) -> None:
        self.parts: dict[int, list[bytes]] = {}

    def add(self, field: int, value: bytes) -> None:
        self.parts.setdefault(field, []).append(value)

    def get(self, field: int) -> bytes | None:
        p = self.parts.get(field)
        return None if p is None else b"".join(p)


def _decode_digest(data: bytes) -> Digest:
    h, size = "", 0
    for field, wire, value in _fields(data):
        if field == 1:
            _want(field, wire, 2)
            h = _text(value, "a digest hash")  # type: ignore[arg-type]
        elif field == 2:
            _want(field, wire, 0)
            size = _signed64(value)  # type: ignore[arg-type]
    try:
        return Digest(h, size)
    except InvalidArgumentError as exc:
        raise _bad(str(exc)) from exc


def _decode_timestamp(data: bytes) -> int:
    seconds, nanos = 0, 0
    for field, wire, value in _fields(data):
        if field == 1:
            _want(field, wire, 0)
            seconds = _signed64(value)  # type: ignore[arg-type]
        elif field == 2:
            _want(field, wire, 0)
            nanos = _int32(value)  # type: ignore[arg-type]
    if not 0 <= nanos < 1_000_000_000:
        raise _bad(f"timestamp nanos {nanos} out of range")
    return seconds * 1_000_000_000 + nanos


def _decode_output_file(data: bytes) -> OutputFile:
    path, executable = "", False
    digest = _Merged()
    for field, wire, value in _fields(data):
        if field == 1:
            _want(field, wire, 2)
            path = _text(value, "an output path")  # type: ignore[arg-type]
        elif field == 2:
            _want(field, wire, 2)
            digest.add(field, value)  # type: ignore[arg-type]
        elif field == 4:
            _want(field, wire, 0)
            executable = bool(value)
    raw = digest.get(2)
    if raw is None:
        raise _bad(f"output file {path!r:.80} has no digest")
    try:
        _check_path(path)
    except InvalidArgumentError as exc:
        raise _bad(str(exc)) from exc
    return OutputFile(path, _decode_digest(raw), executable)


def decode_action_result(b: bytes) -> ActionResult:
    """Parse ``b``; raises :class:`CacheError` on anything malformed or over the bounds."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"expected bytes, got {type(b).__name__}")
    data = bytes(b)
    if len(data) > MAX_RESULT_BYTES:
        raise _bad(f"{len(data)} bytes exceeds the bound of {MAX_RESULT_BYTES}")
    files: list[OutputFile] = []
    exit_code = 0
    merged = _Merged()
    for field, wire, value in _fields(data):
        if field == 2:
            _want(field, wire, 2)
            if len(files) >= MAX_OUTPUT_FILES:
                raise _bad(f"more than {MAX_OUTPUT_FILES} output files")
            files.append(_decode_output_file(value))  # type: ignore[arg-type]
        elif field == 4:
            _want(field, wire, 0)
            exit_code = _int32(value)  # type: ignore[arg-type]
        elif field in (6, 8, 9):
            _want(field, wire, 2)
            merged.add(field, value)  # type: ignore[arg-type]
    out_raw, err_raw, meta_raw = merged.get(6), merged.get(8), merged.get(9)
    worker, start, end = "", 0, 0
    if meta_raw is not None:
        stamps = _Merged()
        for field, wire, value in _fields(meta_raw):
            if field == 1:
                _want(field, wire, 2)
                worker = _text(value, "the worker name")  # type: ignore[arg-type]
            elif field in (7, 8):
                _want(field, wire, 2)
                stamps.add(field, value)  # type: ignore[arg-type]
        s, e = stamps.get(7), stamps.get(8)
        start = _decode_timestamp(s) if s is not None else 0
        end = _decode_timestamp(e) if e is not None else start
    return ActionResult(
        output_files=tuple(files),
        exit_code=exit_code,
        stdout_digest=None if out_raw is None else _decode_digest(out_raw),
        stderr_digest=None if err_raw is None else _decode_digest(err_raw),
        worker=worker,
        duration_s=min(max(0, end - start), 10**18) / 1e9,
        start_ns=min(max(0, start), (1 << 62) - 1),
    )
