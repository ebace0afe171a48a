"""The Index service: uploads, lookups, yanks, tokens and rebuilds over a storage and a
database. No HTTP here: the server's IndexApp adapts it, the CLI drives it.

Access control is the tenant's (:mod:`registry_core.auth`): tokens live in the tenant store,
and every upload and yank goes through the one ``authorize()``, on this index's resource.

An upload is streamed to a staging file (bounded, hashed), validated (filename grammar, the
client's digests, form fields, the archive's own metadata), stored atomically at
``<project>/<filename>``, then recorded; if recording fails the stored file is removed, so a
failed upload leaves neither a file nor a row. Every method may block (file system, SQLite):
the server calls them from worker threads, and the service is safe to share between them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from packaging.version import InvalidVersion, Version

from ..audit import AuditEvent, AuditSink
from ..auth import Decision, Policy, Principal, Resource, Scope, TenantStore, TokenRecord
from ..auth import authorize as _authorize
from ..auth import require as _require
from ..errors import (
    DigestMismatchError,
    DuplicateFileError,
    InvalidArgumentError,
    NotFoundError,
    ProjectNotFoundError,
    UploadRejectedError,
)
from ._db import IndexDB, SQLiteIndexDB, sort_files
from ._metadata import extract_metadata
from ._model import FileRecord, Project
from ._names import ParsedFilename, is_valid_name, normalize, parse_filename, version_key

if TYPE_CHECKING:
    from ..storage import WritableStorage
    from ._checks import UploadChecks

__all__ = ["DB_FILENAME", "TENANT_DB_FILENAME", "Index", "RebuildReport"]

log = logging.getLogger(__name__)

DB_FILENAME = "index.sqlite3"
TENANT_DB_FILENAME = "tenant.sqlite3"
_DEFAULT_TOKEN_ACTIONS = frozenset({"read", "upload", "create"})
_CHUNK = 1 << 20
_HEX = {"sha256": 64, "md5": 32, "blake2_256": 64}
_LOCK_STRIPES = 64


@dataclass(frozen=True)
class RebuildReport:
    """What :meth:`Index.rebuild` did. ``rejected``: ``(path, reason)`` of distribution files
    left out of the index (unreadable archive, metadata that disagrees with the name...)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: int = 0  # storage files whose names are not distribution filenames
    rejected: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class Index:
    """A package index over ``storage`` (a WritableStorage, or a directory path) and ``db``.

    A path means ``DirectoryStorage(path)`` with ``SQLiteIndexDB(path/.registry-core/
    index.sqlite3)``. Without ``db``, a storage with a ``state_dir`` gets its SQLite file
    there, any other an in-memory database. ``max_file_bytes``: larger uploads are refused
    with 413; ``max_metadata_bytes``: bound of a file's core metadata;
    ``max_unpacked_bytes``: bound of the bytes decompressed from an sdist while looking for
    its PKG-INFO. ``on_upload(record)`` is called after each new file is recorded (its
    exceptions are logged, not raised: the upload has succeeded).

    ``auth``: the tenant store holding tokens and role bindings (shared by the tenant's
    indexes). Without it the index opens ``TenantStore(state_dir/tenant.sqlite3)`` (in memory
    when the storage has no state directory), owns it and closes it; tokens of the index's
    old ``tokens`` table are imported into it (idempotent). ``tenant`` / ``name`` place the
    index: its resource is ``Resource(tenant, name)``. ``audit`` receives upload, yank and
    denial events (default: the store's sink). ``checks`` (:class:`~registry_core.index.
    _checks.UploadChecks`) run on each new file once validated, before it is stored: their
    findings are audited as ``upload.suspicious``, and with the ``"refuse"`` action a severe one
    rejects the upload.
    """

    def __init__(
        self,
        storage: WritableStorage | str | os.PathLike[str],
        db: IndexDB | None = None,
        *,
        max_file_bytes: int = 100 << 20,
        max_metadata_bytes: int = 1 << 20,
        max_unpacked_bytes: int = 1 << 30,
        on_upload: Callable[[FileRecord], None] | None = None,
        auth: TenantStore | None = None,
        tenant: str = "default",
        name: str = "main",
        audit: AuditSink | None = None,
        checks: UploadChecks | None = None,
    ) -> None:
        for option, value in (
            ("max_file_bytes", max_file_bytes),
            ("max_metadata_bytes", max_metadata_bytes),
            ("max_unpacked_bytes", max_unpacked_bytes),
        ):
            if not isinstance(value, int) or value <= 0:
                raise InvalidArgumentError(f"{option} must be a positive int, not {value!r}")
        if isinstance(storage, (str, os.PathLike)):
            from ..storage import DirectoryStorage

            storage = DirectoryStorage(storage)
        self.storage: WritableStorage = storage
        state_dir: Path | None = getattr(storage, "state_dir", None)
        self._owns_db = db is None
        if db is None:
            db = SQLiteIndexDB(state_dir / DB_FILENAME if state_dir is not None else ":memory:")
        self.db: IndexDB = db
        self._staging = state_dir / "tmp" if state_dir is not None else None
        self.max_file_bytes = max_file_bytes
        self.max_metadata_bytes = max_metadata_bytes
        self.max_unpacked_bytes = max_unpacked_bytes
        self.on_upload = on_upload
        self.checks = checks
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._rebuild_lock = threading.Lock()
        try:
            if auth is not None and auth.tenant != tenant and tenant != "default":
                raise InvalidArgumentError(
                    f"the tenant store is tenant {auth.tenant}'s, not {tenant}'s"
                )
            self.tenant: str = auth.tenant if auth is not None else tenant
            self.name: str = name
            self._resource = Resource(self.tenant, name)  # validates both names
            self._owns_auth = auth is None
            if auth is None:
                auth = TenantStore(
                    state_dir / TENANT_DB_FILENAME if state_dir is not None else None,
                    tenant=self.tenant,
                    audit=audit,
                )
            self.auth: TenantStore = auth
            self.audit: AuditSink = audit if audit is not None else auth.audit
            self._import_legacy_tokens()
        except BaseException:
            if self._owns_db:
                db.close()
            raise

    def _import_legacy_tokens(self) -> None:
        legacy = getattr(self.db, "legacy_tokens", None)
        if legacy is None:
            return
        rows = legacy()
        if rows:
            added = self.auth.import_legacy_tokens(rows, index=self.name)
            if added:
                log.info(
                    "index %s/%s: imported %d API token(s) from the index database into the "
                    "tenant store",
                    self.tenant,
                    self.name,
                    added,
                )

    def __repr__(self) -> str:
        return f"Index({self.storage!r}, {self.db!r}, tenant={self.tenant!r}, name={self.name!r})"

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and the tenant store (those the index opened)."""
        if self._owns_db:
            self.db.close()
        if self._owns_auth:
            self.auth.close()

    @property
    def serial(self) -> int:
        """Increases on every change of the index (for index page ETags)."""
        return self.db.serial

    # -- reading -----------------------------------------------------------------------------

    def project(self, name: str) -> Project | None:
        """The project ``name`` (normalized here), or None."""
        return self.db.project(normalize(name))

    def projects(self) -> list[Project]:
        """Every project, by name."""
        return self.db.projects()

    def files(self, project: str) -> list[FileRecord]:
        """The files of ``project``, by version (PEP 440) then filename."""
        return sort_files(self.db.files(normalize(project)))

    def file(self, filename: str) -> FileRecord | None:
        """The record of ``filename``, or None."""
        return self.db.file(filename)

    def metadata(self, filename: str) -> bytes | None:
        """The core metadata file of ``filename`` (PEP 658), or None."""
        return self.db.metadata(filename)

    def previous(self, record: FileRecord, n: int = 3) -> list[FileRecord]:
        """Up to ``n`` older files that a client upgrading to ``record`` may hold: the same
        project and kind (for wheels the same tags, for sdists the same extension), older
        versions, newest first. These are the bases to precompute patches from."""
        target = version_key(record.version)
        ext = _extension(record.filename)
        candidates = [
            f
            for f in self.db.files(record.project)
            if f.kind == record.kind
            and f.filename != record.filename
            and version_key(f.version) < target
            and (f.tags == record.tags if record.kind == "wheel" else _extension(f.filename) == ext)
        ]
        candidates.sort(key=lambda f: (version_key(f.version), f.filename), reverse=True)
        return candidates[: max(0, n)]

    # -- access control ----------------------------------------------------------------------

    def resource(self, project: str | None = None) -> Resource:
        """This index (``project`` None) or one of its projects (normalized) as a Resource."""
        if project is None:
            return self._resource
        return Resource(self.tenant, self.name, project)

    def policy(self) -> Policy:
        """The tenant's current Policy (static and stored bindings; recompiled on change)."""
        return self.auth.policy()

    def authorize(self, principal: Principal, action: str, project: str | None = None) -> Decision:
        """May ``principal`` do ``action`` on this index (or its ``project``)? Denials are
        audited. A project name that cannot exist is simply denied."""
        try:
            resource = self.resource(project)
        except InvalidArgumentError:
            return Decision(False, "not a valid project name")
        return _authorize(principal, action, resource, self.auth.policy(), audit=self.audit)

    def require(
        self,
        principal: Principal,
        action: str,
        project: str | None = None,
        *,
        hide: bool = False,
    ) -> None:
        """:meth:`authorize` or raise: NotFoundError when ``hide`` (or across tenants),
        TokenExpiredError, AuthenticationError when not signed in, PermissionDeniedError."""
        try:
            resource = self.resource(project)
        except InvalidArgumentError:
            if hide:
                raise NotFoundError("404 Not Found") from None
            raise ProjectNotFoundError(f"no project {str(project)[:80]!r} in the index") from None
        _require(principal, action, resource, self.auth.policy(), audit=self.audit, hide=hide)

    # -- tokens ------------------------------------------------------------------------------

    def create_token(
        self,
        scope: str | None = None,
        description: str = "",
        *,
        owner: str | None = None,
        scopes: Sequence[Scope | str] | None = None,
        expires_ns: int | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token in the tenant store; the raw token is returned here once, only a hash
        of its secret is stored.

        ``scopes`` (Scope objects or text such as ``"upload:main/foo"``): what it may do.
        Without them, as before tenants: ``read,upload,create`` on this index, or on project
        ``scope``. ``owner`` None makes a standalone token (its scopes are its whole grant),
        else the token narrows that subject's roles.
        """
        if scopes is not None:
            if scope is not None:
                raise InvalidArgumentError("give a project scope or scopes, not both")
            if isinstance(scopes, (str, Scope)):
                scopes = [scopes]
            parsed = [s if isinstance(s, Scope) else Scope.parse(self.tenant, s) for s in scopes]
        else:
            if scope is not None and (not isinstance(scope, str) or not is_valid_name(scope)):
                raise InvalidArgumentError(f"token scope {scope!r} is not a valid project name")
            parsed = [Scope(_DEFAULT_TOKEN_ACTIONS, self.resource(scope))]
        return self.auth.create_token(
            owner=owner, scopes=parsed, description=str(description), expires_ns=expires_ns
        )

    def tokens(self) -> list[TokenRecord]:
        """Every token of the tenant (revoked ones included), oldest first."""
        return self.auth.tokens()

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token (at once); False when it is unknown or already revoked."""
        return self.auth.revoke_token(token_id, by="local")

    def authenticate(self, raw_token: str | None, project: str) -> Principal:
        """The principal of ``raw_token`` if it may upload to ``project`` (``create`` when the
        project does not exist yet).

        AuthenticationError (401) when missing, malformed, unknown, wrong or revoked;
        TokenExpiredError (401) when expired; PermissionDeniedError (403) when it may not.
        """
        principal = self.auth.authenticate_token(raw_token)
        name = normalize(project)
        action = "upload" if self.db.project(name) is not None else "create"
        self.require(principal, action, name)
        return principal

    def _principal(self, token: str | None, principal: Principal | None) -> Principal:
        if principal is not None:
            if token is not None:
                raise InvalidArgumentError("give a token or a principal, not both")
            if not isinstance(principal, Principal):
                raise InvalidArgumentError("principal must be a registry_core.auth.Principal")
            return principal
        return self.auth.authenticate_token(token)  # None: AuthenticationError (401)

    def _emit(self, kind: str, principal: Principal | None, resource: str, **detail: str) -> None:
        self.audit.emit(
            AuditEvent(
                kind=kind,
                tenant=self.tenant,
                subject=principal.subject if principal is not None else "local",
                outcome="ok",
                action=kind if kind != "unyank" else "yank",
                resource=resource,
                detail={k: v for k, v in detail.items() if v},
            )
        )

    # -- changing ----------------------------------------------------------------------------

    def _check_yank(self, filename: str, principal: Principal | None) -> str:
        """The project of ``filename`` once ``principal`` may yank there (None: the local
        operator). Checked before looking the file up, so a refusal reveals nothing."""
        record = self.db.file(filename)
        if record is not None:
            project: str | None = record.project
        else:
            try:
                project = parse_filename(filename).project
            except UploadRejectedError:
                project = None
        if principal is not None:
            self.require(principal, "yank", project)
        if record is None:
            raise ProjectNotFoundError(f"no file {filename!r} in the index")
        return record.project

    def yank(self, filename: str, reason: str = "", *, principal: Principal | None = None) -> None:
        """Mark a file yanked (PEP 592); ProjectNotFoundError when there is no such file.
        ``principal`` needs ``yank`` on the project; None is the local operator."""
        project = self._check_yank(filename, principal)
        if not self.db.set_yanked(filename, str(reason)):
            raise ProjectNotFoundError(f"no file {filename!r} in the index")
        self._emit("yank", principal, str(self.resource(project)), filename=filename)

    def unyank(self, filename: str, *, principal: Principal | None = None) -> None:
        """Undo :meth:`yank`; ProjectNotFoundError when there is no such file."""
        project = self._check_yank(filename, principal)
        if not self.db.set_yanked(filename, None):
            raise ProjectNotFoundError(f"no file {filename!r} in the index")
        self._emit("unyank", principal, str(self.resource(project)), filename=filename)

    def upload(
        self,
        filename: str,
        content: IO[bytes],
        *,
        token: str | None = None,
        principal: Principal | None = None,
        sha256: str | None = None,
        md5: str | None = None,
        blake2_256: str | None = None,
        name: str | None = None,
        version: str | None = None,
    ) -> FileRecord:
        """Validate and publish one distribution file; returns its record.

        The caller is a raw ``token`` (authenticated against the tenant store) or an already
        authenticated ``principal``, not both; neither is anonymous (401). It needs ``create``
        on the project when the project is new, else ``upload``.

        AuthenticationError (401) / TokenExpiredError (401) / PermissionDeniedError (403) /
        NotFoundError (404, another tenant) for the caller;
        UploadRejectedError (400; 413 when over ``max_file_bytes``) for a bad filename,
        digest, form field or archive; DuplicateFileError (409) when ``filename`` exists with
        other bytes (the same bytes again return the existing record). On any failure nothing
        is stored.
        """
        who = self._principal(token, principal)
        parsed = parse_filename(filename)
        action = "upload" if self.db.project(parsed.project) is not None else "create"
        self.require(who, action, parsed.project)
        self._check_fields(filename, parsed, name, version)
        expected = {
            algo: _hex_digest(algo, value)
            for algo, value in (("sha256", sha256), ("md5", md5), ("blake2_256", blake2_256))
            if value is not None
        }
        with self._staged(content, filename, set(expected)) as (staged, digests, size):
            for algo, want in expected.items():
                if not hmac.compare_digest(digests[algo], want):
                    raise UploadRejectedError(
                        f"{filename}: the {algo} digest sent ({want}) does not match the "
                        f"bytes received ({digests[algo]})"
                    )
            existing = self.db.file(filename)
            if existing is not None:
                return self._same_or_duplicate(existing, digests["sha256"])
            staged.seek(0)
            metadata, meta = extract_metadata(
                staged,
                filename,
                parsed,
                max_metadata_bytes=self.max_metadata_bytes,
                max_unpacked_bytes=self.max_unpacked_bytes,
            )
            record = FileRecord(
                project=parsed.project,
                filename=filename,
                version=parsed.version,
                kind=parsed.kind,
                path=f"{parsed.project}/{filename}",
                size=size,
                sha256=digests["sha256"],
                upload_time_ns=time.time_ns(),
                requires_python=meta.requires_python,
                metadata_sha256=hashlib.sha256(metadata).hexdigest(),
                tags=parsed.tags,
                uploader=who.subject,
            )
            if self.checks is not None:
                self._run_checks(record, staged, metadata, who, action == "create")
            staged.seek(0)
            stored = self._store(record, staged, metadata, meta.name)
        if stored is record:
            self._emit(
                "upload",
                who,
                str(self.resource(record.project)),
                filename=filename,
                sha256=record.sha256,
                token_id=who.token_id or "",
                created="yes" if action == "create" else "",
            )
        if stored is record and self.on_upload is not None:
            try:
                self.on_upload(record)
            except Exception:
                log.exception("on_upload callback failed for %s", record.filename)
        return stored

    def _run_checks(
        self,
        record: FileRecord,
        staged: BinaryIO,
        metadata: bytes,
        who: Principal,
        new_project: bool,
    ) -> None:
        from ._checks import UploadCandidate

        assert self.checks is not None
        candidate = UploadCandidate(
            project=record.project,
            filename=record.filename,
            version=record.version,
            kind=record.kind,
            size=record.size,
            sha256=record.sha256,
            metadata=metadata,
            file=staged,
            new_project=new_project,
            uploader=who.subject,
            tenant=self.tenant,
        )
        self.checks.enforce(candidate, self.audit, subject=who.subject)

    @staticmethod
    def _check_fields(
        filename: str, parsed: ParsedFilename, name: str | None, version: str | None
    ) -> None:
        if name is not None and normalize(name.strip()) != parsed.project:
            raise UploadRejectedError(
                f"{filename}: the form's name {name!r} does not match the filename's project "
                f"{parsed.project!r}"
            )
        if version is not None:
            try:
                same = Version(version.strip()) == Version(parsed.version)
            except InvalidVersion:
                raise UploadRejectedError(
                    f"{filename}: the form's version {version!r} is not a PEP 440 version"
                ) from None
            if not same:
                raise UploadRejectedError(
                    f"{filename}: the form's version {version!r} does not match the filename's "
                    f"{parsed.version}"
                )

    @staticmethod
    def _same_or_duplicate(existing: FileRecord, sha256: str) -> FileRecord:
        if existing.sha256 == sha256:
            return existing
        raise DuplicateFileError(
            f"{existing.filename} already exists with other contents; files cannot be "
            "replaced (upload a new version)"
        )

    def _staged(self, content: IO[bytes], filename: str, algos: set[str]) -> _Staged:
        return _Staged(self, content, filename, algos)

    def _store(
        self, record: FileRecord, staged: BinaryIO, metadata: bytes, display_name: str
    ) -> FileRecord:
        """Put the bytes in the storage, then the row in the database; a failed insert removes
        the file again (unless it was already there before this upload)."""
        lock = self._locks[hash(record.path) % _LOCK_STRIPES]
        with lock:
            existed = self.storage.stat(record.path) is not None
            try:
                self.storage.put(record.path, staged, sha256=bytes.fromhex(record.sha256))
            except DigestMismatchError as e:  # the staging file changed under us
                raise UploadRejectedError(f"{record.filename}: {e}") from None
            except DuplicateFileError:
                raise DuplicateFileError(
                    f"{record.filename}: {record.path} already exists in the storage with "
                    "other contents; files cannot be replaced"
                ) from None
            try:
                stored = self.db.add_file(record, metadata, display_name)
            except BaseException:
                if not existed:
                    try:
                        self.storage.delete(record.path)
                    except Exception:  # keep the original error; say what is left over
                        log.exception("could not remove %s after a failed upload", record.path)
                raise
        return stored

    # -- rebuild -----------------------------------------------------------------------------

    def rebuild(self) -> RebuildReport:
        """Bring the database in line with the storage: index every distribution file not in
        it (metadata extracted), drop rows whose file vanished, re-read rows whose bytes
        changed. Files that do not parse as distributions are skipped; unreadable ones are
        reported in ``rejected``."""
        with self._rebuild_lock:
            return self._rebuild()

    def _rebuild(self) -> RebuildReport:
        added = updated = unchanged = skipped = removed = 0
        rejected: list[tuple[str, str]] = []
        rows = {r.filename: r for r in self.db.files()}
        seen: set[str] = set()
        for path in sorted(self.storage.walk()):
            filename = path.rsplit("/", 1)[-1]
            try:
                parsed = parse_filename(filename)
            except UploadRejectedError:
                skipped += 1
                continue
            if filename in seen:
                rejected.append((path, f"another {filename} is already indexed"))
                continue
            row = rows.get(filename)
            if row is not None and row.path != path and self.storage.stat(row.path) is not None:
                rejected.append((path, f"{filename} is already indexed at {row.path}"))
                continue
            info = self.storage.stat(path)
            if info is None:  # vanished during the walk
                continue
            if row is not None and row.path == path and row.sha256 == info.sha256.hex():
                seen.add(filename)
                unchanged += 1
                continue
            try:
                record, metadata, display = self._record_from_storage(path, filename, parsed, info)
            except UploadRejectedError as e:
                rejected.append((path, str(e)))
                continue
            seen.add(filename)
            if row is None:
                # under the upload lock of that path: an upload between its put and its row
                # is finished first, and then its row is the one kept
                with self._locks[hash(path) % _LOCK_STRIPES]:
                    current = self.db.file(filename)
                    if current is None:
                        self.db.add_file(record, metadata, display)
                        added += 1
                    elif current.sha256 == record.sha256:
                        unchanged += 1
                    else:
                        rejected.append((path, f"{filename} changed while being indexed"))
            else:
                if row.yanked is not None:
                    record = _replace(record, yanked=row.yanked)
                self.db.replace_file(record, metadata)
                updated += 1
        for filename in rows:
            if filename not in seen and self.db.remove_file(filename):
                removed += 1
        return RebuildReport(added, updated, removed, unchanged, skipped, tuple(rejected))

    def _record_from_storage(
        self, path: str, filename: str, parsed: ParsedFilename, info: object
    ) -> tuple[FileRecord, bytes, str]:
        opener = getattr(self.storage, "open", None)
        if opener is not None:
            f = opener(path)
        else:
            import io

            f = io.BytesIO(self.storage.read(path))
        try:
            metadata, meta = extract_metadata(
                f,
                filename,
                parsed,
                max_metadata_bytes=self.max_metadata_bytes,
                max_unpacked_bytes=self.max_unpacked_bytes,
            )
        finally:
            f.close()
        sha = info.sha256.hex()  # type: ignore[attr-defined]
        record = FileRecord(
            project=parsed.project,
            filename=filename,
            version=parsed.version,
            kind=parsed.kind,
            path=path,
            size=info.size,  # type: ignore[attr-defined]
            sha256=sha,
            upload_time_ns=info.mtime_ns or time.time_ns(),  # type: ignore[attr-defined]
            requires_python=meta.requires_python,
            metadata_sha256=hashlib.sha256(metadata).hexdigest(),
            tags=parsed.tags,
        )
        return record, metadata, meta.name


class _Staged:
    """``with`` block over an upload copied to a staging file: ``(file, hex digests, size)``.

    The copy stops with 413 as soon as it passes the index's ``max_file_bytes``; the file is
    removed on exit whatever happens. Staging lives in the storage's private state directory
    (hidden, never served), or the system temp directory for stores without one.
    """

    def __init__(self, index: Index, content: IO[bytes], filename: str, algos: set[str]) -> None:
        self._index = index
        self._content = content
        self._filename = filename
        self._algos = algos
        self._file: BinaryIO | None = None

    def __enter__(self) -> tuple[BinaryIO, dict[str, str], int]:
        staging = self._index._staging
        if staging is not None:
            staging.mkdir(parents=True, exist_ok=True)
        f = tempfile.TemporaryFile(dir=staging, prefix=".upload-")
        self._file = f
        try:
            return self._copy(f)
        except BaseException:
            f.close()
            raise

    def _copy(self, out: BinaryIO) -> tuple[BinaryIO, dict[str, str], int]:
        hashers = {"sha256": hashlib.sha256()}
        if "md5" in self._algos:
            hashers["md5"] = hashlib.md5(usedforsecurity=False)
        if "blake2_256" in self._algos:
            hashers["blake2_256"] = hashlib.blake2b(digest_size=32)
        cap = self._index.max_file_bytes
        size = 0
        read = getattr(self._content, "read", None)
        if read is None:
            raise UploadRejectedError(f"{self._filename}: the content is not a readable file")
        while True:
            block = read(min(_CHUNK, cap + 1 - size))
            if not block:
                break
            if not isinstance(block, (bytes, bytearray, memoryview)):
                raise UploadRejectedError(f"{self._filename}: the content is not binary")
            size += len(block)
            if size > cap:
                raise UploadRejectedError(
                    f"{self._filename} is larger than the index's limit of {cap} bytes",
                    status=413,
                )
            for h in hashers.values():
                h.update(block)
            out.write(block)
        if size == 0:
            raise UploadRejectedError(f"{self._filename} is empty")
        out.flush()
        out.seek(0)
        return out, {k: h.hexdigest() for k, h in hashers.items()}, size

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def _hex_digest(algo: str, value: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(
        rf"[0-9a-fA-F]{{{_HEX[algo]}}}", value.strip()
    ):
        raise UploadRejectedError(f"the {algo} digest {value!r} is not {_HEX[algo]} hex digits")
    return value.strip().lower()


def _extension(filename: str) -> str:
    return ".tar.gz" if filename.endswith(".tar.gz") else os.path.splitext(filename)[1]


def _replace(record: FileRecord, **changes: object) -> FileRecord:
    import dataclasses

    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]
