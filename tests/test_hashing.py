"""registry_core.hashing: content IDs and integrity strings, checked against published values."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import itertools
import mmap
import random
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError, InvalidTypeError
from registry_core.hashing import (
    ALGORITHMS,
    Integrity,
    IntegrityHasher,
    content_id,
    integrity,
    integrity_of_file,
    parse_integrity,
)

SITE = Path(xxhash.__file__).resolve().parents[1]


def test_content_id_known_vectors() -> None:
    # XXH3-128 of the empty input (xxHash's own sanity table) and agreement with xxhash.
    assert content_id(b"") == "99aa06d3014798d86001c324468d497f"
    data = random.Random(1).randbytes(100_000)
    assert content_id(data) == xxhash.xxh3_128(data).hexdigest()
    assert content_id(bytearray(data)) == content_id(memoryview(data)) == content_id(data)
    assert len(content_id(data)) == 32 and content_id(data) != content_id(data[1:])


def test_integrity_known_vectors() -> None:
    # FIPS 180-2 "abc" test vector, base64 as `openssl dgst -sha256 -binary | base64` prints it.
    assert integrity(b"abc") == "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    assert (
        integrity(b"abc", "sha512")
        == "sha512-"
        + base64.b64encode(
            bytes.fromhex(
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            )
        ).decode()
    )


def _record_entries(limit: int) -> list[tuple[Path, str]]:
    """(file, sha256 from the wheel's RECORD) for files of installed distributions."""
    out = []
    for record in sorted(SITE.glob("*.dist-info/RECORD")):
        with record.open(newline="") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and row[1].startswith("sha256="):
                    path = SITE / row[0]
                    if path.is_file() and path.stat().st_size > 0:
                        out.append((path, row[1][len("sha256=") :]))
        if len(out) >= limit:
            break
    return out[:limit]


def test_integrity_of_file_matches_wheel_record_hashes() -> None:
    # Installed wheels list a urlsafe, unpadded base64 SHA-256 for each file in RECORD.
    entries = _record_entries(40)
    assert len(entries) >= 20
    for path, record_hash in entries:
        digest = base64.urlsafe_b64decode(record_hash + "=" * (-len(record_hash) % 4))
        expected = "sha256-" + base64.b64encode(digest).decode()
        assert integrity_of_file(path) == expected
        assert integrity_of_file(str(path), chunk_size=4096) == expected
        with path.open("rb") as f:
            assert integrity_of_file(f, chunk_size=1000) == expected


def test_integrity_of_file_object_kinds(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(300_001)
    want = integrity(data)
    assert integrity_of_file(io.BytesIO(data), chunk_size=7777) == want

    class ReadOnly:  # a file-like object without readinto
        def __init__(self, payload: bytes) -> None:
            self._f = io.BytesIO(payload)

        def read(self, n: int) -> bytes:
            return self._f.read(n)

    assert integrity_of_file(ReadOnly(data), chunk_size=1 << 16) == want
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with path.open("rb") as f:
        f.seek(1)  # reads from the current position
        assert integrity_of_file(f) == integrity(data[1:])
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert integrity(mm) == want and content_id(mm) == content_id(data)


@given(
    data=st.binary(max_size=5000),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
    algorithm=st.sampled_from(sorted(ALGORITHMS)),
)
def test_incremental_equals_one_shot(data: bytes, cuts: list[int], algorithm: str) -> None:
    hasher = IntegrityHasher(algorithm)
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for a, b in itertools.pairwise(bounds):
        hasher.update(memoryview(data)[a:b])
    assert hasher.integrity() == integrity(data, algorithm)
    assert hasher.hexdigest() == hashlib.new(algorithm, data).hexdigest()
    assert hasher.size == len(data)


@given(algorithm=st.sampled_from(sorted(ALGORITHMS)), seed=st.binary(min_size=1, max_size=64))
def test_parse_integrity_round_trip(algorithm: str, seed: bytes) -> None:
    text = integrity(seed, algorithm)
    parsed = parse_integrity(text)
    assert parsed == Integrity(algorithm, hashlib.new(algorithm, seed).digest())
    assert str(parsed) == text


@given(seed=st.binary(max_size=64), pos=st.integers(0, 200), char=st.characters())
def test_parse_integrity_corrupted(seed: bytes, pos: int, char: str) -> None:
    text = integrity(seed)
    pos %= len(text)
    bad = text[:pos] + char + text[pos + 1 :]
    if bad == text:
        return
    try:
        parsed = parse_integrity(bad)
    except InvalidArgumentError:
        return
    # A substitution that still parses must name a different digest, never the original.
    assert parsed.digest != hashlib.sha256(seed).digest()


@given(
    seed=st.binary(max_size=64),
    algorithm=st.sampled_from(sorted(ALGORITHMS)),
    keep=st.integers(0, 200),
)
def test_parse_integrity_truncated(seed: bytes, algorithm: str, keep: int) -> None:
    text = integrity(seed, algorithm)
    with pytest.raises(InvalidArgumentError):
        parse_integrity(text[: keep % len(text)])


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256",
        "sha256-",
        "md5-1B2M2Y8AsgTpgAmY7PhCfg==",
        "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",  # padding missing
        "sha256-ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0=",  # urlsafe alphabet
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIA",  # short digest
        "sha512-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",  # wrong length for sha512
        "SHA256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa1=",  # non-canonical final bits
        "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=é",
    ],
)
def test_parse_integrity_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_integrity(bad)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["text", 12, [1, 2], None])
def test_non_buffer_input(bad: object) -> None:
    with pytest.raises(InvalidTypeError):
        content_id(bad)
    with pytest.raises(InvalidTypeError):
        integrity(bad)
    with pytest.raises(InvalidTypeError):
        IntegrityHasher().update(bad)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        integrity(b"x", "md5")
    with pytest.raises(InvalidArgumentError):
        IntegrityHasher("crc32")
    with pytest.raises(InvalidArgumentError):
        integrity_of_file(io.BytesIO(b"x"), chunk_size=0)
    with pytest.raises(InvalidTypeError):
        integrity_of_file(io.BytesIO(b"x"), chunk_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        integrity_of_file(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        parse_integrity(b"sha256-abc")  # type: ignore[arg-type]
    path = tmp_path / "t.txt"
    path.write_text("text")
    with path.open("r") as f, pytest.raises(InvalidTypeError):
        integrity_of_file(f)
    with pytest.raises(FileNotFoundError):
        integrity_of_file(tmp_path / "missing")
