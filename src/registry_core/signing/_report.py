"""The security report: PQC key coverage, quantum threat score and a versioned compliance score.

Every figure is computed from what a client would see -- the TUF metadata files on disk, read
with python-tuf's ``Metadata.from_file`` and walked as ``ngclient`` walks them (root, timestamp,
snapshot, targets, delegations) -- plus the keyring (key ages, encryption at rest), the storage
(files served), the patch store and the TLS defaults of this code. Nothing is hard-coded: change
a threshold, a key or a file and the figures move. Definitions: docs/security.md, "Signed
registry (issue 12)".
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidArgumentError, SignatureError

__all__ = [
    "CHECKLIST_VERSION",
    "Control",
    "Report",
    "RoleKeys",
    "security_report",
]

#: The checklist's version: printed with every compliance score (a score is only comparable
#: with scores of the same checklist version).
CHECKLIST_VERSION = "rc-pqc-checklist/1 (2026-12)"

#: FIPS 204 parameter sets: securesystemslib scheme -> (name, public key bytes, NIST category).
FIPS_204 = {
    "ml-dsa-44/1": ("ML-DSA-44", 1312, 2),
    "ml-dsa-65/1": ("ML-DSA-65", 1952, 3),
    "ml-dsa-87/1": ("ML-DSA-87", 2592, 5),
}
#: NIST IR 8547 (Nov 2024 draft, Table 2/4): EdDSA, ECDSA and RSA are disallowed after 2035.
IR8547_CLASSICAL_DISALLOWED = datetime(2036, 1, 1, tzinfo=timezone.utc)
#: Longest allowed expiry window per role (the design's defaults; config "expiry_days").
EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1, "delegated": 90}
#: Rotation period per role (config "rotation_days"): a key older than this is overdue.
ROTATION_DAYS = {"root": 730, "targets": 365, "snapshot": 365, "timestamp": 365, "delegated": 365}
#: Roles whose metadata is long-lived: they must use NIST category 3+ (ML-DSA-65 or -87).
LONG_LIVED = ("root", "targets")
_TOP = ("root", "timestamp", "snapshot", "targets")
_DIST = re.compile(r".+\.(whl|tar\.gz|zip)\Z")

Status = Literal["pass", "fail", "n/a"]


@dataclass(frozen=True)
class RoleKeys:
    """One role's trusted keys as the metadata states them.

    ``pq_required``: every set of ``threshold`` distinct keys of the role holds an ML-DSA key,
    i.e. fewer classical keys than the threshold (then classical signatures alone never
    suffice). ``covered``: keys counted as PQC-covered: every ML-DSA key, and the classical
    keys too when ``pq_required``.
    """

    role: str
    threshold: int
    keys: tuple[tuple[str, str], ...]  # (key id, algorithm)
    delegated_by: str | None = None  # None for top-level roles
    bins: int = 0  # a succinct hash-bin role: how many bins share these keys

    @property
    def pq_keys(self) -> int:
        return sum(1 for _, alg in self.keys if alg.startswith("ml-dsa"))

    @property
    def classical_keys(self) -> int:
        return len(self.keys) - self.pq_keys

    @property
    def pq_required(self) -> bool:
        return self.classical_keys < self.threshold

    @property
    def covered(self) -> int:
        return len(self.keys) if self.pq_required else self.pq_keys

    @property
    def coverage(self) -> float:
        return self.covered / len(self.keys) if self.keys else 0.0


@dataclass(frozen=True)
class Control:
    """One checklist control: ``status`` "pass", "fail" or "n/a" (not applicable here)."""

    id: str
    title: str
    status: Status
    detail: str = ""


@dataclass(frozen=True)
class Report:
    """The figures and how they were reached (``to_dict()`` for JSON, ``render()`` for text)."""

    metadata_dir: str
    generated: str
    checklist_version: str
    pqc_coverage: float
    keys_total: int
    keys_covered: int
    coverage_by_role: dict[str, float]
    quantum_threat_score: float
    files_total: float
    files_exposed: float
    weighting: str  # "downloads" or "count"
    compliance_score: float
    controls: tuple[Control, ...]
    roles: tuple[RoleKeys, ...]
    exposed_roles: tuple[str, ...] = ()  # roles classical signatures alone satisfy
    notes: tuple[str, ...] = field(default=())

    @property
    def applicable(self) -> int:
        return sum(1 for c in self.controls if c.status != "n/a")

    @property
    def passed(self) -> int:
        return sum(1 for c in self.controls if c.status == "pass")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["roles"] = [
            {
                "role": r.role,
                "threshold": r.threshold,
                "keys": [{"key_id": k, "algorithm": a} for k, a in r.keys],
                "delegated_by": r.delegated_by,
                "bins": r.bins,
                "pq_required": r.pq_required,
                "covered": r.covered,
            }
            for r in self.roles
        ]
        d["controls_passed"], d["controls_applicable"] = self.passed, self.applicable
        return d

    def render(self) -> str:
        lines = [
            f"Security report for {self.metadata_dir} ({self.generated})",
            f"PQC key coverage: {100 * self.pqc_coverage:.1f}% "
            f"({self.keys_covered}/{self.keys_total} active trusted signing keys)",
        ]
        for r in self.roles:
            algs = ", ".join(a for _, a in r.keys)
            extra = f", {r.bins} bins" if r.bins else ""
            lines.append(
                f"  {r.role:<12} {100 * r.coverage:5.1f}%  threshold {r.threshold} of "
                f"{len(r.keys)} ({algs}){extra}; PQ signature "
                f"{'required' if r.pq_required else 'optional'}"
            )
        lines.append(
            f"Quantum threat score: {self.quantum_threat_score:.3f} "
            f"({self.files_exposed:g} of {self.files_total:g} served files by {self.weighting} "
            "acceptable on classical signatures alone"
            + (f"; via {', '.join(self.exposed_roles)}" if self.exposed_roles else "")
            + ")"
        )
        lines.append(
            f"Compliance score: {100 * self.compliance_score:.1f}% ({self.passed}/"
            f"{self.applicable} applicable controls, checklist {self.checklist_version})"
        )
        for c in self.controls:
            mark = {"pass": "PASS", "fail": "FAIL", "n/a": "n/a "}[c.status]
            lines.append(f"  [{mark}] {c.id} {c.title}" + (f": {c.detail}" if c.detail else ""))
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- reading the metadata as a client does ------------------------------------------------------


def _tuf() -> Any:
    try:
        from tuf.api import metadata
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise InvalidArgumentError(
            f"the security report needs the signing extra: pip install 'registry-core[signing]' "
            f"({exc})"
        ) from None
    return metadata


def algorithm(key: Any) -> str:
    """The algorithm of a securesystemslib key: "ed25519", "ml-dsa-65", "ecdsa-...", ..."""
    if key.keytype == "ml-dsa":
        return FIPS_204.get(key.scheme, (key.scheme,))[0].lower()
    if key.keytype == "ed25519":
        return "ed25519"
    return f"{key.keytype}-{key.scheme}"


class _Tree:
    """The metadata a client trusts now, loaded from a metadata directory."""

    def __init__(self, directory: Path) -> None:
        md = _tuf()
        self.dir = directory
        self.roots = sorted(
            (int(p.name.split(".", 1)[0]), p)
            for p in directory.glob("*.root.json")
            if p.name.split(".", 1)[0].isdigit()
        )
        root_path = self.roots[-1][1] if self.roots else directory / "root.json"
        self.root = self._load(root_path, "root")
        self.consistent = bool(self.root.signed.consistent_snapshot)
        self.timestamp = self._load(directory / "timestamp.json", "timestamp")
        self.snapshot = self._load(
            self._versioned("snapshot", self.timestamp.signed.snapshot_meta.version), "snapshot"
        )
        self.targets = self._role("targets")
        self.delegated: dict[str, Any] = {}  # role name -> Metadata
        self.delegator: dict[str, str] = {}  # role name -> delegating role
        self._md = md
        self._walk("targets", self.targets)

    def _versioned(self, role: str, version: int) -> Path:
        return self.dir / (f"{version}.{role}.json" if self.consistent else f"{role}.json")

    def _load(self, path: Path, role: str) -> Any:
        md = _tuf()
        if not path.is_file():
            raise SignatureError(f"no {role} metadata in {self.dir} (looked for {path.name})")
        try:
            return md.Metadata.from_file(str(path))
        except Exception as exc:
            raise SignatureError(f"{role} metadata {path} cannot be read: {exc}") from None

    def _role(self, role: str) -> Any:
        meta = self.snapshot.signed.meta.get(f"{role}.json")
        if meta is None:
            raise SignatureError(f"snapshot lists no {role} metadata (role {role!r})")
        return self._load(self._versioned(role, meta.version), role)

    def _walk(self, name: str, md: Any) -> None:
        delegations = md.signed.delegations
        if delegations is None:
            return
        for child in self.children(md):
            if child in self.delegated or f"{child}.json" not in self.snapshot.signed.meta:
                continue
            self.delegator[child] = name
            self.delegated[child] = self._role(child)
            self._walk(child, self.delegated[child])

    @staticmethod
    def children(md: Any) -> list[str]:
        d = md.signed.delegations
        if d is None:
            return []
        if d.succinct_roles is not None:
            return list(d.succinct_roles.get_roles())
        return list((d.roles or {}).keys())

    def all_metadata(self) -> Iterator[tuple[str, Any, Any]]:
        """(role name, metadata, the metadata that delegates it) for every trusted role."""
        yield "root", self.root, self.root
        yield "timestamp", self.timestamp, self.root
        yield "snapshot", self.snapshot, self.root
        yield "targets", self.targets, self.root
        for name, md in self.delegated.items():
            parent = self.delegator[name]
            yield name, md, self.targets if parent == "targets" else self.delegated[parent]

    def role_keys(self) -> list[RoleKeys]:
        """Top-level roles, then delegated roles (hash bins as one entry: their keys are shared)."""
        out = []
        root = self.root.signed
        for role in _TOP:
            r = root.roles[role]
            out.append(RoleKeys(role, r.threshold, self._keys(root.keys, r.keyids)))
        seen_succinct: set[str] = set()
        for parent_name, parent in [("targets", self.targets), *self.delegated.items()]:
            d = parent.signed.delegations
            if d is None:
                continue
            if d.succinct_roles is not None:
                sr = d.succinct_roles
                if sr.name_prefix in seen_succinct:
                    continue
                seen_succinct.add(sr.name_prefix)
                out.append(
                    RoleKeys(
                        sr.name_prefix,
                        sr.threshold,
                        self._keys(d.keys, sr.keyids),
                        parent_name,
                        bins=2**sr.bit_length,
                    )
                )
            for name, r in (d.roles or {}).items():
                out.append(RoleKeys(name, r.threshold, self._keys(d.keys, r.keyids), parent_name))
        return out

    @staticmethod
    def _keys(keys: Mapping[str, Any], keyids: Iterable[str]) -> tuple[tuple[str, str], ...]:
        return tuple((k, algorithm(keys[k]) if k in keys else "unknown") for k in keyids)

    def role_of_delegated(self, name: str) -> str:
        """The RoleKeys name of a delegated role (a bin's succinct prefix, else its name)."""
        parent = self.targets if self.delegator[name] == "targets" else None
        if parent is None:
            parent = self.delegated[self.delegator[name]]
        sr = parent.signed.delegations.succinct_roles
        return sr.name_prefix if sr is not None and sr.is_delegated_role(name) else name

    def targets_by_role(self) -> Iterator[tuple[str, str, Any]]:
        """(path, the role listing it, TargetFile) for every target, top-level first."""
        for path, tf in self.targets.signed.targets.items():
            yield path, "targets", tf
        for name, md in self.delegated.items():
            for path, tf in md.signed.targets.items():
                yield path, name, tf

    def chain(self, role: str) -> list[str]:
        """Role names a client verifies from root to a target listed by ``role``."""
        hops = []
        while role != "targets":
            hops.append(self.role_of_delegated(role))
            role = self.delegator[role]
        return ["root", "timestamp", "snapshot", "targets", *reversed(hops)]


# -- locating the registry's parts ---------------------------------------------------------------


def _metadata_dir(registry: Path) -> Path:
    for candidate in (
        registry,
        registry / ".registry-core" / "tuf",
        registry / ".registry-core" / "metadata",
        registry / "tuf",
    ):
        if (candidate / "timestamp.json").is_file():
            return candidate
    raise InvalidArgumentError(
        f"no TUF metadata under {registry} (looked for timestamp.json in it, "
        ".registry-core/tuf/ and .registry-core/metadata/)"
    )


def _registry_root(metadata_dir: Path) -> Path | None:
    """The registry directory holding this metadata (its storage), when there is one."""
    for p in (metadata_dir, *metadata_dir.parents):
        if p.name == ".registry-core":
            return p.parent
    return None


def _served_files(registry: Path | None) -> dict[str, tuple[int, Path]] | None:
    """Distribution files the server would serve (path -> size, file), or None if unknown."""
    if registry is None or not registry.is_dir():
        return None
    out: dict[str, tuple[int, Path]] = {}
    for dirpath, dirnames, filenames in os.walk(registry):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if f.startswith(".") or not _DIST.match(f):
                continue
            p = Path(dirpath, f)
            out[p.relative_to(registry).as_posix()] = (p.stat().st_size, p)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_PATCH_MAGIC = b"RCPATCH1\n"  # server/_patch_store.py: magic line, sha256 of the payload
_ENTRY = re.compile(r"([0-9a-f]{64})-([0-9a-f]{64})\.([a-z][a-z0-9]{0,15})\Z")


def _patches(
    registry: Path | None,
) -> tuple[list[tuple[str, str, str]], dict[tuple[str, str], Path]]:
    """The registry's patch store: (base, target, patch sha256) of every stored patch, and the
    stored envelopes by (patch sha256, target sha256) (``<patch>-<target>.dsse`` entries)."""
    patches: list[tuple[str, str, str]] = []
    envelopes: dict[tuple[str, str], Path] = {}
    root = registry / ".registry-core" / "patches" if registry is not None else None
    if root is None or not root.is_dir():
        return patches, envelopes
    for p in root.rglob("*"):
        m = _ENTRY.match(p.name)
        if not m or not p.is_file():
            continue
        if m.group(3) == "dsse":
            envelopes[(m.group(1), m.group(2))] = p
            continue
        with p.open("rb") as f:
            head = f.read(len(_PATCH_MAGIC) + 32)
        if head.startswith(_PATCH_MAGIC) and len(head) == len(_PATCH_MAGIC) + 32:
            patches.append((m.group(1), m.group(2), head[len(_PATCH_MAGIC) :].hex()))
    return patches, envelopes


# -- the report ----------------------------------------------------------------------------------


def _mldsa_public_size(public: str) -> int:
    """Raw size of an ML-DSA public key (PEM SubjectPublicKeyInfo, as securesystemslib stores
    it; hex also accepted), -1 when it is not an ML-DSA key at all."""
    from cryptography.hazmat.primitives.asymmetric import mldsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        if public.startswith("-----BEGIN"):
            key = load_pem_public_key(public.encode())
            if not isinstance(
                key, (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)
            ):
                return -1
            return len(key.public_bytes_raw())
        return len(bytes.fromhex(public))
    except (ValueError, TypeError):
        return -1


def _days(d: timedelta) -> float:
    return d.total_seconds() / 86400


def _role_class(name: str) -> str:
    return name if name in _TOP else "delegated"


def _keyring_infos(keyring: Any) -> list[Any] | None:
    if keyring is None:
        return None
    try:
        return list(keyring.keys(active_only=False))
    except TypeError:
        return list(keyring.keys())


def _default_keyring(registry: Path | None, metadata_dir: Path) -> Any:
    for d in (
        (registry / ".registry-core" / "keys") if registry else None,
        metadata_dir.parent / "keys",
    ):
        if d is not None and d.is_dir():
            try:
                from ._keys import Keyring  # type: ignore[attr-defined,unused-ignore]
            except ImportError:  # pragma: no cover - K's module not there
                return None
            return Keyring(d)
    return None


def _tls_facts(flags: Any = None) -> dict[str, Any]:
    """What this code's TLS does by default: client verification and minimum versions."""

    facts: dict[str, Any] = {}
    from ..transport import Transport

    facts["client_verify_default"] = inspect.signature(Transport).parameters["verify"].default
    try:
        from ..proxy import ProxyApp

        facts["proxy_verify_default"] = inspect.signature(ProxyApp).parameters["verify"].default
    except (ImportError, KeyError):  # pragma: no cover
        facts["proxy_verify_default"] = None
    # The floors this code applies by default: what Transport() and start_server() build
    # (the contexts are made from these defaults; tests pin the two against each other).
    from ..wire._tls import tls_version

    facts["client_min_tls"] = tls_version(
        inspect.signature(Transport).parameters["tls_minimum"].default
    ).name
    try:
        from ..server._serve import start_server

        facts["server_min_tls"] = tls_version(
            inspect.signature(start_server).parameters["tls_minimum"].default
        ).name
    except Exception as exc:  # pragma: no cover - server stack not importable
        facts["server_min_tls"] = f"unknown ({exc})"
    pq = _h3_pq_kex(flags)
    facts["h3_pq_kex"] = pq["supported"] and (pq["enabled"] or pq["active_in_process"])
    facts["h3_pq_kex_detail"] = pq
    return facts


def _h3_pq_kex(flags: Any) -> dict[str, Any]:
    """Whether this deployment's HTTP/3 handshakes offer X25519MLKEM768 (group 0x11EC): the
    stack supports it (aioquic's TLS over cryptography's ML-KEM-768, `transport/_pqkex.py`)
    and the PQ_KEY_EXCHANGE flag the server and client are started with is on."""
    from ..flags import resolve_flags
    from ..transport import _pqkex

    try:
        supported, why = _pqkex.supported(), ""
    except Exception as exc:  # PQKeyExchangeUnsupportedError names the missing piece
        supported, why = False, str(exc)
    return {
        "supported": bool(supported),
        "why": why,
        "enabled": resolve_flags(flags).is_enabled("PQ_KEY_EXCHANGE"),
        "active_in_process": _pqkex.installed(),
    }


def security_report(
    registry: Any, *, config: Mapping[str, Any] | None = None, now: datetime | None = None
) -> Report:
    """The report over a registry directory, a TUF metadata directory or a TufRepository.

    ``config`` (all optional): ``keyring`` (a Keyring: key ages, encryption at rest; default:
    the registry's ``.registry-core/keys/`` when present), ``downloads`` (path -> count: weights
    the threat score; there is no access log yet, so files count 1 each without it),
    ``expiry_days`` / ``rotation_days`` (role class -> days, over the defaults), ``tls``
    (overrides of the measured TLS facts, for what-if runs), ``audit_keys`` (RoleKeys of an
    audit log's checkpoint keys, when one exists), ``flags`` (the FeatureFlags the registry's
    server and clients run with: PQ_KEY_EXCHANGE decides C16; default: the catalogue's).
    """
    cfg = dict(config or {})
    now = now or datetime.now(timezone.utc)
    keyring = cfg.get("keyring")
    if hasattr(registry, "metadata_dir"):
        metadata_dir = Path(registry.metadata_dir)
        keyring = keyring if keyring is not None else getattr(registry, "keyring", None)
    else:
        metadata_dir = _metadata_dir(Path(registry))
    registry_root = _registry_root(metadata_dir)
    if keyring is None:
        keyring = _default_keyring(registry_root, metadata_dir)
    tree = _Tree(metadata_dir)
    roles = tree.role_keys() + list(cfg.get("audit_keys", ()))
    by_name = {r.role: r for r in roles}
    notes: list[str] = []

    # PQC key coverage: per (role, key) assignment, since each is a separate trust decision.
    keys_total = sum(len(r.keys) for r in roles)
    keys_covered = sum(r.covered for r in roles)
    coverage = keys_covered / keys_total if keys_total else 0.0
    if "audit_keys" not in cfg:
        notes.append("no audit log: no audit checkpoint keys counted")

    # Quantum threat score: a file is exposed when any hop from root to it is satisfied by
    # classical signatures alone (threshold <= classical keys); files served but not in the
    # targets metadata are exposed too (nothing signed covers them).
    downloads: Mapping[str, float] | None = cfg.get("downloads")
    weighting = "downloads" if downloads is not None else "count"
    served = _served_files(registry_root)
    listed: dict[str, tuple[str, Any]] = {}
    for path, role, tf in tree.targets_by_role():
        listed.setdefault(path, (role, tf))
    universe = set(listed) | set(served or ())
    total = exposed = 0.0
    exposed_roles: set[str] = set()
    for path in sorted(universe):
        w = float(downloads.get(path, 0)) if downloads is not None else 1.0
        total += w
        if path not in listed:
            exposed += w
            exposed_roles.add("(unsigned)")
            continue
        weak = [h for h in tree.chain(listed[path][0]) if not by_name[h].pq_required]
        if weak:
            exposed += w
            exposed_roles.update(weak)
    threat = exposed / total if total else 0.0

    controls = _controls(
        tree,
        roles,
        now,
        cfg,
        keyring,
        listed,
        served,
        registry_root,
        notes,
        _tls_facts(cfg.get("flags")),
    )
    applicable = [c for c in controls if c.status != "n/a"]
    compliance = (
        sum(1 for c in applicable if c.status == "pass") / len(applicable) if applicable else 0.0
    )
    return Report(
        metadata_dir=str(metadata_dir),
        generated=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        checklist_version=CHECKLIST_VERSION,
        pqc_coverage=coverage,
        keys_total=keys_total,
        keys_covered=keys_covered,
        coverage_by_role={r.role: r.coverage for r in roles},
        quantum_threat_score=threat,
        files_total=total,
        files_exposed=exposed,
        weighting=weighting,
        compliance_score=compliance,
        controls=tuple(controls),
        roles=tuple(roles),
        exposed_roles=tuple(sorted(exposed_roles)),
        notes=tuple(notes),
    )


def _controls(
    tree: _Tree,
    roles: list[RoleKeys],
    now: datetime,
    cfg: Mapping[str, Any],
    keyring: Any,
    listed: Mapping[str, tuple[str, Any]],
    served: Mapping[str, tuple[int, Path]] | None,
    registry_root: Path | None,
    notes: list[str],
    tls: dict[str, Any],
) -> list[Control]:
    tls = {**tls, **cfg.get("tls", {})}
    out: list[Control] = []

    def add(
        cid: str, title: str, failures: list[str] | None, why_na: str = "", passed: str = ""
    ) -> None:
        if failures is None:
            out.append(Control(cid, title, "n/a", why_na))
        else:
            detail = "; ".join(failures) if failures else passed
            out.append(Control(cid, title, "fail" if failures else "pass", detail))

    all_keys: dict[str, Any] = dict(tree.root.signed.keys)
    for _, md, _ in tree.all_metadata():
        d = getattr(md.signed, "delegations", None)
        if d is not None:
            all_keys.update(d.keys)

    # C01 NIST IR 8547 / new keys: every role trusts an approved PQ algorithm (ML-DSA).
    add(
        "C01",
        "NIST IR 8547: every role has an ML-DSA (FIPS 204) key",
        [f"role {r.role} has no ML-DSA key" for r in roles if r.pq_keys == 0],
    )
    # C02 NIST IR 8547: classical keys not valid past the 2035 disallowance.
    infos = _keyring_infos(keyring)
    if infos is None:
        add("C02", "NIST IR 8547: no classical key valid after 2035", None, "no keyring")
    else:
        bad = [
            f"key {i.key_id[:12]} ({i.algorithm}, {i.role}) valid until "
            f"{'forever' if i.not_after is None else i.not_after.date()}"
            for i in infos
            if i.key_id in all_keys
            and not str(i.algorithm).startswith("ml-dsa")
            and (i.not_after is None or i.not_after >= IR8547_CLASSICAL_DISALLOWED)
        ]
        add("C02", "NIST IR 8547: no classical key valid after 2035", bad)
    # C03 FIPS 204 parameter sets: scheme known and public key of that set's size.
    bad = []
    n_pq = 0
    for kid, key in all_keys.items():
        if key.keytype != "ml-dsa":
            continue
        n_pq += 1
        spec = FIPS_204.get(key.scheme)
        if spec is None:
            bad.append(f"key {kid[:12]}: scheme {key.scheme!r} is no FIPS 204 parameter set")
            continue
        size = _mldsa_public_size(key.keyval.get("public", ""))
        if size != spec[1]:
            bad.append(f"key {kid[:12]}: {size} B public key, {spec[0]} has {spec[1]}")
    add("C03", "FIPS 204 parameter sets for ML-DSA keys", bad if n_pq else None, "no ML-DSA key")
    # C04 long-lived roles at NIST category 3+.
    add(
        "C04",
        "root and targets ML-DSA keys at NIST category 3+ (ML-DSA-65/87)",
        [
            f"role {r.role}: {alg}"
            for r in roles
            if r.role in LONG_LIVED
            for kid, alg in r.keys
            if alg == "ml-dsa-44"
        ],
    )
    # C05 every served file covered by targets metadata (length and sha256 match).
    if served is None:
        add("C05", "every served file covered by targets metadata", None, "no storage found")
    else:
        bad = []
        for path, (size, p) in sorted(served.items()):
            entry = listed.get(path)
            if entry is None:
                bad.append(f"{path} not in targets metadata")
            elif entry[1].length != size or entry[1].hashes.get("sha256") != _sha256(p):
                bad.append(f"{path} differs from its targets entry (role {entry[0]})")
        bad += [f"{p} listed but not served" for p in sorted(set(listed) - set(served))]
        add(
            "C05",
            "every served file covered by targets metadata",
            bad[:5] + ([f"... {len(bad) - 5} more"] if len(bad) > 5 else []),
        )
    # C06 every stored patch joins two files of the targets metadata, and every stored
    # patch envelope verifies against the keys and threshold the signed targets metadata
    # delegates to the role "patches", binding that base, target and patch. (A patch is
    # signed when first served, so a precomputed patch may have no envelope yet.)
    patches, envelopes = _patches(registry_root)
    if not patches and not envelopes:
        add("C06", "every patch covered by targets metadata and its envelope", None, "no patches")
    else:
        shas = {tf.hashes.get("sha256") for _, tf in listed.values()}
        bad = [
            f"patch {b[:12]}->{t[:12]} joins a file not in targets metadata"
            for b, t, _ in patches
            if b not in shas or t not in shas
        ]
        patch_role = None
        for _, md, _ in tree.all_metadata():
            d = getattr(md.signed, "delegations", None)
            if d is not None and d.roles and "patches" in d.roles:
                patch_role = (d.roles["patches"], d.keys)
        by_key = {(p, t): b for b, t, p in patches}
        verified = 0
        if patch_role is None:
            bad.append("no delegated role 'patches' signs the patch-envelope keys")
        else:
            from ._dsse import verify_patch_envelope

            role, keys = patch_role
            trusted = {k: keys[k] for k in role.keyids if k in keys}
            for (psha, tsha), env_file in sorted(envelopes.items()):
                base = by_key.get((psha, tsha))
                if base is None:
                    continue  # its patch was evicted; the envelope is not served alone
                raw = env_file.read_bytes()  # a store entry: magic, sha256, then the envelope
                env = raw[len(_PATCH_MAGIC) + 32 :] if raw.startswith(_PATCH_MAGIC) else raw
                verified += 1
                try:
                    verify_patch_envelope(
                        env,
                        trusted,
                        role.threshold,
                        base_sha256=base,
                        target_sha256=tsha,
                        patch_sha256=psha,
                    )
                except SignatureError as exc:
                    bad.append(f"envelope of patch {psha[:12]}: {exc}")
        add(
            "C06",
            "every patch covered by targets metadata and its envelope",
            bad[:5],
            passed=f"{len(patches)} patches, {verified} envelopes verified (role patches, "
            f"threshold {patch_role[0].threshold if patch_role else '-'})",
        )
    # C07 every role's metadata verifies at its threshold (as a client checks it).
    bad = []
    for name, md, parent in tree.all_metadata():
        try:
            parent.signed.verify_delegate(name, md.signed_bytes, md.signatures)
        except Exception as exc:
            bad.append(f"role {name}: {exc}")
    add("C07", "every role's metadata signed at its threshold", bad[:5])
    # C08 key ages within rotation periods; none retired or expired while still trusted.
    if infos is None:
        add("C08", "key ages within rotation periods", None, "no keyring")
    else:
        periods = {**ROTATION_DAYS, **cfg.get("rotation_days", {})}
        bad = []
        for i in infos:
            if i.key_id not in all_keys:
                continue
            limit = periods.get(_role_class(i.role), periods["delegated"])
            age = _days(now - i.created)
            if age > limit:
                bad.append(f"key {i.key_id[:12]} ({i.role}) {age:.0f} d old > {limit} d")
            if i.retired is not None:
                bad.append(f"key {i.key_id[:12]} ({i.role}) retired but still trusted")
            if i.not_after is not None and i.not_after < now:
                bad.append(f"key {i.key_id[:12]} ({i.role}) past its validity end")
        add("C08", "key ages within rotation periods", bad)
    # C09 metadata expiry windows: not expired, and not further out than the role's window.
    windows = {**EXPIRY_DAYS, **cfg.get("expiry_days", {})}
    bad = []
    for name, md, _ in tree.all_metadata():
        left = _days(md.signed.expires - now)
        limit = windows.get(_role_class(name), windows["delegated"])
        if left <= 0:
            bad.append(f"role {name} expired {-left:.1f} d ago")
        elif left > limit + 1 / 24:
            bad.append(f"role {name} expires in {left:.0f} d > {limit} d")
    add("C09", "metadata expiry windows", bad[:5])
    # C10 hybrid threshold phase 2: every role requires its PQ signature.
    add(
        "C10",
        "hybrid threshold phase 2 (PQ signature required) for every role",
        [f"role {r.role} phase 1 (threshold {r.threshold})" for r in roles if not r.pq_required],
    )
    # C11 online keys (snapshot, timestamp) separate from root keys.
    root_ids = set(tree.root.signed.roles["root"].keyids)
    add(
        "C11",
        "online keys (timestamp, snapshot) separate from root keys",
        [
            f"role {role} shares a root key"
            for role in ("timestamp", "snapshot")
            if root_ids & set(tree.root.signed.roles[role].keyids)
        ],
    )
    # C12 consistent snapshots (no mix-and-match of metadata versions while it changes).
    add(
        "C12",
        "consistent snapshots",
        [] if tree.consistent else ["root.consistent_snapshot is false"],
    )
    # C13 private keys encrypted at rest.
    key_dir = getattr(keyring, "directory", None) if keyring is not None else None
    if key_dir is None or not Path(key_dir).is_dir():
        add("C13", "private signing keys encrypted at rest", None, "no keyring directory")
    else:
        bad = []
        for p in Path(key_dir).rglob("*"):
            head = p.read_bytes()[:200] if p.is_file() else b""
            if b"PRIVATE KEY-----" in head and b"ENCRYPTED PRIVATE KEY" not in head:
                bad.append(f"{p.name} is not encrypted")
        add("C13", "private signing keys encrypted at rest", bad)
    # C14 TLS verification on by default (client and proxy).
    add(
        "C14",
        "TLS certificate verification on by default (Transport, ProxyApp)",
        [
            f"{what} default verify={tls[k]!r}"
            for what, k in (
                ("Transport", "client_verify_default"),
                ("ProxyApp", "proxy_verify_default"),
            )
            if tls.get(k) is not True
        ],
    )
    # C15 TLS 1.3 only (server over TCP, client); QUIC is TLS 1.3 by construction.
    add(
        "C15",
        "TLS 1.3 only (server on TCP, client)",
        [
            f"{what} accepts {tls[k]}"
            for what, k in (("server", "server_min_tls"), ("client", "client_min_tls"))
            if tls.get(k) not in ("TLSv1_3", "MAXIMUM_SUPPORTED")
        ],
    )
    # C16 PQ (hybrid) key exchange available on HTTP/3.
    add(
        "C16",
        "PQ key exchange (X25519MLKEM768) available on HTTP/3",
        [] if tls.get("h3_pq_kex") else [_pq_kex_gap(tls.get("h3_pq_kex_detail") or {})],
    )
    return out


def _pq_kex_gap(detail: Mapping[str, Any]) -> str:
    if detail.get("supported") is False:
        return f"the HTTP/3 stack cannot offer X25519MLKEM768: {detail.get('why') or 'unsupported'}"
    return (
        "HTTP/3 key exchange is classical ECDHE only: hybrid X25519MLKEM768 is available but off "
        "(experimental flag PQ_KEY_EXCHANGE; tested only between registry-core peers)"
    )


def report_json(report: Report) -> str:
    """The report as indented JSON (what ``registry-core security report --json`` prints)."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)
