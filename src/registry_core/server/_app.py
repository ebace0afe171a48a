"""RegistryApp: an ASGI application serving package artifacts from a :class:`Storage`.

Per request it does, in order: path validation, ``304`` for a matching ``If-None-Match``,
a ``226 IM Used`` registry-core patch when the client names a version it holds (``A-IM:
rcdelta``), otherwise the full artifact with content negotiation. Every response carries a
strong ETag (hex SHA-256 of the artifact) and RFC 9530 digests. Wire format: docs/wire.md.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..flags import flag_enabled
from ..wire._delta import delta_response_headers, etag_for_sha256, parse_delta_request
from ..wire._digest import format_digest
from ._storage import ArtifactInfo, DirectoryStorage, Storage, validate_path

__all__ = ["ByteLRU", "RegistryApp"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ByteLRU:
    """A thread-safe LRU mapping whose bound is the total size of the cached ``bytes`` values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: collections.OrderedDict[Any, bytes] = collections.OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._data[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, evicted = self._data.popitem(last=False)
                self._size -= len(evicted)

    @property
    def size(self) -> int:
        """Bytes currently held."""
        return self._size

    def __len__(self) -> int:
        return len(self._data)


def _negotiate(accept_encoding: str, flags: Any) -> str:
    """The coding the Compressor picks for ``Accept-Encoding`` (flags remove refused codings)."""
    from ..compress import Compressor

    try:
        coding = Compressor.negotiate(accept_encoding, ("zstd", "br", "gzip", "identity"),
                                      flags=flags)
    except Exception:  # a malformed header must not fail the download
        return "identity"
    return coding


def _encode(coding: str, data: bytes, flags: Any) -> bytes:
    from ..compress import Compressor

    return Compressor(coding, flags=flags).compress(data)


def _encode_dcz(dictionary: bytes, data: bytes, flags: Any) -> bytes:
    from ..compress import Compressor, Dictionary

    return Compressor("dcz", dictionary=Dictionary(dictionary), flags=flags).compress(data)


_COMPRESSIBLE_PREFIXES = ("text/", "application/json", "application/xml", "application/x-tar")


async def _drain(receive: Receive, limit: int = 1 << 20) -> None:
    """Consume a request body we do not use (bounded), so the protocol state stays clean."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


class RegistryApp:
    """ASGI app serving ``storage`` (a :class:`Storage` or a directory path).

    ``alt_svc``: value of the ``Alt-Svc`` header advertising HTTP/3 (set by :func:`serve`; not
    sent when the ``QUIC_TRANSPORT`` flag is off). ``dictionaries``: send ``Use-As-Dictionary``
    and answer ``Available-Dictionary`` with ``dcz`` (RFC 9842). ``patch_cache_bytes`` bounds
    the in-memory
    LRU of computed patches and encoded bodies. ``hits`` counts requests per path, which tests
    use to prove request coalescing on the client side.
    """

    def __init__(
        self,
        storage: Storage | str | Any,
        *,
        flags: Any = None,
        alt_svc: str | None = None,
        patch_cache_bytes: int = 64 << 20,
        min_delta_saving: float = 0.1,
        cache_control: str = "public, max-age=60",
        dictionaries: bool = True,
    ) -> None:
        if not isinstance(storage, Storage):
            storage = DirectoryStorage(storage)
        self.storage: Storage = storage
        self.flags = flags
        self.alt_svc = alt_svc
        self.cache = ByteLRU(patch_cache_bytes)
        self.min_delta_saving = min_delta_saving
        self.cache_control = cache_control
        self.dictionaries = dictionaries
        self.hits: collections.Counter[str] = collections.Counter()
        self.patches_computed = 0
        self._inflight: dict[Any, asyncio.Future[bytes | None]] = {}

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] not in ("GET", "HEAD") or headers.get("content-length", "0") != "0":
            await _drain(receive)
        status, out_headers, body = await self.handle(scope["method"], scope["path"], headers)
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1"))
                                for k, v in out_headers]})
        await send({"type": "http.response.body", "body": body})

    # -- request handling (transport independent) -------------------------------------------

    async def handle(self, method: str, raw_path: str, headers: dict[str, str]
                     ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request: returns (status, headers, body)."""
        common: list[tuple[str, str]] = []
        if self.alt_svc and flag_enabled(self.flags, "QUIC_TRANSPORT"):
            common.append(("alt-svc", self.alt_svc))
        if method not in ("GET", "HEAD"):
            return 405, [*common, ("allow", "GET, HEAD"), ("content-length", "0")], b""
        path = validate_path(raw_path)
        info = self.storage.stat(path) if path is not None else None
        self.hits[raw_path] += 1
        if info is None:
            msg = b"not found\n"
            return 404, [*common, ("content-type", "text/plain"),
                         ("content-length", str(len(msg)))], msg
        etag = etag_for_sha256(info.sha256)
        common += [("etag", etag), ("cache-control", self.cache_control)]
        ask = parse_delta_request(headers)
        if etag in ask.etags or any(t.lstrip("W/") == etag for t in ask.etags):
            return 304, [*common, ("vary", "a-im, if-none-match, accept-encoding")], b""
        repr_digest = format_digest(digests={"sha-256": info.sha256})
        if ask.wants_rcdelta and flag_enabled(self.flags, "DELTA_AGGREGATOR"):
            for base_sha in ask.base_sha256s():
                patch = await self._patch_for(base_sha, info)
                if patch is not None:
                    hdrs = delta_response_headers(etag_for_sha256(base_sha), etag, repr_digest)
                    out = [*common[:-2], *hdrs.items(), ("content-length", str(len(patch))),
                           ("content-digest", format_digest(patch))]
                    return 226, out, patch
        dcz = await self._dcz_for(headers, info)
        if dcz is not None:
            body, _ = dcz
            digest = format_digest(body)
            out = [*common, ("content-type", info.content_type), ("content-encoding", "dcz"),
                   ("vary", "accept-encoding, available-dictionary, a-im, if-none-match"),
                   ("content-length", str(len(body))), ("repr-digest", digest),
                   ("content-digest", digest), *self._use_as_dictionary(info)]
            return 200, out, body
        data = self.storage.read(info.path)
        coding = "identity"
        ctype = info.content_type
        if ctype.startswith(_COMPRESSIBLE_PREFIXES):
            coding = _negotiate(headers.get("accept-encoding", ""), self.flags)
        out = [*common, ("content-type", ctype), ("vary", "accept-encoding, a-im, if-none-match"),
               *self._use_as_dictionary(info)]
        if coding != "identity":
            key = ("enc", info.sha256, coding)
            encoded = self.cache.get(key)
            if encoded is None:
                encoded = await asyncio.get_running_loop().run_in_executor(
                    None, _encode, coding, data, self.flags)
                self.cache.put(key, encoded)
            if len(encoded) < len(data):
                digest = format_digest(encoded)  # RFC 9530: of the encoded representation
                out += [("content-encoding", coding), ("content-length", str(len(encoded))),
                        ("repr-digest", digest), ("content-digest", digest)]
                return 200, out, encoded
        out += [("content-length", str(len(data))), ("repr-digest", repr_digest),
                ("content-digest", repr_digest)]
        return 200, out, data

    def _use_as_dictionary(self, info: ArtifactInfo) -> list[tuple[str, str]]:
        """RFC 9842: each artifact may serve as the dictionary for later ones in its directory."""
        if not self.dictionaries or not flag_enabled(self.flags, "ZSTD_COMPRESSION"):
            return []
        from ..wire._dictionary import build_use_as_dictionary

        directory = "/" + info.path.rsplit("/", 1)[0] + "/*" if "/" in info.path else "/*"
        return [("use-as-dictionary", build_use_as_dictionary(directory))]

    async def _dcz_for(self, headers: dict[str, str], target: ArtifactInfo
                       ) -> tuple[bytes, bytes] | None:
        """A dcz body when the client offers a stored artifact as dictionary (RFC 9842)."""
        if not self.dictionaries or "available-dictionary" not in headers:
            return None
        from ..compress import negotiate
        from ..wire._dictionary import parse_available_dictionary

        dict_hash = parse_available_dictionary(headers["available-dictionary"])
        if dict_hash is None or dict_hash == target.sha256:
            return None
        if not flag_enabled(self.flags, "ZSTD_COMPRESSION"):
            return None
        try:
            if negotiate(headers.get("accept-encoding", ""), ["dcz"]) != "dcz":
                return None
        except Exception:
            return None
        key = ("dcz", dict_hash, target.sha256)
        body = self.cache.get(key)
        if body is None:
            base_path = self.storage.find_by_sha256(dict_hash)
            if base_path is None:
                return None
            old, new = self.storage.read(base_path), self.storage.read(target.path)
            body = await asyncio.get_running_loop().run_in_executor(
                None, _encode_dcz, old, new, self.flags)
            if len(body) > len(new) * (1 - self.min_delta_saving):
                body = b""
            self.cache.put(key, body)
        return (body, dict_hash) if body else None

    async def _patch_for(self, base_sha: bytes, target: ArtifactInfo) -> bytes | None:
        """The patch base->target (computed once, cached, single-flight), or None if unusable."""
        if base_sha == target.sha256:
            return None
        key = ("patch", base_sha, target.sha256)
        cached = self.cache.get(key)
        if cached is not None:
            return cached or None
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, self._compute_patch, base_sha, target)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved; waiters still get it
            raise
        finally:
            del self._inflight[key]

    def _compute_patch(self, base_sha: bytes, target: ArtifactInfo) -> bytes | None:
        try:
            from ..delta import DeltaAggregator
        except ImportError:
            return None
        base_path = self.storage.find_by_sha256(base_sha)
        if base_path is None:
            return None
        old = self.storage.read(base_path)
        new = self.storage.read(target.path)
        patch = DeltaAggregator(flags=self.flags).diff(old, new)
        self.patches_computed += 1
        key = ("patch", base_sha, target.sha256)
        if len(patch) > len(new) * (1 - self.min_delta_saving):
            self.cache.put(key, b"")  # remembered as "not worth it"
            return None
        self.cache.put(key, patch)
        return patch

