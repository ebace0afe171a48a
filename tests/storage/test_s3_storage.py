"""S3Storage against moto's S3 server on loopback: the generic storage suite, then what is
particular to object storage (multipart, conditional creates, digests re-checked on read,
the hidden digest index, pagination, failures)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_storage_write import (  # the generic suite, run here on an S3Storage
    test_bad_paths_refused,  # noqa: F401
    test_both_stores_implement_the_protocols,  # noqa: F401
    test_delete,  # noqa: F401
    test_digest_mismatch_stores_nothing,  # noqa: F401
    test_put_checks_a_matching_digest,  # noqa: F401
    test_put_stores_bytes_and_file_objects,  # noqa: F401
    test_same_bytes_again_is_idempotent_other_bytes_refused,  # noqa: F401
)

from _moto import moto  # noqa: F401 (the session fixture)
from registry_core.errors import (
    DigestMismatchError,
    DuplicateFileError,
    InvalidArgumentError,
    UploadRejectedError,
)
from registry_core.storage import S3Storage, S3StorageError

MIB = 1 << 20


@pytest.fixture()
def store(moto) -> S3Storage:  # noqa: F811
    return S3Storage(moto.bucket(), endpoint_url=moto.endpoint_url, region="us-east-1")


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _big(n: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(bytes([seed])).digest() * 2048  # 64 KiB, distinct per seed
    return (block * (n // len(block) + 1))[:n]


class _Unseekable(io.RawIOBase):
    """A stream without seek or a known length (a request body)."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 300_000) if n and n > 0 else 300_000)


def _pending_uploads(moto, store: S3Storage) -> list:  # noqa: F811
    return moto.client().list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def test_objects_carry_their_sha256_and_stay_out_of_sight_of_walk(store, moto) -> None:  # noqa: F811
    info = store.put("p/a-1.0.tar.gz", b"alpha")
    head = moto.client().head_object(Bucket=store.bucket, Key="p/a-1.0.tar.gz")
    assert head["Metadata"]["sha256"] == _sha(b"alpha").hex()
    assert head["ContentType"] == "application/gzip" == info.content_type
    assert info.mtime_ns is not None and info.size == 5
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert f".registry-core/sha256/{_sha(b'alpha').hex()}/p/a-1.0.tar.gz" in keys
    assert list(store.walk()) == ["p/a-1.0.tar.gz"]
    assert store.stat(".registry-core/sha256") is None


def test_multipart_put_streams_checks_and_completes(store, moto) -> None:  # noqa: F811
    data = _big(11 * MIB + 123)
    info = store.put("big/x-1.0.whl", io.BytesIO(data), sha256=_sha(data))
    assert info.size == len(data) and info.sha256 == _sha(data)
    head = moto.client().head_object(Bucket=store.bucket, Key="big/x-1.0.whl")
    assert head["ETag"].endswith('-2"')  # two parts of 8 MiB (the threshold) and the rest
    assert store.read("big/x-1.0.whl") == data
    assert store.find_by_sha256(_sha(data)) == "big/x-1.0.whl"
    # same bytes again (no digest given, unseekable: spooled, hashed): the existing info
    again = store.put("big/x-1.0.whl", _Unseekable(data))
    assert again.sha256 == info.sha256
    with pytest.raises(DuplicateFileError):
        store.put("big/x-1.0.whl", io.BytesIO(_big(11 * MIB, seed=2)))
    assert _pending_uploads(moto, store) == []


def test_large_bytes_go_up_in_parts_too(store, moto) -> None:  # noqa: F811
    data = _big(9 * MIB, seed=8)
    assert store.put("big/b.whl", data).sha256 == _sha(data)
    head = moto.client().head_object(Bucket=store.bucket, Key="big/b.whl")
    assert head["ETag"].endswith('-2"') and store.read("big/b.whl") == data
    with pytest.raises(DigestMismatchError):
        store.put("big/c.whl", data, sha256=_sha(b"other"))
    assert store.stat("big/c.whl") is None and _pending_uploads(moto, store) == []


def test_multipart_without_a_digest_spools_and_stores(store) -> None:
    data = _big(9 * MIB, seed=3)
    info = store.put("big/y.whl", _Unseekable(data))
    assert info.sha256 == _sha(data) and store.read("big/y.whl") == data


def test_multipart_digest_mismatch_aborts_the_upload(store, moto) -> None:  # noqa: F811
    data = _big(10 * MIB, seed=4)
    with pytest.raises(DigestMismatchError):
        store.put("big/z.whl", io.BytesIO(data), sha256=_sha(b"other"))
    assert store.stat("big/z.whl") is None
    assert _pending_uploads(moto, store) == []
    assert list(store.walk()) == []


def test_size_limit_refused_before_anything_is_stored(moto) -> None:  # noqa: F811
    store = S3Storage(moto.bucket(), endpoint_url=moto.endpoint_url, max_object_bytes=9 * MIB)
    with pytest.raises(UploadRejectedError) as err:
        store.put("big/huge.whl", io.BytesIO(_big(10 * MIB)))
    assert err.value.status == 413
    with pytest.raises(UploadRejectedError):
        store.put("big/huge.whl", io.BytesIO(_big(10 * MIB)), sha256=_sha(_big(10 * MIB)))
    assert _pending_uploads(moto, store) == [] and list(store.walk()) == []


def test_tampered_object_is_never_served(moto) -> None:  # noqa: F811
    bucket = moto.bucket()
    cached = S3Storage(bucket, endpoint_url=moto.endpoint_url)  # remembers HEADs for 1 s
    store = S3Storage(bucket, endpoint_url=moto.endpoint_url, stat_ttl=0)
    good = _big(3 * MIB, seed=5)
    info = cached.put("p/t.whl", good)
    assert cached.stat("p/t.whl") == info
    evil = bytearray(good)
    evil[-1] ^= 1
    moto.client().put_object(  # replaced in the bucket, keeping our metadata
        Bucket=store.bucket, Key="p/t.whl", Body=bytes(evil), Metadata={"sha256": info.sha256.hex()}
    )
    # the old HEAD (its ETag) refuses the new bytes; a fresh one finds them wrong
    with pytest.raises((FileNotFoundError, DigestMismatchError)):
        cached.read("p/t.whl")
    with pytest.raises(DigestMismatchError):
        store.read("p/t.whl")
    with store.open("p/t.whl") as f:  # streamed: the last piece is withheld
        pieces = [f.read(MIB), f.read(MIB)]
        with pytest.raises(DigestMismatchError):
            f.read(MIB)
    assert b"".join(pieces) == good[: 2 * MIB]
    with store.open("p/t.whl") as f:  # a range: the whole object is checked first
        f.seek(MIB)
        with pytest.raises(DigestMismatchError):
            f.read(10)


def test_ranges_after_verification_and_object_replaced_meanwhile(store, moto) -> None:  # noqa: F811
    data = _big(2 * MIB, seed=6)
    store.put("p/r.whl", data)
    with store.open("p/r.whl") as f:
        f.seek(MIB - 5)
        assert f.read(10) == data[MIB - 5 : MIB + 5]
        f.seek(0)
        assert f.read() == data
        # replaced behind the open file: If-Match refuses the other bytes
        moto.client().put_object(Bucket=store.bucket, Key="p/r.whl", Body=b"other")
        f.seek(7)
        with pytest.raises(FileNotFoundError):
            f.read(3)


def test_object_put_behind_the_store_is_hashed_and_reindexed(store, moto) -> None:  # noqa: F811
    moto.client().put_object(Bucket=store.bucket, Key="ext/e-1.0.tar.gz", Body=b"external")
    info = store.stat("ext/e-1.0.tar.gz")
    assert info is not None and info.sha256 == _sha(b"external")
    assert store.read("ext/e-1.0.tar.gz") == b"external"
    assert store.find_by_sha256(_sha(b"external")) is None
    assert store.reindex() == 1
    assert store.find_by_sha256(_sha(b"external")) == "ext/e-1.0.tar.gz"


def test_find_by_sha256_survives_deleting_one_of_two_copies(store) -> None:
    store.put("p/one.whl", b"same")
    store.put("p/two.whl", b"same")
    assert store.find_by_sha256(_sha(b"same")) in ("p/one.whl", "p/two.whl")
    store.delete("p/one.whl")
    assert store.find_by_sha256(_sha(b"same")) == "p/two.whl"
    store.delete("p/two.whl")
    assert store.find_by_sha256(_sha(b"same")) is None
    assert store.find_by_sha256(b"short") is None


def test_walk_pages_and_skips_the_hidden_run(store, monkeypatch) -> None:
    names = ["-dash.whl", "a/x.whl", "b/y.whl", "z.whl", "zz/deep/w.whl"]
    for n in names:
        store.put(n, n.encode())
    calls: list[dict] = []
    real = store._call

    def counting(op: str, key: str, **kw):
        if op == "list_objects_v2":
            calls.append(kw)
            kw["MaxKeys"] = 2
        return real(op, key, **kw)

    monkeypatch.setattr(store, "_call", counting)
    assert sorted(store.walk()) == sorted(names)
    assert len(calls) >= 3  # paginated
    assert any(c.get("StartAfter") == ".registry-core0" for c in calls)


def test_prefixes_keep_stores_apart(moto) -> None:  # noqa: F811
    bucket = moto.bucket()
    a = S3Storage(bucket, prefix="tenant-a/main", endpoint_url=moto.endpoint_url)
    b = S3Storage(bucket, prefix="tenant-b/main/", endpoint_url=moto.endpoint_url)
    a.put("p/x.whl", b"a")
    b.put("p/x.whl", b"b")
    assert a.read("p/x.whl") == b"a" and b.read("p/x.whl") == b"b"
    assert list(a.walk()) == ["p/x.whl"] and list(b.walk()) == ["p/x.whl"]
    assert a.find_by_sha256(_sha(b"b")) is None and b.find_by_sha256(_sha(b"b")) == "p/x.whl"


def test_racing_writers_of_one_name_exactly_one_wins(store) -> None:
    results: list[object] = []
    barrier = threading.Barrier(4)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            results.append(store.put("p/race.whl", bytes([i]) * 300_000))
        except DuplicateFileError as exc:
            results.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if not isinstance(r, DuplicateFileError)]
    assert len(winners) == 1 and len(results) == 4
    data = store.read("p/race.whl")
    assert len(set(data)) == 1 and len(data) == 300_000


def test_without_conditional_writes_the_head_guards(moto) -> None:  # noqa: F811
    store = S3Storage(moto.bucket(), endpoint_url=moto.endpoint_url, conditional_writes=False)
    store.put("p/c.whl", b"one")
    assert store.put("p/c.whl", b"one").sha256 == _sha(b"one")
    with pytest.raises(DuplicateFileError):
        store.put("p/c.whl", b"two")
    assert store.read("p/c.whl") == b"one"


def test_unreachable_store_is_a_clear_error_and_repr_holds_no_secret(moto) -> None:  # noqa: F811
    from _moto import free_port

    store = S3Storage(
        "b", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1, connect_timeout=2
    )
    with pytest.raises(S3StorageError, match="s3://b/p/x.whl"):
        store.stat("p/x.whl")
    with pytest.raises(OSError):
        store.put("p/x.whl", b"x")
    assert "testing" not in repr(store) and "127.0.0.1" in repr(store)


def test_missing_bucket_is_an_error_not_a_miss(moto) -> None:  # noqa: F811
    store = S3Storage("no-such-bucket-e", endpoint_url=moto.endpoint_url)
    with pytest.raises(S3StorageError):
        store.put("p/x.whl", b"x")
    with pytest.raises(S3StorageError, match="no-such-bucket-e"):
        store.check()
    S3Storage(moto.bucket(), endpoint_url=moto.endpoint_url).check()


def test_a_replaced_object_is_looked_at_afresh(store, moto) -> None:  # noqa: F811
    store.put("p/n.whl", b"first")
    assert store.stat("p/n.whl") is not None  # its HEAD is now remembered
    moto.client().put_object(Bucket=store.bucket, Key="p/n.whl", Body=b"second")
    with pytest.raises(FileNotFoundError):  # the remembered ETag refuses the other bytes
        store.read("p/n.whl")
    info = store.stat("p/n.whl")  # asked afresh: no metadata, so hashed here
    assert info is not None and info.sha256 == _sha(b"second")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket": ""},
        {"bucket": "a/b"},
        {"prefix": "../x"},
        {"prefix": ".hidden"},
        {"multipart_threshold": 1 << 20},
        {"part_size": 1 << 20},
        {"max_object_bytes": 0},
        {"addressing_style": "odd"},
        {"endpoint_url": "http://s3.example.com"},
        {"endpoint_url": "https://key:secret@s3.example.com"},
        {"endpoint_url": "ftp://127.0.0.1"},
        {"stat_ttl": -1},
    ],
)
def test_bad_options_refused(kwargs) -> None:
    args = {"bucket": "b", **kwargs}
    with pytest.raises(InvalidArgumentError):
        S3Storage(args.pop("bucket"), **args)


def test_plain_http_elsewhere_only_when_asked() -> None:
    store = S3Storage("b", endpoint_url="http://s3.internal.example", allow_http=True)
    assert "s3.internal.example" in repr(store)
    assert S3Storage("b", endpoint_url="https://s3.example.com").endpoint_url


def test_import_stays_cheap() -> None:
    code = (
        "import sys, registry_core, registry_core.storage as s; s.S3Storage;"
        "assert 'boto3' not in sys.modules, 'boto3 imported too early'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), start=st.integers(0, 5000), length=st.integers(0, 5000))
def test_put_then_ranged_reads_round_trip(store, data: bytes, start: int, length: int) -> None:
    path = f"h/{_sha(data).hex()}.bin"
    info = store.put(path, data)
    assert info.sha256 == _sha(data) and store.read(path) == data
    with store.open(path) as f:
        f.seek(start)
        assert f.read(length) == data[start : start + length]


def test_short_reads_of_a_small_stream_are_joined(store) -> None:
    data = _big(700_000, seed=7)
    info = store.put("p/s.whl", _Unseekable(data), sha256=_sha(data))
    assert info.size == len(data) and store.read("p/s.whl") == data


class _Generated(io.RawIOBase):
    """``size`` bytes made on the fly in 1 MiB pieces: the file is never in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(n if n and n > 0 else MIB, self.left, MIB)
        self.left -= n
        return b"m" * n


def test_memory_stays_bounded_by_the_part_size(store) -> None:
    import tracemalloc

    size = 26 * MIB
    digest = hashlib.sha256(b"m" * size).digest()
    store.put("warm/w.whl", b"w")  # boto3's lazy set-up is not the upload's
    tracemalloc.start()
    try:
        store.put("big/m.whl", _Generated(size), sha256=digest)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        h = hashlib.sha256()
        with store.open("big/m.whl") as f:
            while piece := f.read(MIB):
                h.update(piece)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert h.digest() == digest
    assert put_peak < 2 * store.part_size + 4 * MIB, put_peak  # two parts, not 26 MiB
    assert read_peak < 8 * MIB, read_peak


def test_missing_boto3_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from registry_core.storage import S3Storage\n"
        "try:\n    S3Storage('b')\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "pip install 'registry-core[s3]'" in out.stdout
