"""The MCP tools' logic, without the SDK: typed inputs in, dataclasses out.

:class:`RegistryTools` holds one configuration (a remote index by URL or a local index
directory, the file roots, the write switch, the upload token, the flags, the size bound) and
has one async method per tool. Every failure is a :class:`~registry_core.errors.RegistryCoreError`
with a message fit for an agent to read; ``_server`` turns it into an MCP tool error. Nothing
returned ever carries the token. Blocking work (SQLite, diffing, hashing big files) runs on a
worker thread so one slow call does not stall the server's event loop.

A local index is one index of one tenant (``tenant=``, ``index_name=``; v1 directories are
tenant "default", index "main"). Every call on it goes through the one decision point
(``Index.require``): reads need ``read`` on the project (a project-scoped token sees only its
projects), publish ``upload`` (``create`` for a new project) via ``Index.upload(principal=)``.
The principal is the configured token, authenticated against the tenant's store at start
(a bad token: the tools refuse to start) and again on every call (revocation takes effect at
once); without a token, the local operator (file access to the directory: the tenant's admin).
Nothing names another tenant: the index opened is the only one reachable. A remote registry
decides for itself (its URL names the tenant).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

from .._util import LRU
from ..errors import (
    AuthenticationError,
    InvalidArgumentError,
    PermissionDeniedError,
    ProjectNotFoundError,
    RegistryCoreError,
    UploadRejectedError,
    UpstreamError,
)
from ._resources import PATCH_MIME, BlobStore, mime_for
from ._roots import Roots

if TYPE_CHECKING:
    from ..audit import AuditSink
    from ..auth import Principal, TenantStore
    from ..config import Config
    from ..flags import FeatureFlags
    from ..index import Index, SimpleFile, SimpleProject
    from ..transport import Transport

__all__ = [
    "ArtifactResult",
    "CacheStatsResult",
    "FileInfo",
    "FlagInfo",
    "FlagsResult",
    "MetadataResult",
    "PatchResult",
    "PlanEntry",
    "PlanResult",
    "PublishResult",
    "RegistryTools",
    "SearchResult",
    "VerifyResult",
    "VersionInfo",
    "VersionsResult",
]

T = TypeVar("T")

MAX_LIST = 1000  # items in any list argument (requirements, overrides)
MAX_ARG = 1000  # characters in any string argument
MAX_METADATA = 1 << 20
_LOCAL_NAME = "local"  # the resource URI host of a v1 directory (tenant default, index main)


# -- results -------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    query: str
    total: int
    projects: list[str]
    tenant: str | None = None  # the local index's tenant (None: a remote registry)


@dataclass
class VersionInfo:
    version: str
    files: int
    yanked: bool


@dataclass
class VersionsResult:
    project: str
    latest: str | None
    versions: list[VersionInfo]
    tenant: str | None = None


@dataclass
class FileInfo:
    filename: str
    kind: str
    size: int | None
    sha256: str | None
    requires_python: str | None = None
    yanked: str | None = None
    has_metadata: bool = False


@dataclass
class MetadataResult:
    project: str
    version: str
    uri: str
    summary: str | None = None
    requires_python: str | None = None
    license: str | None = None
    requires_dist: list[str] = field(default_factory=list)
    provides_extra: list[str] = field(default_factory=list)
    project_urls: list[str] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    tenant: str | None = None


@dataclass
class PlanEntry:
    requirement: str
    project: str
    action: Literal["keep", "upgrade", "install", "unavailable", "skip"]
    installed: str | None = None
    version: str | None = None
    filename: str | None = None
    base: str | None = None
    full_bytes: int = 0
    delta_bytes: int | None = None
    transfer_bytes: int = 0
    reason: str = ""


@dataclass
class PlanResult:
    entries: list[PlanEntry]
    changes: int
    full_bytes: int
    transfer_bytes: int


@dataclass
class PatchResult:
    uri: str
    mime_type: str
    size: int
    method: str
    base_size: int
    target_size: int
    base_sha256: str
    target_sha256: str
    saved: float
    path: str | None = None


@dataclass
class ArtifactResult:
    filename: str
    uri: str
    mime_type: str
    size: int
    sha256: str
    how: Literal["full", "delta", "local", "patch"]
    transferred_bytes: int
    path: str | None = None


@dataclass
class PublishResult:
    project: str
    filename: str
    version: str
    sha256: str
    size: int
    tenant: str | None = None
    uploader: str | None = None  # the subject the index recorded (local index)


@dataclass
class VerifyResult:
    filename: str
    sha256: str
    size: int
    ok: bool
    expected_sha256: str | None
    reason: str
    signed: bool | None = None  # None: no TUF metadata to check against
    signature: str = ""


@dataclass
class FlagInfo:
    name: str
    stage: str
    value: str
    default: bool
    source: str


@dataclass
class FlagsResult:
    flags: list[FlagInfo]
    overridden: list[str]


@dataclass
class CacheStatsResult:
    resources: dict[str, int]
    transport: dict[str, int]
    build_cache: dict[str, Any] | None = None


# -- helpers -------------------------------------------------------------------------------------


def _text(value: Any, what: str, *, limit: int = MAX_ARG, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string")
    if (not value and not empty) or len(value) > limit or "\x00" in value:
        raise InvalidArgumentError(f"{what} must be 1..{limit} characters without NUL")
    return value


def _project_name(name: Any) -> str:
    import re

    from ..index import normalize

    name = _text(name, "project", limit=200)
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
        raise InvalidArgumentError(f"{name!r} is not a valid project name")
    return normalize(name)


@functools.lru_cache(maxsize=1 << 16)
def _dist(filename: str) -> Any:
    """proxy._select.dist_info, memoized (filenames repeat on every call of a session)."""
    from ..proxy._select import dist_info

    return dist_info(filename)


def _version_of(filename: str) -> str | None:
    info = _dist(filename)
    return str(info.version) if info is not None else None


def _sha256_of(f: SimpleFile) -> str | None:
    v = f.hashes.get("sha256")
    return v.lower() if v else None


def _yanked(f: SimpleFile) -> str | None:
    if f.yanked is False:
        return None
    return "" if f.yanked is True else str(f.yanked)


def _file_info(f: SimpleFile) -> FileInfo:
    info = _dist(f.filename)
    return FileInfo(
        filename=f.filename,
        kind=info.kind if info is not None else "other",
        size=f.size,
        sha256=_sha256_of(f),
        requires_python=f.requires_python,
        yanked=_yanked(f),
        has_metadata=f.core_metadata is not False,
    )


def _version_key(v: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def _parse_metadata(data: bytes) -> dict[str, list[str]]:
    """Core metadata headers (RFC 822 style), bounded: 200 values per field, 2000 chars each."""
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    msg = BytesHeaderParser(policy=compat32).parsebytes(data[:MAX_METADATA])
    out: dict[str, list[str]] = {}
    for key, value in msg.items():
        values = out.setdefault(key.lower(), [])
        if len(values) < 200:
            values.append(str(value)[:2000])
    return out


@functools.lru_cache(maxsize=1)
def _interpreter_cached() -> tuple[str, tuple[str, ...]]:
    from packaging.tags import sys_tags

    return ".".join(str(p) for p in sys.version_info[:3]), tuple(str(t) for t in sys_tags())


def _interpreter() -> tuple[str, list[str]]:
    py, tags = _interpreter_cached()
    return py, list(tags)


class _View:
    """One fetched project page and what the tools derive from it, computed once per page
    version (ETag or index serial): files by version, versions newest first, choices made."""

    def __init__(self, page: SimpleProject, tag: str) -> None:
        self.page = page
        self.tag = tag
        self.by_version: dict[str, list[SimpleFile]] = {}
        for f in page.files:
            info = _dist(f.filename)
            if info is not None:
                self.by_version.setdefault(str(info.version), []).append(f)
        self.order = sorted(self.by_version, key=_version_key, reverse=True)
        self.yanked = {
            v: all(f.yanked is not False for f in files) for v, files in self.by_version.items()
        }
        self.latest = next((v for v in self.order if not self.yanked[v]), None)
        self._chosen: dict[tuple[Any, ...], SimpleFile | None] = {}

    def files_of(self, version: str) -> list[SimpleFile]:
        from packaging.version import InvalidVersion, Version

        try:
            key = str(Version(version))
        except InvalidVersion:
            key = version
        return list(self.by_version.get(key, ()))

    def choose(
        self, spec: Any, py: str, tags: Sequence[str], kind: str | None = None
    ) -> SimpleFile | None:
        """proxy._select.choose_file over this page (memoized per specifier, Python, tags)."""
        from ..proxy._select import choose_file

        key = (str(spec), bool(spec.prereleases), py, tuple(tags), kind)
        if key not in self._chosen:
            files: Sequence[SimpleFile] = self.page.files
            if kind is not None:
                files = [
                    f for f in files if (i := _dist(f.filename)) is not None and i.kind == kind
                ]
            if len(self._chosen) > 256:
                self._chosen.clear()
            self._chosen[key] = choose_file(files, spec, python_version=py, tags=list(tags))
        return self._chosen[key]


# -- the tools -----------------------------------------------------------------------------------


class RegistryTools:
    """The tools over one registry (``registry`` URL or local ``directory``), sans-SDK."""

    def __init__(
        self,
        *,
        registry: str | None = None,
        directory: str | os.PathLike[str] | None = None,
        roots: Sequence[str | os.PathLike[str]] = (),
        allow_write: bool = False,
        token: str | None = None,
        verify: bool | str = True,
        flags: FeatureFlags | None = None,
        max_bytes: int = 64 << 20,
        cache: Any = None,
        index: Index | None = None,
        tenant: str = "default",
        index_name: str = "main",
        tenant_store: TenantStore | str | os.PathLike[str] | None = None,
        audit: AuditSink | None = None,
        config: Config | str | os.PathLike[str] | None = None,
    ) -> None:
        if (registry is None) == (directory is None and index is None and config is None):
            raise InvalidArgumentError(
                "give exactly one of registry (a URL), directory, config or index"
            )
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
            raise InvalidArgumentError(f"max_bytes must be a positive int, not {max_bytes!r}")
        if token is not None and not isinstance(token, str):
            raise InvalidArgumentError("token must be a string")
        self.roots = Roots(roots)
        self.allow_write = bool(allow_write)
        self._token = token
        self.tls_verify = verify
        self.flags = flags
        self.max_bytes = max_bytes
        self.cache = cache
        self._index: Index | None = index
        self._owns_index = False
        self._owned_store: TenantStore | None = None
        self._open_lock = threading.Lock()
        self._tenant_store = tenant_store
        self.audit = audit
        self.directory: Path | None = None
        self.base_url: str | None = None
        self.tenant: str | None = None
        self.index_name: str | None = None
        if registry is not None:
            if not isinstance(registry, str) or not registry.startswith(("https://", "http://")):
                raise InvalidArgumentError("registry must be an http(s):// URL")
            base = registry.rstrip("/")
            if base.endswith("/simple"):
                base = base[: -len("/simple")]
            parts = urlsplit(base)
            if "@" in parts.netloc or parts.query or parts.fragment:
                raise InvalidArgumentError(
                    "registry must be a plain http(s)://host[:port][/path] URL (credentials go "
                    "in token=, never in the URL)"
                )
            self.base_url = base
            self.name = parts.netloc or "registry"
        else:
            try:
                if config is not None:
                    if directory is not None or index is not None or tenant_store is not None:
                        raise InvalidArgumentError("give config= alone (with tenant=, index_name=)")
                    directory = self._from_config(config, tenant, index_name)
                elif (
                    directory is not None and tenant_store is None and self._v1(tenant, index_name)
                ):
                    # a v1 directory: decide as `serve DIR` does (its config: public reads)
                    from ..config import single_tenant

                    if not Path(directory).is_dir():
                        raise InvalidArgumentError(
                            f"directory {os.fspath(directory)!r} does not exist"
                        )
                    self._from_config(single_tenant(directory), tenant, index_name)
                self._bind_local(directory, index, tenant, index_name)
            except BaseException:
                self._close_index()
                raise
        self.blobs = BlobStore(self.name, max_bytes=max(4 * max_bytes, 64 << 20))
        self._transport: Transport | None = None
        self._transport_loop: asyncio.AbstractEventLoop | None = None
        self._patch_store: Any = None
        self._views: LRU[str, _View] = LRU(max_entries=256)
        self._meta: LRU[tuple[str, str], bytes] = LRU(max_bytes=32 << 20)
        self._delta_sizes: LRU[tuple[str, str], int] = LRU(max_entries=4096)
        self._trusted: Any = None
        self._project_list: tuple[str, list[str]] | None = None
        if self.local:
            try:
                self.principal()  # a bad or expired token: refuse to start, say why
            except BaseException:
                self._close_index()
                raise

    def __repr__(self) -> str:  # never the token
        where = self.base_url or str(self.directory)
        tenant = f", tenant={self.tenant!r}" if self.tenant is not None else ""
        return (
            f"RegistryTools({where!r}{tenant}, allow_write={self.allow_write}, "
            f"roots={self.roots!r})"
        )

    # -- plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _v1(tenant: str, index_name: str) -> bool:
        return (tenant, index_name) == ("default", "main")

    def _from_config(
        self, config: Config | str | os.PathLike[str], tenant: str, index_name: str
    ) -> Path:
        """The directory of ``index_name`` of ``tenant`` in a v2 config, and its tenant store
        with the config's bindings (roles, group roles, public readers), as the server has."""
        from ..auth import TenantStore
        from ..config import Config, load
        from ..server._tenancy import static_bindings

        cfg = config if isinstance(config, Config) else load(config)
        tc = cfg.tenants.get(tenant)
        if tc is None or tc.index(index_name) is None:
            raise InvalidArgumentError(
                f"{cfg.source}: no index {index_name!r} of tenant {tenant!r} in the config"
            )
        directory = Path(cfg.index_directory(tenant, index_name))
        if not directory.is_dir():
            raise InvalidArgumentError(f"directory {os.fspath(directory)!r} does not exist")
        state = Path(cfg.tenant_directory(tenant)) / ".registry-core"
        self._owned_store = TenantStore(
            state / "tenant.sqlite3",
            tenant=tenant,
            static_bindings=static_bindings(tc),
            audit=self.audit,
        )
        self._tenant_store = self._owned_store
        return directory

    def _bind_local(
        self,
        directory: str | os.PathLike[str] | None,
        index: Index | None,
        tenant: str,
        index_name: str,
    ) -> None:
        """The one tenant and index of a local server (its name in resource URIs too)."""
        from ..auth import Resource

        if index is not None:
            if directory is not None or self._tenant_store is not None:
                raise InvalidArgumentError("give index= alone (it has its storage and store)")
            tenant, index_name = index.tenant, index.name
            root = getattr(index.storage, "root", None)
            self.directory = Path(root) if root is not None else None
        else:
            assert directory is not None
            self.directory = Path(directory)
            if not self.directory.is_dir():
                raise InvalidArgumentError(f"directory {os.fspath(directory)!r} does not exist")
        Resource(tenant, index_name)  # both names valid, else InvalidArgumentError
        self.tenant, self.index_name = tenant, index_name
        if (tenant, index_name) == ("default", "main"):
            self.name = _LOCAL_NAME
        else:
            self.name = f"{tenant}.{index_name}"
        if index is None and self._tenant_store is None and tenant != "default":
            # v2 layout: ROOT/<tenant>/<index>/ with the store at ROOT/<tenant>/.registry-core/
            assert self.directory is not None
            real = self.directory.resolve()
            if real.parent.name != tenant:
                raise InvalidArgumentError(
                    f"tenant {tenant!r}: {os.fspath(self.directory)!r} is not ROOT/{tenant}/"
                    "<index> (the v2 layout); give tenant_store= (its tenant.sqlite3)"
                )
            state = real.parent / ".registry-core"
            state.mkdir(exist_ok=True)
            self._tenant_store = state / "tenant.sqlite3"

    @property
    def index(self) -> Index:
        if self._index is None:
            with self._open_lock:  # two first calls on worker threads open it once
                if self._index is None:
                    self._index = self._open_index()
        return self._index

    def _open_index(self) -> Index:
        """The local Index, over the tenant store chosen at construction."""
        from ..index import Index

        assert self.directory is not None and self.tenant is not None
        kwargs: dict[str, Any] = {"tenant": self.tenant, "name": self.index_name}
        if self.audit is not None:
            kwargs["audit"] = self.audit
        store = self._tenant_store
        if isinstance(store, (str, os.PathLike)):
            from ..auth import TenantStore

            store = self._owned_store = TenantStore(store, tenant=self.tenant, audit=self.audit)
        if store is not None:
            kwargs["auth"] = store
        index = Index(self.directory, **kwargs)
        self._owns_index = True
        return index

    def principal(self) -> Principal:
        """Who the local tools act as: the configured token's principal (authenticated now,
        so a revoked or expired token stops working at once), else the local operator."""
        from ..auth import Principal

        assert self.tenant is not None
        if self._token is None:
            return Principal.local(self.tenant)
        return self.index.auth.authenticate_token(self._token)

    def _require(self, action: str, project: str | None = None) -> Principal:
        """The one decision point for a call on the local index (raises when denied)."""
        principal = self.principal()
        self.index.require(principal, action, project)
        return principal

    def _readable(self, names: list[str]) -> list[str]:
        """The projects of ``names`` the principal may read (all when it may read the index);
        not audited one by one: filtering a listing is not a denied request."""
        from ..auth import authorize

        principal = self.principal()
        idx = self.index
        policy = idx.policy()
        if authorize(principal, "read", idx.resource(), policy):
            return names
        return [n for n in names if authorize(principal, "read", idx.resource(n), policy)]

    @property
    def local(self) -> bool:
        return self.base_url is None

    def transport(self) -> Transport:
        """The Transport of this event loop (made on first use in each loop)."""
        from ..transport import Transport

        loop = asyncio.get_running_loop()
        if self._transport is None or self._transport_loop is not loop:
            assert self.base_url is not None
            kwargs: dict[str, Any] = {
                "flags": self.flags,
                "max_response_size": self.max_bytes,
                "timeout": 30.0,
            }
            if self.base_url.startswith("http://"):
                import httpx

                kwargs.update(transport=httpx.AsyncHTTPTransport(), allow_http=True)
            else:
                kwargs.update(verify=self.tls_verify)
            self._transport = Transport(**kwargs)
            self._transport_loop = loop
        return self._transport

    async def aclose(self) -> None:
        if self._transport is not None:
            t, self._transport = self._transport, None
            try:
                if self._transport_loop is asyncio.get_running_loop():
                    await t.aclose()
            except RuntimeError:
                pass
        self._close_index()

    def _close_index(self) -> None:
        if self._index is not None and self._owns_index:
            self._index.close()
            self._index = None
        if self._owned_store is not None:
            self._owned_store.close()
            self._owned_store = None

    @staticmethod
    async def _thread(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def _require_write(self, what: str) -> None:
        if not self.allow_write:
            raise PermissionDeniedError(
                f"{what} is a write: this server was started without allow_write"
            )

    # -- the index, local or remote --------------------------------------------------------------

    def _local_page(self, project: str) -> SimpleProject | None:
        from ..index import SimpleProject, simple_file

        idx = self.index
        if idx.project(project) is None:
            return None
        records = idx.files(project)
        files = tuple(simple_file(r, r.path) for r in records)
        versions = tuple(dict.fromkeys(r.version for r in records))
        return SimpleProject(name=project, files=files, versions=versions)

    async def _names(self) -> list[str]:
        if self.local:
            return await self._thread(
                lambda: self._readable([p.name for p in self.index.projects()])
            )
        from ..index import JSON_V1
        from ..index._simple import parse_index

        cached = self._project_list
        headers = {"if-none-match": cached[0]} if cached is not None else None
        r = await self._get(
            f"{self.base_url}/simple/", accept=f"{JSON_V1}, text/html;q=0.1", headers=headers
        )
        if r.status == 304 and cached is not None:
            return cached[1]
        if r.status != 200:
            raise UpstreamError(f"the registry's project list answered {r.status}")
        names = parse_index(r.content, r.headers.get("content-type", ""))
        etag = r.headers.get("etag")
        self._project_list = (etag, names) if etag else None
        return names

    async def _get(
        self,
        url: str,
        *,
        accept: str | None = None,
        max_size: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if accept:
            headers = {**(headers or {}), "accept": accept}
        try:
            return await self.transport().get(url, headers=headers, max_size=max_size)
        except RegistryCoreError:
            raise
        except OSError as exc:
            raise UpstreamError(f"cannot reach the registry: {exc.__class__.__name__}") from None

    async def page(self, project: str) -> SimpleProject:
        """The project's page (ProjectNotFoundError when the index has no such project)."""
        return (await self.view(project)).page

    async def view(self, project: str) -> _View:
        """The project's page and what is derived from it, revalidated on every call (the
        index serial locally, the page's ETag remotely) and reused while unchanged."""
        name = _project_name(project)
        cached = self._views.get(name)
        if self.local:

            def check() -> int:
                self._require("read", name)  # before the lookup: no hint whether it exists
                return self.index.serial

            serial = await self._thread(check)
            tag = f"serial-{serial}"
            if cached is not None and cached.tag == tag:
                return cached
            page = await self._thread(self._local_page, name)
        else:
            from ..index import HTML_V1, JSON_V1, parse_project

            url = f"{self.base_url}/simple/{quote(name)}/"
            accept = f"{JSON_V1}, {HTML_V1};q=0.2, text/html;q=0.1"
            headers = {"accept": accept}
            if cached is not None:
                headers["if-none-match"] = cached.tag
            r = await self._get(url, headers=headers)
            if r.status == 304 and cached is not None:
                return cached
            if r.status == 404:
                page, tag = None, ""
            elif r.status != 200:
                raise UpstreamError(f"the registry answered {r.status} for project {name!r}")
            else:
                page = parse_project(r.content, r.headers.get("content-type", ""), url, name=name)
                tag = r.headers.get("etag", "")
        if page is None:
            self._views.discard(name)
            raise ProjectNotFoundError(f"no project {name!r} in the index")
        view = _View(page, tag)
        if tag:
            self._views.put(name, view)
        return view

    async def _metadata_bytes(self, f: SimpleFile) -> bytes | None:
        if f.core_metadata is False:
            return None
        want = f.core_metadata.get("sha256") if isinstance(f.core_metadata, dict) else None
        key = (f.filename, want.lower()) if want else None
        if key is not None and (hit := self._meta.get(key)) is not None:
            return hit  # content-addressed: the page names the digest, the bytes matched it
        if self.local:
            data = await self._thread(self.index.metadata, f.filename)
        else:
            r = await self._get(f.url + ".metadata", max_size=MAX_METADATA)
            if r.status != 200:
                return None
            data = bytes(r.content)
        if data is None:
            return None
        if want and hashlib.sha256(data).hexdigest() != want.lower():
            raise UpstreamError(f"{f.filename}.metadata does not match its sha256")
        if key is not None:
            self._meta.put(key, data)
        return data

    async def _download(self, f: SimpleFile, have: bytes | None = None) -> tuple[bytes, str, int]:
        """(bytes, how, bytes moved) of a file, checked against the page's sha256."""
        want = _sha256_of(f)
        if f.size is not None and f.size > self.max_bytes:
            raise InvalidArgumentError(
                f"{f.filename} is {f.size} bytes, over the {self.max_bytes}-byte limit"
            )
        if self.local:
            rec = await self._thread(self.index.file, f.filename)
            if rec is None:
                raise ProjectNotFoundError(f"no file {f.filename!r} in the index")
            data = await self._thread(self.index.storage.read, rec.path)
            how, moved = "local", len(data)
        else:
            t = self.transport()
            before = t.stats["fetch_delta"], t.stats["fetch_bytes_wire"]
            try:
                data = await t.fetch(f.url, have=have, max_size=self.max_bytes)
            except OSError as exc:
                raise UpstreamError(
                    f"cannot reach the registry: {exc.__class__.__name__}"
                ) from None
            delta = t.stats["fetch_delta"] > before[0]
            how = "delta" if delta else "full"
            moved = t.stats["fetch_bytes_wire"] - before[1]
        if want is None:
            raise UpstreamError(f"the index gives no sha256 for {f.filename}: refused")
        if hashlib.sha256(data).hexdigest() != want:
            raise UpstreamError(f"{f.filename} does not match the index's sha256: refused")
        return data, how, moved

    def _patches(self) -> Any:
        if self._patch_store is None and self.directory is not None:
            from ..server._patch_store import PatchStore

            d = self.directory / ".registry-core" / "patches"
            if d.is_dir():
                self._patch_store = PatchStore(d)
        return self._patch_store

    # -- tools ---------------------------------------------------------------------------------

    async def search_projects(self, query: str = "", limit: int = 50) -> SearchResult:
        """Projects whose normalized name contains ``query`` (all for an empty query)."""
        from ..index import normalize

        query = _text(query, "query", limit=200, empty=True)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidArgumentError(f"limit must be 1..{MAX_LIST}")
        needle = normalize(query) if query else ""
        names = sorted({m for n in await self._names() if needle in (m := normalize(n))})
        return SearchResult(
            query=query, total=len(names), projects=names[:limit], tenant=self.tenant
        )

    async def list_versions(self, project: str) -> VersionsResult:
        view = await self.view(project)
        versions = [VersionInfo(v, len(view.by_version[v]), view.yanked[v]) for v in view.order]
        return VersionsResult(
            project=view.page.name, latest=view.latest, versions=versions, tenant=self.tenant
        )

    async def project_metadata(self, project: str, version: str | None = None) -> MetadataResult:
        from ._resources import version_uri

        view = await self.view(project)
        page = view.page
        if version is None:
            if view.latest is None:
                raise ProjectNotFoundError(f"project {page.name!r} has no installable version")
            version = view.latest
        version = _text(version, "version", limit=100)
        files = view.files_of(version)
        if not files:
            raise ProjectNotFoundError(f"project {page.name!r} has no version {version!r}")
        meta: dict[str, list[str]] = {}
        for f in sorted(files, key=lambda f: not f.filename.endswith(".whl")):
            data = await self._metadata_bytes(f)
            if data is not None:
                meta = _parse_metadata(data)
                break

        def one(k: str) -> str | None:
            values = meta.get(k)
            return values[0] if values else None

        version = _version_of(files[0].filename) or version
        return MetadataResult(
            project=page.name,
            version=version,
            uri=version_uri(self.name, page.name, version),
            summary=one("summary"),
            requires_python=one("requires-python") or files[0].requires_python,
            license=one("license-expression") or one("license"),
            requires_dist=meta.get("requires-dist", []),
            provides_extra=meta.get("provides-extra", []),
            project_urls=meta.get("project-url", []) + meta.get("home-page", []),
            files=[_file_info(f) for f in files],
            tenant=self.tenant,
        )

    async def plan_upgrade(
        self,
        requirements: list[str],
        installed: dict[str, str] | None = None,
        python_version: str | None = None,
        platform_tags: list[str] | None = None,
        compute_deltas: bool = False,
    ) -> PlanResult:
        """What installing ``requirements`` over ``installed`` downloads, full vs delta."""
        from packaging.requirements import InvalidRequirement, Requirement

        if not isinstance(requirements, list) or not 1 <= len(requirements) <= MAX_LIST:
            raise InvalidArgumentError(f"requirements must be a list of 1..{MAX_LIST} strings")
        installed = dict(installed or {})
        if len(installed) > 10 * MAX_LIST:
            raise InvalidArgumentError("too many installed entries")
        have = {
            _project_name(k): _text(v, "installed version", limit=100) for k, v in installed.items()
        }
        py, tags = _interpreter()
        if python_version is not None:
            py = _text(python_version, "python_version", limit=20)
        if platform_tags is not None:
            if not isinstance(platform_tags, list) or len(platform_tags) > 10 * MAX_LIST:
                raise InvalidArgumentError("platform_tags must be a list of tag strings")
            tags = [_text(t, "tag", limit=200) for t in platform_tags]
        entries: list[PlanEntry] = []
        for raw in requirements:
            text = _text(raw, "requirement", limit=MAX_ARG)
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                raise InvalidArgumentError(f"not a requirement: {text!r} ({exc})") from None
            name = _project_name(req.name)
            entry = PlanEntry(requirement=text, project=name, action="unavailable")
            entry.installed = have.get(name)
            entries.append(entry)
            if req.marker is not None and not req.marker.evaluate(
                {
                    "python_version": py[: py.rfind(".")] if py.count(".") > 1 else py,
                    "python_full_version": py,
                }
            ):
                entry.action, entry.reason = "skip", "marker excludes this interpreter"
                continue
            try:
                view = await self.view(name)
            except ProjectNotFoundError:
                entry.reason = "no such project in the index"
                continue
            except (PermissionDeniedError, AuthenticationError):
                entry.reason = "not readable as this server's principal"
                continue
            chosen = view.choose(req.specifier, py, tags)
            if chosen is None:
                entry.reason = "no file matches for this interpreter"
                continue
            info = _dist(chosen.filename)
            assert info is not None
            entry.version, entry.filename = str(info.version), chosen.filename
            entry.full_bytes = chosen.size or 0
            if entry.installed is not None and _version_key(entry.installed) == _version_key(
                entry.version
            ):
                entry.action, entry.full_bytes = "keep", 0
                continue
            entry.action = "upgrade" if entry.installed is not None else "install"
            entry.transfer_bytes = entry.full_bytes
            if entry.installed is None:
                continue
            base = self._base_for(view, chosen, entry.installed, py, tags)
            if base is None:
                entry.reason = "no file of the installed version to patch from"
                continue
            entry.base = base.filename
            entry.delta_bytes = await self._delta_size(base, chosen, compute_deltas)
            if entry.delta_bytes is not None and entry.delta_bytes < entry.transfer_bytes:
                entry.transfer_bytes = entry.delta_bytes
            elif entry.delta_bytes is None:
                entry.reason = "delta size unknown (not precomputed; compute_deltas=true diffs)"
        changes = [e for e in entries if e.action in ("upgrade", "install")]
        return PlanResult(
            entries=entries,
            changes=len(changes),
            full_bytes=sum(e.full_bytes for e in changes),
            transfer_bytes=sum(e.transfer_bytes for e in changes),
        )

    @staticmethod
    def _base_for(
        view: _View, target: SimpleFile, version: str, py: str, tags: list[str]
    ) -> SimpleFile | None:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        t = _dist(target.filename)
        try:
            spec = SpecifierSet(f"=={version}")
        except InvalidSpecifier:
            return None
        return view.choose(spec, py, tags, kind=t.kind if t is not None else None)

    async def _delta_size(self, base: SimpleFile, target: SimpleFile, compute: bool) -> int | None:
        store = self._patches() if self.local else None
        b, t = _sha256_of(base), _sha256_of(target)
        if store is not None and b and t:
            for mode in ("recon", "archive", "binary"):
                got = await self._thread(store.get, bytes.fromhex(b), bytes.fromhex(t), mode)
                if got:
                    return len(got)
        if b and t and (known := self._delta_sizes.get((b, t))) is not None:
            return known
        if not compute:
            return None
        old, _, _ = await self._download(base)
        new, _, _ = await self._download(target)
        agg = self._aggregator()
        patch = await self._thread(agg.diff, old, new)
        if b and t:
            self._delta_sizes.put((b, t), len(patch))
        return len(patch)

    def _aggregator(self) -> Any:
        from ..delta import DeltaAggregator

        return DeltaAggregator(flags=self.flags, max_output_size=self.max_bytes)

    def _patch_bytes(self, patch: str) -> bytes:
        """A patch named by a resource URI this server made, or a path inside the roots."""
        patch = _text(patch, "patch", limit=4096)
        ref = self.blobs.parse_uri(patch)
        if ref is not None:
            blob = self.blobs.get(*ref)
            if blob is None:
                raise InvalidArgumentError(f"resource {patch} is gone (evicted): diff again")
            return blob.data
        if patch.startswith("registry://"):
            raise InvalidArgumentError(f"{patch!r} is not a patch resource of this server")
        return self.roots.read(patch, self.max_bytes)

    def _patch_result(self, data: bytes, path: str | None = None) -> PatchResult:
        from ..delta import DeltaAggregator

        info = DeltaAggregator.inspect(data)
        blob = self.blobs.put("patch", data, PATCH_MIME)
        return PatchResult(
            uri=self.blobs.uri("patch", blob.sha256),
            mime_type=PATCH_MIME,
            size=blob.size,
            method=info.method,
            base_size=info.base_size,
            target_size=info.target_size,
            base_sha256=info.base_sha256,
            target_sha256=info.target_sha256,
            saved=round(info.saved, 6),
            path=path,
        )

    async def diff(
        self, old_path: str, new_path: str, output_path: str | None = None
    ) -> PatchResult:
        """A patch from the file ``old_path`` to ``new_path`` (both inside the roots)."""
        if output_path is not None:
            self._require_write("writing the patch to a file")
        old = self.roots.read(old_path, self.max_bytes)
        new = self.roots.read(new_path, self.max_bytes)
        patch = await self._thread(self._aggregator().diff, old, new)
        written = None
        if output_path is not None:
            written = str(self.roots.write(output_path, patch))
        return self._patch_result(patch, written)

    async def apply(
        self, old_path: str, patch: str, output_path: str | None = None
    ) -> ArtifactResult:
        """Rebuild the target of ``patch`` (URI or path) from ``old_path``; verified."""
        if output_path is not None:
            self._require_write("writing the result to a file")
        old = self.roots.read(old_path, self.max_bytes)
        data = self._patch_bytes(patch)
        out = await self._thread(self._aggregator().apply, old, data)
        written = str(self.roots.write(output_path, out)) if output_path is not None else None
        name = Path(output_path).name if output_path else ""
        blob = self.blobs.put("artifact", out, mime_for(name), name)
        return ArtifactResult(
            filename=name,
            uri=self.blobs.uri("artifact", blob.sha256),
            mime_type=blob.mime_type,
            size=blob.size,
            sha256=blob.sha256,
            how="patch",
            transferred_bytes=len(data),
            path=written,
        )

    async def inspect_patch(self, patch: str) -> PatchResult:
        return self._patch_result(self._patch_bytes(patch))

    async def fetch(
        self,
        project: str,
        version: str | None = None,
        filename: str | None = None,
        have_path: str | None = None,
        output_path: str | None = None,
    ) -> ArtifactResult:
        """Download one file of ``project`` (delta against ``have_path`` when the registry can)."""
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        if output_path is not None:
            self._require_write("writing the download to a file")
        view = await self.view(project)
        page = view.page
        if filename is not None:
            filename = _text(filename, "filename", limit=300)
            chosen = next((f for f in page.files if f.filename == filename), None)
            if chosen is None:
                raise ProjectNotFoundError(f"project {page.name!r} has no file {filename!r}")
        else:
            py, tags = _interpreter()
            try:
                spec = SpecifierSet(f"=={_text(version, 'version', limit=100)}" if version else "")
            except InvalidSpecifier:
                raise InvalidArgumentError(f"not a version: {version!r}") from None
            chosen = view.choose(spec, py, tags)
            if chosen is None:
                raise ProjectNotFoundError(f"no file of {page.name!r} matches for this interpreter")
        have = self.roots.read(have_path, self.max_bytes) if have_path is not None else None
        data, how, moved = await self._download(chosen, have)
        written = str(self.roots.write(output_path, data)) if output_path is not None else None
        blob = self.blobs.put("artifact", data, mime_for(chosen.filename), chosen.filename)
        return ArtifactResult(
            filename=chosen.filename,
            uri=self.blobs.uri("artifact", blob.sha256),
            mime_type=blob.mime_type,
            size=blob.size,
            sha256=blob.sha256,
            how=how,  # type: ignore[arg-type]
            transferred_bytes=moved,
            path=written,
        )

    async def publish(self, path: str) -> PublishResult:
        """Upload the file at ``path`` (inside the roots): to a local index as this server's
        principal (the index decides: upload, or create for a new project), to a remote
        registry with the configured token."""
        import io

        from ..index import parse_filename

        self._require_write("publish")
        if not self.local and not self._token:
            raise PermissionDeniedError("publish needs an upload token configured on this server")
        real = self.roots.resolve(path)
        parsed = parse_filename(real.name)
        data = self.roots.read(path, self.max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        if self.local:
            rec = await self._thread(
                lambda: self.index.upload(
                    real.name, io.BytesIO(data), principal=self.principal(), sha256=digest
                )
            )
            return PublishResult(
                rec.project,
                rec.filename,
                rec.version,
                rec.sha256,
                rec.size,
                tenant=self.tenant,
                uploader=rec.uploader,
            )
        await self._upload_remote(real.name, data, digest, parsed.project, parsed.version)
        return PublishResult(parsed.project, real.name, parsed.version, digest, len(data))

    async def _upload_remote(
        self, filename: str, data: bytes, digest: str, project: str, version: str
    ) -> None:
        import secrets

        boundary = "rc" + secrets.token_hex(16)
        fields = {
            ":action": "file_upload",
            "protocol_version": "1",
            "name": project,
            "version": version,
            "filetype": "bdist_wheel" if filename.endswith(".whl") else "sdist",
            "pyversion": "py3" if filename.endswith(".whl") else "source",
            "metadata_version": "2.1",
            "sha256_digest": digest,
        }
        parts: list[bytes] = []
        for k, v in fields.items():
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
            parts.append(f"{head}{v}\r\n".encode())
        safe = filename.replace('"', "")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{safe}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        parts += [data, f"\r\n--{boundary}--\r\n".encode()]
        auth = base64.b64encode(f"__token__:{self._token}".encode()).decode()
        try:
            r = await self.transport().request(
                "POST",
                f"{self.base_url}/legacy/",
                headers={
                    "content-type": f"multipart/form-data; boundary={boundary}",
                    "authorization": f"Basic {auth}",
                },
                content=b"".join(parts),
                max_size=1 << 16,
            )
        except OSError as exc:
            raise UpstreamError(f"cannot reach the registry: {exc.__class__.__name__}") from None
        if r.status != 200:
            text = r.content[:300].decode("utf-8", "replace").replace(self._token or "\x00", "***")
            raise UploadRejectedError(
                f"the registry refused the upload ({r.status}): {text}", status=r.status
            )

    async def verify(self, path: str, filename: str | None = None) -> VerifyResult:
        """Check a file inside the roots against the index's sha256 for it."""
        from ..index import parse_filename

        real = self.roots.resolve(path)
        data = self.roots.read(path, self.max_bytes)
        name = _text(filename, "filename", limit=300) if filename is not None else real.name
        parsed = parse_filename(name)
        digest = hashlib.sha256(data).hexdigest()
        page = await self.page(parsed.project)
        f = next((f for f in page.files if f.filename == name), None)
        expected = _sha256_of(f) if f is not None else None
        if f is None:
            ok, reason = False, f"the index has no file {name!r}"
        elif expected is None:
            ok, reason = False, "the index gives no sha256 for it"
        elif expected == digest:
            ok, reason = True, "sha256 matches the index"
        else:
            ok, reason = False, "sha256 differs from the index"
        result = VerifyResult(name, digest, len(data), ok, expected, reason)
        if f is not None:
            result.signed, result.signature = await self._thread(
                self._check_tuf, f"{parsed.project}/{name}", digest, len(data)
            )
            if result.signed is False:
                result.ok = False
        return result

    def _check_tuf(self, target: str, digest: str, size: int) -> tuple[bool | None, str]:
        """The file against the registry's signed TUF targets metadata (local directories
        with ``.registry-core/tuf/``), verified by python-tuf's ngclient from its 1.root.json."""
        tuf_dir = self.directory / ".registry-core" / "tuf" if self.directory else None
        if tuf_dir is None or not (tuf_dir / "1.root.json").is_file():
            return None, "no TUF metadata for this index"
        try:
            trusted = self._trusted_index(tuf_dir)
        except ImportError:
            return None, "TUF metadata present; pip install 'registry-core[signing]' to check it"
        try:
            info = trusted.targetinfo(target)
        except RegistryCoreError as exc:
            return False, str(exc).splitlines()[0][:300]
        want = str(info.hashes.get("sha256", "")).lower()
        if info.length == size and want == digest:
            return True, "matches the signed TUF targets metadata"
        return False, "differs from the signed TUF targets metadata"

    def _trusted_index(self, tuf_dir: Path) -> Any:
        if self._trusted is None:
            import tempfile

            from ..signing._client import TrustedIndex
            from ._tuf_local import DirectoryFetcher

            cache = tempfile.mkdtemp(prefix="registry-core-mcp-tuf-")
            self._trusted = TrustedIndex(
                tuf_dir / "1.root.json",
                "http://registry.invalid/tuf/",
                cache,
                fetcher=DirectoryFetcher(tuf_dir),
                max_age=0.0,
            )
        return self._trusted

    async def security_report(self) -> dict[str, Any]:
        if self.directory is None:
            raise InvalidArgumentError("security_report needs a local index directory (--dir)")
        from ..signing._report import security_report

        def report() -> Any:
            self._require("read")  # the figures of what readers are served (/tuf/)
            return security_report(self.directory, config={"flags": self.flags})

        out = dict((await self._thread(report)).to_dict())
        out["tenant"] = self.tenant
        return out

    async def flags_tool(self, overrides: dict[str, bool] | None = None) -> FlagsResult:
        """Describe the flags; ``overrides`` (allow_write only) apply to this process's server."""
        from ..flags import FeatureFlags

        changed: list[str] = []
        if overrides:
            self._require_write("overriding flags")
            if len(overrides) > MAX_LIST:
                raise InvalidArgumentError("too many overrides")
            base = self.flags if self.flags is not None else FeatureFlags()
            self.flags = base.with_overrides(dict(overrides))
            old, self._transport = self._transport, None  # the next call builds one on them
            if old is not None and self._transport_loop is asyncio.get_running_loop():
                await old.aclose()
            changed = sorted(overrides)
        flags = self.flags if self.flags is not None else FeatureFlags()
        out = [
            FlagInfo(s.name, str(s.stage), str(s.value), bool(s.default), s.source)
            for s in flags.describe().values()
        ]
        return FlagsResult(flags=out, overridden=changed)

    async def cache_stats(self) -> CacheStatsResult:
        transport = {}
        if self._transport is not None:
            transport = {k: int(v) for k, v in self._transport.stats.items()}
        build = None
        if self.cache is not None:
            from dataclasses import asdict

            build = asdict(self.cache.stats())
        return CacheStatsResult(
            resources=self.blobs.stats(), transport=transport, build_cache=build
        )

    # -- resources -----------------------------------------------------------------------------

    async def project_resource(self, project: str) -> dict[str, Any]:
        listed = await self.list_versions(project)
        from dataclasses import asdict

        return asdict(listed)

    async def version_resource(self, project: str, version: str) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(await self.project_metadata(project, version))
