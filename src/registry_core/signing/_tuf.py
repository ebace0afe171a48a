"""The TUF repository the index publishes (PEP 458 style), built with python-tuf's metadata API.

Layout of the roles::

    root ─┬─ targets ─┬─ patches      (no paths: its keys are the patch-envelope keys, signed here
          │           │                so a client finds them in TUF-verified metadata)
          │           └─ bins         (path_hash_prefixes 0-f: every path; terminating)
          │                └─ bin-0 .. bin-<n-1>   (TAP 15 succinct hash bins; the files)
          ├─ snapshot
          └─ timestamp

With ``bins=0`` the files are listed in ``targets.json`` itself. TUF allows a role either
ordinary or succinct delegations, not both; the intermediate ``bins`` role (PEP 458 has it
too) lets ``patches`` sit beside succinct bins. Every role is signed by one Ed25519 and one
ML-DSA key (ML-DSA-65 by default; securesystemslib's ``ml-dsa`` keytype and pre-hash rule, so
python-tuf and its ngclient verify it). The phase of a role sets its threshold: 1 (either
signature suffices: classical clients keep working) or 2 (both are required).

Metadata is written with consistent snapshots (``<version>.<role>.json``, ``timestamp.json``),
each file atomically, the new role files first, then the snapshot, ``timestamp.json`` last:
a client sees the old repository or the new one. Targets are *not* hash-prefixed: files are
served at their storage paths, so clients set ``UpdaterConfig(prefix_targets_with_hash=False)``.

Yanks do not change TUF metadata: a yanked file (PEP 592) is still served, and a pinned
install of it must still verify; yanking is advice carried by the Simple API. A file removed
from the index (``remove_targets``, ``sync`` after a rebuild) leaves the targets metadata.

One process writes a repository (the server, or the CLI while the server is stopped);
within it, every change holds a lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._util import atomic_write
from ..errors import InvalidArgumentError, SignatureError, SigningError, SigningKeyError

try:
    from securesystemslib.signer import Key, Signer
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import (
        DelegatedRole,
        Delegations,
        Metadata,
        MetaFile,
        Root,
        Snapshot,
        SuccinctRoles,
        TargetFile,
        Targets,
        Timestamp,
    )
    from tuf.api.serialization.json import JSONSerializer
except ImportError as exc:  # pragma: no cover - the optional extra is missing
    raise ImportError(
        "registry_core.signing needs the signing extra: pip install 'registry-core[signing]'"
        f" ({exc})"
    ) from exc

if TYPE_CHECKING:
    from ..index import Index
    from ..index._model import FileRecord

__all__ = ["ROLES", "KeyringLike", "TufRepository"]

log = logging.getLogger(__name__)

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
ROLES = (*TOP_LEVEL, "bins", "patches")
"""Roles that own keys (the ``bin-*`` roles are signed with the ``bins`` keys)."""
BIN_PREFIX = "bin"
DEFAULT_EXPIRY_DAYS: Mapping[str, float] = {
    "root": 365,
    "targets": 90,
    "bins": 90,
    "patches": 90,
    "snapshot": 7,
    "timestamp": 1,
}
_NAME = re.compile(r"^(?:[1-9][0-9]{0,9}\.)?[a-z][a-z0-9-]{0,63}\.json$")
_SERIALIZER = JSONSerializer(compact=True)
_HEX = "0123456789abcdef"


class KeyringLike(Protocol):
    """What the repository needs of a keyring (:class:`registry_core.signing.Keyring`)."""

    def keys(self, role: str | None = None, *, active_only: bool = True) -> list[Any]: ...

    def generate_hybrid(self, role: str, *, pq: str = ..., valid_days: int = ...) -> Any: ...

    def signer(self, key_id: str) -> Signer: ...

    def retire(self, key_id: str) -> Any: ...


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _role_kind(name: str) -> str:
    return "bins" if name.startswith(BIN_PREFIX + "-") else name


class TufRepository:
    """The TUF metadata of an index, in ``metadata_dir``, signed with ``keyring``'s keys.

    ``bins``: number of hash bins (0, or a power of two from 2 to 2**14; None: 16 for a new
    repository, what an existing one has); ``phases``: role -> 1 or 2 (threshold of its
    hybrid key pair; default 1) for a new repository -- an existing one keeps its published
    thresholds (change them with :meth:`set_phase`; giving other ones here is refused, so a
    reopened registry can never fall back to phase 1 by omission); ``expiry_days``: role -> validity
    of each new version (defaults: root 365, targets/bins/patches 90, snapshot 7, timestamp
    1); ``clock``: the current UTC time (tests make stale metadata with it); ``keep_versions``:
    and ``keep_seconds``: an old consistent-snapshot file is deleted once it is at least
    ``keep_versions`` versions behind *and* was superseded ``keep_seconds`` ago, so a client
    that read a timestamp just before a burst of uploads still finds the files it names (root
    files are never deleted: clients walk the chain); ``fsync``: flush every file before the
    next is written.

    :meth:`init` creates the repository (and missing keys) or loads an existing one.
    """

    def __init__(
        self,
        metadata_dir: str | os.PathLike[str],
        keyring: KeyringLike,
        *,
        bins: int | None = None,
        phases: Mapping[str, int] | None = None,
        expiry_days: Mapping[str, float] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        keep_versions: int = 8,
        keep_seconds: float = 300.0,
        fsync: bool = True,
        pq_algorithm: str = "ml-dsa-65",
    ) -> None:
        self._bins_given = bins is not None
        if bins is None:
            bins = 16
        if not isinstance(bins, int) or bins < 0 or (bins and (bins & (bins - 1) or bins < 2)):
            raise InvalidArgumentError(f"bins must be 0 or a power of two >= 2, not {bins!r}")
        if bins > 1 << 14:
            raise InvalidArgumentError(f"bins must be at most {1 << 14}, not {bins}")
        self.phases = {role: 1 for role in ROLES}
        for role, phase in (phases or {}).items():
            if role not in ROLES:
                raise InvalidArgumentError(f"unknown role {role!r} in phases; roles: {ROLES}")
            if phase not in (1, 2):
                raise InvalidArgumentError(f"phase of {role} must be 1 or 2, not {phase!r}")
            self.phases[role] = phase
        self._phases_given = dict(phases or {})
        self.expiry_days = dict(DEFAULT_EXPIRY_DAYS)
        for role, days in (expiry_days or {}).items():
            if role not in DEFAULT_EXPIRY_DAYS:
                raise InvalidArgumentError(f"unknown role {role!r} in expiry_days")
            if not days > 0:
                raise InvalidArgumentError(f"expiry of {role} must be positive, not {days!r}")
            self.expiry_days[role] = float(days)
        if keep_versions < 1:
            raise InvalidArgumentError("keep_versions must be >= 1")
        if not keep_seconds >= 0:
            raise InvalidArgumentError("keep_seconds must be >= 0")
        self.metadata_dir = Path(metadata_dir)
        self.keyring = keyring
        self.bins = bins
        self.clock = clock
        self.keep_versions = keep_versions
        self.keep_seconds = float(keep_seconds)
        # role -> (old version, monotonic time it was superseded), oldest first
        self._superseded: dict[str, deque[tuple[int, float]]] = {}
        self.fsync = fsync
        self.pq_algorithm = pq_algorithm
        self._lock = threading.RLock()
        self._md: dict[str, Metadata[Any]] = {}
        self._signers: dict[str, Signer] = {}

    def __repr__(self) -> str:
        return f"TufRepository({str(self.metadata_dir)!r}, bins={self.bins})"

    @classmethod
    def for_registry(
        cls,
        directory: str | os.PathLike[str],
        keyring: KeyringLike | None = None,
        **kwargs: Any,
    ) -> TufRepository:
        """The repository of the registry in ``directory``: metadata in
        ``DIR/.registry-core/tuf/`` (private state, served only through ``/tuf/``), keys from
        ``keyring`` or ``Keyring(DIR/.registry-core/keys/)`` (passphrase from the
        environment). Call :meth:`init` next."""
        from ..storage import STATE_DIR

        if keyring is None:
            from ._keys import Keyring, keyring_dir

            keyring = Keyring(keyring_dir(directory))
        return cls(Path(directory) / STATE_DIR / "tuf", keyring, **kwargs)

    # -- setup -------------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        """Whether the repository has metadata on disk."""
        return (self.metadata_dir / "timestamp.json").is_file()

    def init(self) -> None:
        """Create root v1, targets, bins, patches, snapshot and timestamp (keys generated
        when the keyring has none for a role), or load the existing repository."""
        with self._lock:
            if self.initialized:
                self._load()
                return
            self.metadata_dir.mkdir(parents=True, exist_ok=True)
            keys = {role: self._role_keys(role) for role in ROLES if self.bins or role != "bins"}
            root = Root(expires=self._expires("root"), consistent_snapshot=True)
            for role in TOP_LEVEL:
                for key in keys[role]:
                    root.add_key(key, role)
                root.roles[role].threshold = self.phases[role]
            md: dict[str, Metadata[Any]] = {"root": Metadata(root)}
            delegated = {
                "patches": DelegatedRole(
                    "patches",
                    [k.keyid for k in keys["patches"]],
                    self.phases["patches"],
                    False,
                    paths=[],
                )
            }
            if self.bins:
                delegated["bins"] = DelegatedRole(
                    "bins",
                    [k.keyid for k in keys["bins"]],
                    self.phases["bins"],
                    True,
                    path_hash_prefixes=list(_HEX),
                )
                succinct = SuccinctRoles(
                    [k.keyid for k in keys["bins"]],
                    self.phases["bins"],
                    self.bins.bit_length() - 1,
                    BIN_PREFIX,
                )
                md["bins"] = Metadata(
                    Targets(
                        expires=self._expires("bins"),
                        delegations=Delegations(
                            {k.keyid: k for k in keys["bins"]}, succinct_roles=succinct
                        ),
                    )
                )
                for name in succinct.get_roles():
                    md[name] = Metadata(Targets(expires=self._expires(name)))
            delegation_keys = {k.keyid: k for k in keys["patches"]}
            if self.bins:
                delegation_keys.update({k.keyid: k for k in keys["bins"]})
            md["targets"] = Metadata(
                Targets(
                    expires=self._expires("targets"),
                    delegations=Delegations(delegation_keys, roles=delegated),
                )
            )
            md["patches"] = Metadata(Targets(expires=self._expires("patches")))
            md["snapshot"] = Metadata(
                Snapshot(
                    expires=self._expires("snapshot"),
                    meta={
                        f"{name}.json": MetaFile(1)
                        for name in md
                        if name not in ("root", "snapshot")
                    },
                )
            )
            md["timestamp"] = Metadata(Timestamp(expires=self._expires("timestamp")))
            self._md = md
            self._sign("root", md["root"])
            self._write("root", md["root"])
            roles = {n: m for n, m in md.items() if n not in ("root", "snapshot", "timestamp")}
            for name, role_md in roles.items():
                self._sign(name, role_md)
            self._publish(roles, bump=False)

    def _role_keys(self, role: str) -> tuple[Key, Key]:
        """The newest active hybrid pair (Ed25519, ML-DSA) of ``role``, generated if missing."""
        pair = self._newest_pair(role)
        if pair is None:
            self.keyring.generate_hybrid(role, pq=self.pq_algorithm)
            pair = self._newest_pair(role)
            if pair is None:
                raise SigningKeyError(f"the keyring has no hybrid key pair for role {role!r}")
        return pair

    def _newest_pair(self, role: str) -> tuple[Key, Key] | None:
        infos = self.keyring.keys(role)  # oldest first
        pq = [k for k in infos if str(k.algorithm).startswith("ml-dsa")]
        ed = {k.key_id: k for k in infos if k.algorithm == "ed25519"}
        if not pq or not ed:
            return None
        newest = pq[-1]
        partner = ed.get(getattr(newest, "pair", None) or "") or list(ed.values())[-1]
        return partner.public, newest.public

    def _load(self) -> None:
        """Read the current metadata: the newest root, timestamp, its snapshot, its roles."""
        md: dict[str, Metadata[Any]] = {}
        version = 1
        while (self.metadata_dir / f"{version + 1}.root.json").is_file():
            version += 1
        md["root"] = self._read(f"{version}.root.json")
        md["timestamp"] = self._read("timestamp.json")
        snapshot_version = md["timestamp"].signed.snapshot_meta.version
        md["snapshot"] = self._read(f"{snapshot_version}.snapshot.json")
        for filename, meta in md["snapshot"].signed.meta.items():
            name = filename[: -len(".json")]
            md[name] = self._read(f"{meta.version}.{filename}")
        have = 0
        if "bins" in md:
            succinct = md["bins"].signed.delegations.succinct_roles
            have = succinct.number_of_bins if succinct is not None else 0
        if self._bins_given and have != self.bins:
            raise InvalidArgumentError(
                f"the repository in {self.metadata_dir} has {have} hash bins, not {self.bins}: "
                f"open it with bins={have} (or bins=None)"
            )
        self.bins = have
        published = {r: md["root"].signed.roles[r].threshold for r in TOP_LEVEL}
        delegations = md["targets"].signed.delegations
        for name, role in (delegations.roles or {}).items() if delegations else ():
            if name in ROLES:
                published[name] = role.threshold
        for role, phase in self._phases_given.items():
            if role in published and published[role] != phase:
                raise InvalidArgumentError(
                    f"the repository in {self.metadata_dir} publishes {role} at phase "
                    f"{published[role]}, not {phase}: change it with set_phase"
                )
        for role, threshold in published.items():
            self.phases[role] = min(max(threshold, 1), 2)
        self._md = md
        self._scan_old_versions()

    def _read(self, filename: str) -> Metadata[Any]:
        try:
            return Metadata.from_bytes((self.metadata_dir / filename).read_bytes())
        except OSError as exc:
            raise SigningError(f"TUF metadata {filename} is missing: {exc}") from exc
        except Exception as exc:
            raise SigningError(f"TUF metadata {filename} is unreadable: {exc}") from exc

    def _require(self) -> None:
        if not self._md:
            if not self.initialized:
                raise SigningError(f"no TUF repository in {self.metadata_dir}: call init() first")
            self._load()

    # -- reading -----------------------------------------------------------------------------

    def trusted_root(self) -> bytes:
        """The bytes of ``1.root.json``: the trust anchor to ship to clients (they follow
        later root versions themselves)."""
        with self._lock:
            self._require()
            return (self.metadata_dir / "1.root.json").read_bytes()

    def metadata(self, name: str) -> Metadata[Any]:
        """The current metadata of role ``name`` (a copy)."""
        with self._lock:
            self._require()
            if name not in self._md:
                raise InvalidArgumentError(f"no role {name!r} in the repository")
            return Metadata.from_bytes(self._md[name].to_bytes(_SERIALIZER))

    def role_names(self) -> list[str]:
        """Every role with metadata."""
        with self._lock:
            self._require()
            return list(self._md)

    def role_for(self, path: str) -> str:
        """The role whose metadata lists target ``path``."""
        if not self.bins:
            return "targets"
        with self._lock:
            self._require()
            succinct = self._md["bins"].signed.delegations.succinct_roles
            return str(succinct.get_role_for_target(path))

    def target(self, path: str) -> TargetFile | None:
        """The target entry of ``path``, or None."""
        with self._lock:
            self._require()
            return self._md[self.role_for(path)].signed.targets.get(path)

    def patch_keys(self) -> tuple[dict[str, Key], int]:
        """The patch-envelope keys (key id -> public key) and their threshold, as the current
        targets metadata delegates them to the role ``patches``."""
        with self._lock:
            self._require()
            targets = self._md["targets"].signed
            role = targets.delegations.roles["patches"]
            return {k: targets.delegations.keys[k] for k in role.keyids}, role.threshold

    def read_file(self, name: str) -> bytes | None:
        """The bytes of metadata file ``name`` (``timestamp.json``, ``3.bin-a.json``...), or
        None when there is no such file; names outside the grammar are never looked up."""
        if not _NAME.match(name):
            return None
        try:
            return (self.metadata_dir / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    # -- changes -----------------------------------------------------------------------------

    def add_targets(self, records: Iterable[FileRecord]) -> int:
        """List ``records`` (path, length, sha256) as targets; one new version of each changed
        role, then snapshot and timestamp. Returns how many entries changed."""
        with self._lock:
            self._require()
            changed: dict[str, Metadata[Any]] = {}
            count = 0
            try:
                for record in records:
                    path = _check_path(record.path)
                    entry = TargetFile(int(record.size), {"sha256": str(record.sha256)}, path)
                    name = self.role_for(path)
                    role_md = self._md[name]
                    old = role_md.signed.targets.get(path)
                    if (
                        old is not None
                        and old.length == entry.length
                        and old.hashes == entry.hashes
                    ):
                        continue
                    role_md.signed.targets[path] = entry
                    changed[name] = role_md
                    count += 1
                if changed:
                    self._commit(changed)
            except BaseException:
                self._load()  # memory back to what is on disk
                raise
            return count

    def remove_targets(self, paths: Iterable[str]) -> int:
        """Drop ``paths`` from the targets metadata (files gone from the index); returns how
        many were listed."""
        with self._lock:
            self._require()
            changed: dict[str, Metadata[Any]] = {}
            count = 0
            try:
                for path in paths:
                    name = self.role_for(path)
                    if self._md[name].signed.targets.pop(path, None) is not None:
                        changed[name] = self._md[name]
                        count += 1
                if changed:
                    self._commit(changed)
            except BaseException:
                self._load()
                raise
            return count

    def all_targets(self) -> dict[str, TargetFile]:
        """Every listed target, by path."""
        with self._lock:
            self._require()
            out: dict[str, TargetFile] = {}
            for name in self._target_roles():
                out.update(self._md[name].signed.targets)
            return out

    def sync(self, index: Index) -> tuple[int, int]:
        """Make the targets exactly the index's files (after a rebuild, at server start).
        Returns (added or changed, removed)."""
        records = [r for p in index.projects() for r in index.files(p.name)]
        with self._lock:
            self._require()
            wanted = {r.path for r in records}
            stale = [p for p in self.all_targets() if p not in wanted]
            changed: dict[str, Metadata[Any]] = {}
            added = removed = 0
            try:
                for path in stale:
                    name = self.role_for(path)
                    del self._md[name].signed.targets[path]
                    changed[name] = self._md[name]
                    removed += 1
                for record in records:
                    path = _check_path(record.path)
                    entry = TargetFile(int(record.size), {"sha256": str(record.sha256)}, path)
                    name = self.role_for(path)
                    old = self._md[name].signed.targets.get(path)
                    if old is None or old.length != entry.length or old.hashes != entry.hashes:
                        self._md[name].signed.targets[path] = entry
                        changed[name] = self._md[name]
                        added += 1
                if changed:
                    self._commit(changed)
            except BaseException:
                self._load()
                raise
            return added, removed

    def attach(self, index: Index) -> None:
        """Keep the metadata in step with ``index``: sync now, then list each new upload
        (chained after any ``on_upload`` callback already set, which keeps running)."""
        self.sync(index)
        previous = index.on_upload

        def on_upload(record: FileRecord) -> None:
            if previous is not None:
                try:
                    previous(record)
                except Exception:
                    log.exception("on_upload callback before the TUF one failed")
            self.add_targets([record])

        index.on_upload = on_upload

    def refresh(self) -> list[str]:
        """Re-sign every role with less than half of its validity left (timestamp and
        snapshot on the usual schedule; targets, bins and root long before they expire).
        Returns the re-signed role names. Call it every few minutes (the TUF routes do, on
        a ``timestamp.json`` request)."""
        with self._lock:
            self._require()
            now = self.clock()
            due = [
                name
                for name, md in self._md.items()
                if md.signed.expires - now < timedelta(days=self.expiry_days[_role_kind(name)]) / 2
            ]
            if not due:
                return []
            try:
                if "root" in due:
                    self._new_root(self._md["root"])
                roles = {n: self._md[n] for n in due if n not in ("root", "snapshot", "timestamp")}
                if roles or "snapshot" in due:
                    self._commit(roles)
                else:
                    self._commit_timestamp()
            except BaseException:
                self._load()
                raise
            return due

    def refresh_timestamp(self) -> None:
        """A new timestamp version now, whatever its expiry."""
        with self._lock:
            self._require()
            try:
                self._commit_timestamp()
            except BaseException:
                self._load()
                raise

    def rotate_root(self) -> None:
        """A new root version with a new hybrid root key pair, signed by the old root keys
        (meeting the old threshold) and the new ones (meeting the new): clients that trust
        the old root accept it. The old root keys are retired in the keyring."""
        self.rotate_keys("root")

    def rotate_keys(self, role: str) -> None:
        """Replace the hybrid key pair of ``role`` with a new one. Top-level roles: a new root
        version names the new keys (root's is signed by old and new root keys); ``bins`` and
        ``patches``: a new targets version. The role's metadata is re-signed with the new
        keys, snapshot and timestamp follow."""
        if role not in ROLES or (role == "bins" and not self.bins):
            raise InvalidArgumentError(f"no role {role!r} to rotate; roles: {ROLES}")
        with self._lock:
            self._require()
            old_ids = self._current_keyids(role)
            self.keyring.generate_hybrid(role, pq=self.pq_algorithm)
            new_keys = self._role_keys(role)
            if {k.keyid for k in new_keys} & set(old_ids):
                raise SigningKeyError(f"the keyring gave no new key pair for role {role!r}")
            try:
                if role in TOP_LEVEL:
                    root = Metadata.from_bytes(self._md["root"].to_bytes(_SERIALIZER))
                    for keyid in old_ids:
                        root.signed.revoke_key(keyid, role)
                    for key in new_keys:
                        root.signed.add_key(key, role)
                    root.signed.roles[role].threshold = self.phases[role]
                    self._new_root(root)
                    if role != "root":
                        self._commit(
                            {} if role in ("snapshot", "timestamp") else {role: self._md[role]}
                        )
                else:
                    targets = self._md["targets"]
                    for keyid in old_ids:
                        targets.signed.revoke_key(keyid, role)
                    for key in new_keys:
                        targets.signed.add_key(key, role)
                    changed = {"targets": targets}
                    if role == "bins":
                        bins_md = self._md["bins"]
                        for keyid in old_ids:
                            bins_md.signed.revoke_key(keyid)
                        for key in new_keys:
                            bins_md.signed.add_key(key)
                        changed["bins"] = bins_md
                        changed.update({n: self._md[n] for n in self._bin_names()})
                    else:
                        changed[role] = self._md[role]
                    self._commit(changed)
            except BaseException:
                self._load()
                raise
            retire = getattr(self.keyring, "retire", None)
            if retire is not None:
                for keyid in old_ids:
                    try:
                        retire(keyid)
                        self._signers.pop(keyid, None)
                    except Exception:
                        log.warning("could not retire key %s of role %s", keyid, role)

    def set_phase(self, role: str, phase: int) -> None:
        """Change the threshold of ``role``'s key pair (1: either key, 2: both); published
        as a new root (top-level roles) or targets (bins, patches) version."""
        if role not in ROLES or phase not in (1, 2) or (role == "bins" and not self.bins):
            raise InvalidArgumentError(f"set_phase needs a role of {ROLES} and 1 or 2")
        with self._lock:
            self._require()
            self.phases[role] = phase
            try:
                if role in TOP_LEVEL:
                    root = Metadata.from_bytes(self._md["root"].to_bytes(_SERIALIZER))
                    root.signed.roles[role].threshold = phase
                    self._new_root(root)
                    self._commit({})
                else:
                    targets = self._md["targets"]
                    targets.signed.delegations.roles[role].threshold = phase
                    changed = {"targets": targets}
                    if role == "bins":
                        self._md["bins"].signed.delegations.succinct_roles.threshold = phase
                        changed["bins"] = self._md["bins"]
                    self._commit(changed)
            except BaseException:
                self._load()
                raise

    # -- internals ---------------------------------------------------------------------------

    def _bin_names(self) -> list[str]:
        return [n for n in self._md if n.startswith(BIN_PREFIX + "-")]

    def _target_roles(self) -> list[str]:
        return self._bin_names() if self.bins else ["targets"]

    def _current_keyids(self, role: str) -> list[str]:
        if role in TOP_LEVEL:
            return list(self._md["root"].signed.roles[role].keyids)
        return list(self._md["targets"].signed.delegations.roles[role].keyids)

    def _expires(self, name: str) -> datetime:
        days = self.expiry_days[_role_kind(name)]
        return (self.clock() + timedelta(days=days)).replace(microsecond=0)

    def _delegator(self, name: str) -> Metadata[Any]:
        if name in TOP_LEVEL:
            return self._md["root"]
        if name in ("bins", "patches"):
            return self._md["targets"]
        return self._md["bins"]

    def _signer(self, keyid: str, *, allow_inactive: bool = False) -> Signer:
        signer = self._signers.get(keyid)
        if signer is None:
            if allow_inactive:  # an expired root key still signs the rotation away from it
                signer = self.keyring.signer(keyid, allow_inactive=True)  # type: ignore[call-arg]
            else:
                signer = self.keyring.signer(keyid)
            self._signers[keyid] = signer
        return signer

    def _sign(self, name: str, md: Metadata[Any], extra_keyids: Iterable[str] = ()) -> None:
        """Sign with every key the delegator names for ``name`` (and ``extra_keyids``), then
        check the delegator accepts it: a keyring that cannot sign fails here, not at a
        client."""
        delegator = md if name == "root" else self._delegator(name)
        role = delegator.signed.get_delegated_role(name)
        md.signatures.clear()
        for keyid in role.keyids:
            md.sign(self._signer(keyid), append=True)
        for keyid in extra_keyids:
            if keyid not in role.keyids:
                md.sign(self._signer(keyid, allow_inactive=True), append=True)
        try:
            delegator.signed.verify_delegate(name, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise SignatureError(
                f"role {name}: the keyring's signatures do not verify: {exc}"
            ) from exc

    def _bump(self, name: str, md: Metadata[Any]) -> None:
        md.signed.version += 1
        md.signed.expires = self._expires(name)

    def _new_root(self, root: Metadata[Any]) -> None:
        """Publish ``root`` as the next root version, signed by the current root's keys (so
        clients trusting it accept the new one) and by its own."""
        current = self._md["root"]
        self._bump("root", root)
        self._sign("root", root, extra_keyids=current.signed.roles["root"].keyids)
        try:
            current.verify_delegate("root", root)
        except UnsignedMetadataError as exc:
            raise SignatureError(f"new root not signed by the old root keys: {exc}") from exc
        self._write("root", root)
        self._md["root"] = root

    def _commit(self, changed: dict[str, Metadata[Any]]) -> None:
        for name, md in changed.items():
            self._bump(name, md)
            self._sign(name, md)
        self._publish(changed, bump=True)

    def _publish(self, changed: dict[str, Metadata[Any]], *, bump: bool) -> None:
        """Write the changed roles, a snapshot naming their versions, and the timestamp."""
        snapshot = self._md["snapshot"]
        for name, md in changed.items():
            snapshot.signed.meta[f"{name}.json"] = MetaFile(md.signed.version)
        if bump:
            self._bump("snapshot", snapshot)
        self._sign("snapshot", snapshot)
        for name, md in changed.items():
            self._write(name, md)
        self._write("snapshot", snapshot)
        self._commit_timestamp(bump=bump)

    def _commit_timestamp(self, *, bump: bool = True) -> None:
        snapshot = self._md["snapshot"]
        data = snapshot.to_bytes(_SERIALIZER)
        timestamp = self._md["timestamp"]
        timestamp.signed.snapshot_meta = MetaFile(
            snapshot.signed.version, len(data), {"sha256": hashlib.sha256(data).hexdigest()}
        )
        if bump:
            self._bump("timestamp", timestamp)
        self._sign("timestamp", timestamp)
        self._write("timestamp", timestamp)

    def _write(self, name: str, md: Metadata[Any]) -> None:
        data = md.to_bytes(_SERIALIZER)
        version = md.signed.version
        if name == "timestamp":
            atomic_write(self.metadata_dir / "timestamp.json", data, fsync=self.fsync)
            return
        atomic_write(self.metadata_dir / f"{version}.{name}.json", data, fsync=self.fsync)
        if name == "root":
            atomic_write(self.metadata_dir / "root.json", data, fsync=self.fsync)
            return
        now = time.monotonic()
        queue = self._superseded.setdefault(name, deque())
        if version > 1:
            queue.append((version - 1, now))
        self._prune(name, version, now)

    def _prune(self, name: str, version: int, now: float) -> None:
        queue = self._superseded.get(name)
        while (
            queue
            and queue[0][0] <= version - self.keep_versions
            and now - queue[0][1] >= self.keep_seconds
        ):
            old, _ = queue.popleft()
            with contextlib.suppress(FileNotFoundError):
                (self.metadata_dir / f"{old}.{name}.json").unlink()

    def _scan_old_versions(self) -> None:
        """Register the old versions found on disk (after a restart) for pruning."""
        now = time.monotonic()
        found: dict[str, list[int]] = {}
        for path in self.metadata_dir.iterdir():
            head, _, rest = path.name.partition(".")
            name = rest[: -len(".json")] if rest.endswith(".json") else ""
            if (
                head.isdigit()
                and name in self._md
                and name not in ("root", "timestamp")
                and int(head) < self._md[name].signed.version
            ):
                found.setdefault(name, []).append(int(head))
        self._superseded = {n: deque((v, now) for v in sorted(vs)) for n, vs in found.items()}


def _check_path(path: str) -> str:
    parts = str(path).split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise InvalidArgumentError(f"target path {path!r} is not a clean relative path")
    return str(path)
