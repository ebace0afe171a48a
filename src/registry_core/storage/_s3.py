"""S3Storage: artifacts as objects in an S3-compatible bucket (boto3, imported when used).

The same contract as :class:`~registry_core.storage.DirectoryStorage`, on the S3 API:

- **Immutable, atomic puts.** An object appears whole or not at all (S3 PUTs and completed
  multipart uploads are atomic). The create is conditional (``If-None-Match: *``, on PutObject
  and CompleteMultipartUpload), so of two writers racing for one name exactly one wins; the
  other sees 412 and compares digests: same bytes -> the existing info, other bytes ->
  :class:`~registry_core.errors.DuplicateFileError`. ``conditional_writes=False`` is for
  stores that ignore the header: a HEAD before the PUT then guards, with a race window between
  the two (two writers of one name at the same moment: the last one's bytes stay; the HEAD
  after the PUT catches most of it, not all). Say which your store does before turning it off.
- **Digests.** Every object carries its SHA-256 as metadata (``x-amz-meta-sha256``), computed
  while uploading (a given ``sha256`` is checked before the upload is completed: nothing is
  left on a mismatch, a multipart upload is aborted). Every read and open re-hashes the bytes
  as they stream and raises :class:`~registry_core.errors.DigestMismatchError` before handing
  out the last piece of an object whose bytes disagree: a tampered object is never served
  whole. A ranged read of an object not yet verified in this process (by ETag) verifies the
  whole object once first; later reads send ``If-Match: <ETag>``, so they get those bytes or
  nothing.
- **Bounded memory.** Bodies stream in ``part_size`` pieces; large files go up as multipart
  uploads above ``multipart_threshold`` (at least S3's 5 MiB part minimum): an upload holds
  about two parts in memory, a streamed read about 1 MiB, whatever the file's size.
- **find_by_sha256**: a zero-byte index object per (digest, path) under the hidden prefix
  ``<prefix>.registry-core/sha256/<hex>/<path>``, written after each put, removed on delete;
  hidden names are never artifact paths (:func:`validate_path`), so it is never walked or
  served. :meth:`reindex` writes missing entries (objects added behind the store's back).
- **Credentials** only from boto3's chain (environment, shared files, instance roles); never
  an argument. Timeouts and retries (standard mode) are set on the client.

Nothing else of the registry's state (databases, patches) goes into the bucket.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import logging
import tempfile
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from .._util import LRU, is_loopback
from ..errors import (
    DigestMismatchError,
    DuplicateFileError,
    InvalidArgumentError,
    StorageError,
    UploadRejectedError,
)
from ._directory import STATE_DIR
from ._protocol import ArtifactInfo, validate_path
from ._types import content_type_for

__all__ = ["S3Storage", "S3StorageError"]

log = logging.getLogger(__name__)

_MIN_PART = 5 << 20  # S3's smallest part (every part but the last)
_MAX_PARTS = 10_000
_BLOCK = 1 << 20
_META = "sha256"
_EMPTY_SHA256 = hashlib.sha256(b"").digest()


class S3StorageError(StorageError):
    """The object store failed (unreachable, refused, throttled past the retries)."""


def _error_code(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _is_missing(exc: BaseException) -> bool:
    code, status = _error_code(exc)
    return status == 404 or code in ("404", "NoSuchKey", "NotFound")


def _is_precondition(exc: BaseException) -> bool:
    code, status = _error_code(exc)
    return status == 412 or code == "PreconditionFailed"


def _is_conflict(exc: BaseException) -> bool:
    code, status = _error_code(exc)
    return status == 409 or code == "ConditionalRequestConflict"


def _mtime_ns(value: Any) -> int | None:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    return None


def _read_upto(data: BinaryIO, n: int) -> bytes | bytearray:
    """Up to ``n`` bytes of ``data`` (fewer only at its end), without a second copy."""
    first = data.read(n)
    if not first or len(first) >= n:
        return first
    buf = bytearray(first)
    del first
    while len(buf) < n:
        piece = data.read(n - len(buf))
        if not piece:
            break
        buf += piece
    return buf


class _Chain:
    """``head`` then the rest of ``tail``, letting go of ``head`` as it is consumed."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head: bytes | None = head
        self._at = 0
        self._tail = tail

    def read(self, n: int) -> bytes | memoryview:
        if self._head is not None:
            piece = memoryview(self._head)[self._at : self._at + n]  # no copy
            self._at += len(piece)
            if self._at >= len(self._head):
                self._head = None
            if piece:
                return piece
        return self._tail.read(n)


def _check_endpoint(url: str, *, allow_http: bool) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise InvalidArgumentError("endpoint_url is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidArgumentError("endpoint_url must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgumentError(
            "endpoint_url must not carry credentials: they come from boto3's chain"
        )
    if parts.scheme == "http" and not allow_http and not is_loopback(host):
        raise InvalidArgumentError(
            f"endpoint_url {url!r} is plain HTTP to a non-loopback host: artifacts and signed "
            "requests would travel in the clear (use https, or allow_http=True)"
        )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3Storage:
    """Artifacts in ``bucket`` under ``prefix`` on S3 or an S3-compatible store (a
    :class:`~registry_core.storage.WritableStorage`; see the module docstring for the
    guarantees).

    ``endpoint_url``: an S3-compatible server (MinIO, Ceph, R2, moto); ``region``: the
    bucket's region; ``max_object_bytes``: larger puts are refused (413) before anything is
    completed; ``ca_bundle``: a CA file for the endpoint's TLS certificate (verification is
    always on for https; plain ``http://`` only to a loopback endpoint unless ``allow_http``;
    never credentials in the URL). ``stat_ttl``: seconds a found object's HEAD answers again (the
    server's stat and open of one request cost one HEAD; a miss is never remembered, so another
    instance's upload shows at once; 0: every call asks). Every method blocks on the network:
    the server calls them in worker threads.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 8 << 20,
        max_object_bytes: int = 5 << 30,
        part_size: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
        max_pool_connections: int = 32,
        addressing_style: str = "auto",
        conditional_writes: bool = True,
        ca_bundle: str | None = None,
        stat_ttl: float = 1.0,
        allow_http: bool = False,
    ) -> None:
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise InvalidArgumentError(f"invalid bucket name {bucket!r}")
        if not isinstance(prefix, str):
            raise InvalidArgumentError(f"prefix must be a str, not {type(prefix).__name__}")
        prefix = prefix.strip("/")
        if prefix and validate_path(prefix) != prefix:
            raise InvalidArgumentError(
                f"invalid prefix {prefix!r} (no '..', hidden or empty parts)"
            )
        for option, value, least in (
            ("multipart_threshold", multipart_threshold, _MIN_PART),
            ("max_object_bytes", max_object_bytes, 1),
            ("max_attempts", max_attempts, 1),
            ("max_pool_connections", max_pool_connections, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidArgumentError(f"{option} must be an int >= {least}, not {value!r}")
        if part_size is None:
            part_size = max(multipart_threshold, -(-max_object_bytes // _MAX_PARTS))
        if isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < _MIN_PART:
            raise InvalidArgumentError(
                f"part_size must be an int >= {_MIN_PART}, not {part_size!r}"
            )
        if part_size * _MAX_PARTS < max_object_bytes:
            raise InvalidArgumentError(
                f"part_size {part_size} cannot reach max_object_bytes {max_object_bytes} "
                f"in {_MAX_PARTS} parts"
            )
        if isinstance(stat_ttl, bool) or not isinstance(stat_ttl, (int, float)) or stat_ttl < 0:
            raise InvalidArgumentError(f"stat_ttl must be a number >= 0, not {stat_ttl!r}")
        if endpoint_url is not None:
            _check_endpoint(endpoint_url, allow_http=allow_http)
        if addressing_style not in ("auto", "path", "virtual"):
            raise InvalidArgumentError("addressing_style must be auto, path or virtual")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.max_object_bytes = max_object_bytes
        self.part_size = part_size
        self.conditional_writes = conditional_writes
        self._index_prefix = f"{self.prefix}{STATE_DIR}/sha256/"
        self._client = self._make_client(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            max_pool_connections=max_pool_connections,
            addressing_style=addressing_style,
            ca_bundle=ca_bundle,
        )
        # (key, ETag) -> SHA-256 the bytes were verified to have (objects hashed in full here)
        self._verified: LRU[tuple[str, str], bytes] = LRU(max_entries=65_536)
        # key -> (monotonic time, HEAD answer): found objects only, never a miss (another
        # instance's upload shows at once); a delete here forgets its entry
        self._heads: LRU[str, tuple[float, dict[str, Any]]] = LRU(max_entries=16_384)
        self.stat_ttl = stat_ttl

    def _make_client(self, **opts: Any) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise ImportError("S3Storage needs boto3: pip install 'registry-core[s3]'") from exc
        config = Config(
            connect_timeout=opts["connect_timeout"],
            read_timeout=opts["read_timeout"],
            retries={"max_attempts": opts["max_attempts"], "mode": "standard"},
            max_pool_connections=opts["max_pool_connections"],
            s3={"addressing_style": opts["addressing_style"]},
            # our own SHA-256 goes with every PUT / part; no extra CRC trailer that some
            # S3-compatible stores do not understand
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=config,
            verify=opts["ca_bundle"] if opts["ca_bundle"] is not None else True,
        )

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Storage({self.bucket!r}, prefix={self.prefix!r}{where})"

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return self.prefix + path

    def _index_key(self, sha256: bytes, path: str) -> str:
        return f"{self._index_prefix}{sha256.hex()}/{path}"

    def _fail(self, op: str, key: str, exc: BaseException) -> S3StorageError:
        code, status = _error_code(exc)
        detail = f"{code} (HTTP {status})" if code or status else type(exc).__name__
        return S3StorageError(f"S3 {op} s3://{self.bucket}/{key} failed: {detail}")

    def _call(self, op: str, key: str, **kwargs: Any) -> Any:
        """One client call; store failures become S3StorageError (404/409/412 pass through)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, op)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _is_missing(exc) or _is_precondition(exc) or _is_conflict(exc):
                raise
            raise self._fail(op, key, exc) from None
        except BotoCoreError as exc:
            raise self._fail(op, key, exc) from None

    def _head(self, key: str, *, cached: bool = False) -> dict[str, Any] | None:
        """The object's HEAD, or None; ``cached``: a found object's HEAD of the last
        ``stat_ttl`` seconds will do (the server's stat then open of one request)."""
        from botocore.exceptions import ClientError

        if cached and self.stat_ttl:
            hit = self._heads.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.stat_ttl:
                return hit[1]
        try:
            head: dict[str, Any] = self._call("head_object", key, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                self._heads.discard(key)
                return None
            raise self._fail("head_object", key, exc) from None
        if self.stat_ttl:
            self._heads.put(key, (time.monotonic(), head))
        return head

    def _digest_of(self, key: str, head: dict[str, Any]) -> bytes:
        """The object's SHA-256: its metadata, or (an object stored behind our back) hashed."""
        raw = (head.get("Metadata") or {}).get(_META, "")
        if len(raw) == 64:
            try:
                return bytes.fromhex(raw)
            except ValueError:
                pass
        etag = str(head.get("ETag", ""))
        known = self._verified.get((key, etag))
        if known is not None:
            return known
        h = hashlib.sha256()
        body = self._get(key, etag=etag)
        try:
            while block := body.read(_BLOCK):
                h.update(block)
        finally:
            body.close()
        digest = h.digest()
        self._verified.put((key, etag), digest)
        return digest

    def _info(self, path: str, key: str, head: dict[str, Any]) -> ArtifactInfo:
        return ArtifactInfo(
            path,
            int(head.get("ContentLength", 0)),
            self._digest_of(key, head),
            content_type_for(path),
            _mtime_ns(head.get("LastModified")),
        )

    def _get(self, key: str, *, etag: str | None = None, start: int = 0) -> Any:
        """The object's body (a stream) from ``start``; FileNotFoundError if it is gone or is
        no longer the ``etag`` version."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Key": key}
        if etag:
            kwargs["IfMatch"] = etag
        if start:
            kwargs["Range"] = f"bytes={start}-"
        try:
            return self._call("get_object", key, **kwargs)["Body"]
        except ClientError as exc:
            if _is_missing(exc) or _is_precondition(exc):
                self._heads.discard(key)  # the caller's stat again asks afresh
                raise FileNotFoundError(key) from None
            raise self._fail("get_object", key, exc) from None

    def check(self) -> None:
        """Raise S3StorageError unless the bucket is reachable with these credentials (one
        HeadBucket: for readiness probes; a missing bucket otherwise looks like missing files)."""
        from botocore.exceptions import ClientError

        try:
            self._call("head_bucket", "")
        except ClientError as exc:  # 404: no such bucket
            raise self._fail("head_bucket", "", exc) from None

    # -- the protocol ------------------------------------------------------------------------

    def stat(self, path: str) -> ArtifactInfo | None:
        return self._stat(path, cached=True)

    def _stat(self, path: str, *, cached: bool) -> ArtifactInfo | None:
        if validate_path(path) != path:
            return None
        key = self._key(path)
        head = self._head(key, cached=cached)
        if head is None:
            return None
        try:
            return self._info(path, key, head)
        except FileNotFoundError:  # deleted while being hashed
            return None

    def read(self, path: str) -> bytes:
        """The artifact's bytes, digest-checked (DigestMismatchError when they disagree)."""
        with self.open(path) as f:
            return f.read()

    def open(self, path: str) -> BinaryIO:
        """The artifact as a seekable binary stream, digest-checked as it is read."""
        if validate_path(path) != path:
            raise FileNotFoundError(path)
        key = self._key(path)
        head = self._head(key, cached=True)
        if head is None:
            raise FileNotFoundError(path)
        expected = self._digest_of(key, head)
        reader = _S3Reader(self, path, key, int(head.get("ContentLength", 0)), head, expected)
        return cast(BinaryIO, reader)

    def find_by_sha256(self, sha256: bytes) -> str | None:
        if not isinstance(sha256, (bytes, bytearray)) or len(sha256) != 32:
            return None
        sha256 = bytes(sha256)
        base = f"{self._index_prefix}{sha256.hex()}/"
        listing = self._call("list_objects_v2", base, Prefix=base, MaxKeys=16)
        for item in listing.get("Contents", []):
            path = str(item["Key"])[len(base) :]
            if validate_path(path) != path:
                continue
            info = self.stat(path)
            if info is not None and info.sha256 == sha256:
                return path
        return None

    # -- writing -------------------------------------------------------------------------------

    def put(
        self, path: str, data: bytes | BinaryIO, *, sha256: bytes | None = None
    ) -> ArtifactInfo:
        """Store an immutable artifact (:class:`~registry_core.storage.WritableStorage`)."""
        if not isinstance(path, str) or validate_path(path) != path:
            raise InvalidArgumentError(f"invalid artifact path {path!r}")
        key = self._key(path)
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            stream: BinaryIO | None = None
        else:
            raw = _read_upto(data, self.multipart_threshold + 1)
            stream = data
        if len(raw) <= self.multipart_threshold:
            digest = hashlib.sha256(raw).digest()
            self._check(path, digest, sha256, len(raw))
            return self._put_single(path, key, raw, digest)
        if stream is None:  # large bytes: multipart too, with the digest known
            digest = hashlib.sha256(raw).digest()
            self._check(path, digest, sha256, len(raw))
            sha256, stream = digest, io.BytesIO(b"")
        source = _Chain(raw, stream)  # the first piece is let go of once it is sent
        del raw
        return self._put_large(path, key, source, sha256)

    def _check(self, path: str, digest: bytes, expected: bytes | None, size: int) -> None:
        if expected is not None and digest != expected:
            raise DigestMismatchError(
                f"{path}: the bytes have SHA-256 {digest.hex()}, expected {expected.hex()}"
            )
        if size > self.max_object_bytes:
            raise UploadRejectedError(
                f"{path}: {size} bytes exceed the store's limit of {self.max_object_bytes}",
                status=413,
            )

    def _existing(self, path: str, digest: bytes) -> ArtifactInfo:
        """After a refused create: the existing object's info if it holds these bytes."""
        existing = self._stat(path, cached=False)
        if existing is not None and existing.sha256 == digest:
            return existing
        raise DuplicateFileError(f"{path} exists with other bytes; files are immutable")

    def _put_single(self, path: str, key: str, raw: bytes, digest: bytes) -> ArtifactInfo:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {
            "Key": key,
            "Body": raw,
            "Metadata": {_META: digest.hex()},
            "ContentType": content_type_for(path),
            "ChecksumSHA256": _b64(digest),
        }
        if self.conditional_writes:
            kwargs["IfNoneMatch"] = "*"
        elif self._stat(path, cached=False) is not None:
            return self._existing(path, digest)
        for _ in range(3):
            try:
                self._call("put_object", key, **kwargs)
                break
            except ClientError as exc:
                if _is_precondition(exc):
                    return self._existing(path, digest)
                if not _is_conflict(exc):
                    raise self._fail("put_object", key, exc) from None
        else:  # three conflicts in a row: a concurrent writer; whoever won decides
            return self._existing(path, digest)
        return self._created(path, key, digest)

    def _created(self, path: str, key: str, digest: bytes) -> ArtifactInfo:
        index_key = self._index_key(digest, path)
        try:  # the artifact is stored; its index entry only makes it a delta base
            self._call("put_object", index_key, Key=index_key, Body=b"")
        except S3StorageError as exc:
            log.warning("%s; reindex() adds the entry later", exc)
        head = self._head(key)
        info = self._info(path, key, head) if head is not None else None
        if info is None or info.sha256 != digest:  # replaced or removed behind us: say so
            raise DuplicateFileError(f"{path} changed while it was being stored")
        return info

    def _put_large(self, path: str, key: str, data: _Chain, sha256: bytes | None) -> ArtifactInfo:
        """A multipart upload. The digest goes into the metadata when the upload is created,
        so it must be known first: the given one (checked before completing), else the
        stream is spooled to a temporary file while hashing it."""
        spool: BinaryIO | None = None
        try:
            if sha256 is None:
                spool, sha256 = self._spool(path, data)
                data = _Chain(b"", spool)
            existing = self._stat(path, cached=False)
            if existing is not None:  # the name is taken: hash, compare, upload nothing
                h = hashlib.sha256()
                size = 0
                while block := data.read(_BLOCK):
                    h.update(block)
                    size += len(block)
                self._check(path, h.digest(), sha256, size)
                return self._existing(path, h.digest())
            return self._multipart(path, key, data, sha256)
        finally:
            if spool is not None:
                spool.close()

    def _spool(self, path: str, data: _Chain) -> tuple[BinaryIO, bytes]:
        spool = cast(BinaryIO, tempfile.TemporaryFile(prefix="registry-core-s3-"))  # noqa: SIM115
        try:
            h = hashlib.sha256()
            size = 0
            while block := data.read(_BLOCK):
                h.update(block)
                spool.write(block)
                size += len(block)
                if size > self.max_object_bytes:
                    self._check(path, b"", None, size)
            spool.seek(0)
            return spool, h.digest()
        except BaseException:
            spool.close()
            raise

    def _multipart(self, path: str, key: str, source: _Chain, sha256: bytes) -> ArtifactInfo:
        from botocore.exceptions import ClientError

        created = self._call(
            "create_multipart_upload",
            key,
            Key=key,
            Metadata={_META: sha256.hex()},
            ContentType=content_type_for(path),
            ChecksumAlgorithm="SHA256",
        )
        upload_id = created["UploadId"]
        completed = False
        try:
            h = hashlib.sha256()
            size = 0
            parts: list[dict[str, Any]] = []
            buffer = bytearray(self.part_size)  # one part in memory, refilled
            view = memoryview(buffer)
            while True:
                filled = 0
                while filled < self.part_size:
                    piece = source.read(self.part_size - filled)
                    if not piece:
                        break
                    view[filled : filled + len(piece)] = piece
                    filled += len(piece)
                    del piece
                if not filled:
                    break
                part = buffer if filled == self.part_size else bytes(view[:filled])
                h.update(view[:filled])
                size += filled
                if size > self.max_object_bytes:
                    self._check(path, b"", None, size)
                part_sha = _b64(hashlib.sha256(view[:filled]).digest())
                answer = self._call(
                    "upload_part",
                    key,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=len(parts) + 1,
                    Body=part,
                    ChecksumSHA256=part_sha,
                )
                parts.append(
                    {
                        "PartNumber": len(parts) + 1,
                        "ETag": answer["ETag"],
                        "ChecksumSHA256": part_sha,
                    }
                )
                del part
                if filled < self.part_size:
                    break
            view.release()
            self._check(path, h.digest(), sha256, size)
            kwargs: dict[str, Any] = {
                "Key": key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if self.conditional_writes:
                kwargs["IfNoneMatch"] = "*"
            try:
                self._call("complete_multipart_upload", key, **kwargs)
            except ClientError as exc:
                if _is_precondition(exc) or _is_conflict(exc):
                    return self._existing(path, sha256)
                raise self._fail("complete_multipart_upload", key, exc) from None
            completed = True
        finally:
            if not completed:
                self._abort(key, upload_id)
        return self._created(path, key, sha256)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:  # keep the original error; the bucket's lifecycle rule cleans up
            log.warning("could not abort the multipart upload of s3://%s/%s", self.bucket, key)

    def delete(self, path: str) -> bool:
        if validate_path(path) != path:
            return False
        key = self._key(path)
        head = self._head(key)
        if head is None:
            return False
        self._call("delete_object", key, Key=key)
        self._heads.discard(key)
        raw = (head.get("Metadata") or {}).get(_META, "")
        if len(raw) == 64:
            try:
                digest = bytes.fromhex(raw)
            except ValueError:
                return True
            index_key = self._index_key(digest, path)
            self._call("delete_object", index_key, Key=index_key)
        return True

    def walk(self) -> Iterator[str]:
        """Every artifact path (``list_objects_v2``, paginated), hidden names excluded.

        Keys sort by their UTF-8 bytes, so the hidden ``.registry-core/`` entries form one
        run: the listing stops before it and resumes after it instead of paging through it.
        """
        hidden = f"{self.prefix}{STATE_DIR}/"
        after_hidden = f"{self.prefix}{STATE_DIR}0"  # "0" follows "/"
        plen = len(self.prefix)
        for start_after in ("", after_hidden):
            for key in self._list(self.prefix, start_after):
                if start_after == "" and key >= hidden:
                    break
                rel = key[plen:]
                if validate_path(rel) == rel:
                    yield rel

    def _list(self, prefix: str, start_after: str) -> Iterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000}
            if token is not None:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            page = self._call("list_objects_v2", prefix, **kwargs)
            for item in page.get("Contents", []):
                yield str(item["Key"])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def reindex(self) -> int:
        """Write the digest index entry of every artifact (objects put behind the store's
        back become delta bases); returns the count of artifacts."""
        n = 0
        for path in self.walk():
            info = self.stat(path)
            if info is None:
                continue
            index_key = self._index_key(info.sha256, path)
            if self._head(index_key) is None:
                self._call("put_object", index_key, Key=index_key, Body=b"")
            n += 1
        return n


class _S3Reader(io.RawIOBase):
    """A seekable, digest-checked view of one object version (its ETag).

    Sequential reads from 0 hash as they go and raise DigestMismatchError instead of
    returning the last piece of bytes that disagree; a read elsewhere in an object not yet
    verified (by ETag) verifies the whole object first. Each GET sends ``If-Match``.
    """

    def __init__(
        self,
        store: S3Storage,
        path: str,
        key: str,
        size: int,
        head: dict[str, Any],
        expected: bytes,
    ) -> None:
        super().__init__()
        self._store = store
        self._path = path
        self._key = key
        self._size = size
        self._etag = str(head.get("ETag", ""))
        self._expected = expected
        self._pos = 0
        self._body: Any = None
        self._body_pos = 0
        self._hash: Any = None  # running SHA-256 of bytes [0, _body_pos) when not None
        self._verified = store._verified.get((key, self._etag)) == expected
        if size == 0 and expected != _EMPTY_SHA256:
            raise DigestMismatchError(f"{path}: the stored bytes do not have their SHA-256")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _mismatch(self) -> DigestMismatchError:
        return DigestMismatchError(
            f"{self._path}: the stored bytes disagree with their SHA-256 {self._expected.hex()}"
            " (changed in the bucket?); not served"
        )

    def _verify_whole(self) -> None:
        h = hashlib.sha256()
        body = self._store._get(self._key, etag=self._etag)
        try:
            while block := body.read(_BLOCK):
                h.update(block)
        finally:
            body.close()
        if h.digest() != self._expected:
            raise self._mismatch()
        self._verified = True
        self._store._verified.put((self._key, self._etag), self._expected)

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed file")
        left = self._size - self._pos
        n = left if size is None or size < 0 else min(size, left)
        if n <= 0:
            return b""
        if self._body is None or self._body_pos != self._pos:
            self._drop_body()
            if self._pos == 0:  # a read from the start always re-hashes
                self._hash = hashlib.sha256()
            else:
                self._hash = None
                if not self._verified:
                    self._verify_whole()
            self._body = self._store._get(self._key, etag=self._etag, start=self._pos)
            self._body_pos = self._pos
        got = _read_upto(self._body, n)
        data = got if isinstance(got, bytes) else bytes(got)  # a short read joined: rare
        if len(data) != n:  # shorter than its HEAD said: replaced under us
            self._drop_body()
            raise FileNotFoundError(self._path)
        self._body_pos += n
        self._pos += n
        if self._hash is not None:
            self._hash.update(data)
            if self._pos == self._size:
                if self._hash.digest() != self._expected:
                    self._drop_body()
                    raise self._mismatch()
                self._verified = True
                self._store._verified.put((self._key, self._etag), self._expected)
                self._hash = None
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._drop_body()
        super().close()
