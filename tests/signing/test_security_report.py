"""The security report over real TUF metadata built here with python-tuf (not with our writer):
registries in phase 1, phase 2 and mixed, with and without hash bins, files served and not
listed, expired roles, weak parameter sets -- the figures must move exactly as defined."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

tuf_md = pytest.importorskip("tuf.api.metadata")
from securesystemslib.signer import CryptoSigner  # noqa: E402

from registry_core.errors import SignatureError  # noqa: E402
from registry_core.signing._report import CHECKLIST_VERSION, security_report  # noqa: E402

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
WINDOW = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1, "bins": 90, "patches": 90}
_SIGNERS: dict[tuple[str, str], CryptoSigner] = {}


def _signer(role: str, scheme: str) -> CryptoSigner:
    """One key per (role, algorithm), made once per test session (ML-DSA keygen is cheap, but
    the tests build many registries)."""
    if (role, scheme) not in _SIGNERS:
        _SIGNERS[(role, scheme)] = (
            CryptoSigner.generate_ed25519()
            if scheme == "ed25519"
            else CryptoSigner.generate_mldsa(scheme=scheme)
        )
    return _SIGNERS[(role, scheme)]


@dataclass
class Spec:
    phases: dict[str, int] = field(default_factory=dict)  # role -> threshold (1 or 2)
    pq: dict[str, str | None] = field(default_factory=dict)  # role -> ML-DSA scheme or None
    bins: int = 4  # 0: files in targets itself, plus a "patches" role
    files: dict[str, bytes] = field(default_factory=dict)
    expires: dict[str, timedelta] = field(default_factory=dict)
    consistent: bool = True
    shared_online_root: bool = False


def _keys(role: str, spec: Spec) -> list[CryptoSigner]:
    scheme = spec.pq.get(role, "ml-dsa-65/1")
    base = "root" if spec.shared_online_root and role in ("timestamp", "snapshot") else role
    out = [_signer(base, "ed25519")]
    if scheme is not None:
        out.append(_signer(base, scheme))
    return out


def build(directory: Path, spec: Spec) -> Path:
    """A TUF repository on disk as ngclient reads it: N.root.json, N.targets.json, N.<bin>.json,
    N.snapshot.json, timestamp.json (consistent snapshots)."""
    md = tuf_md
    directory.mkdir(parents=True, exist_ok=True)

    def exp(role: str) -> datetime:
        return NOW + spec.expires.get(role, timedelta(days=WINDOW[role]))

    def thr(role: str) -> int:
        return spec.phases.get(role, 1)

    root = md.Root(expires=exp("root"), consistent_snapshot=spec.consistent)
    for role in ("root", "timestamp", "snapshot", "targets"):
        for s in _keys(role, spec):
            root.add_key(s.public_key, role)
        root.roles[role].threshold = thr(role)
    targets = md.Targets(expires=exp("targets"))
    delegated: dict[str, md.Targets] = {}
    infos = {
        path: md.TargetFile.from_data(path, data, ["sha256"]) for path, data in spec.files.items()
    }
    if spec.bins:
        bits = spec.bins.bit_length() - 1
        keys = _keys("bins", spec)
        sr = md.SuccinctRoles(
            keyids=[s.public_key.keyid for s in keys],
            threshold=thr("bins"),
            bit_length=bits,
            name_prefix="bins",
        )
        targets.delegations = md.Delegations(
            keys={s.public_key.keyid: s.public_key for s in keys}, succinct_roles=sr
        )
        for name in sr.get_roles():
            delegated[name] = md.Targets(expires=exp("bins"))
        for path, tf in infos.items():
            delegated[sr.get_role_for_target(path)].targets[path] = tf
    else:
        keys = _keys("patches", spec)
        role = md.DelegatedRole(
            name="patches",
            keyids=[s.public_key.keyid for s in keys],
            threshold=thr("patches"),
            terminating=True,
            paths=[],
        )
        targets.delegations = md.Delegations(
            keys={s.public_key.keyid: s.public_key for s in keys}, roles={"patches": role}
        )
        delegated["patches"] = md.Targets(expires=exp("patches"))
        targets.targets.update(infos)
    snapshot = md.Snapshot(expires=exp("snapshot"))
    snapshot.meta["targets.json"] = md.MetaFile(version=1)
    for name in delegated:
        snapshot.meta[f"{name}.json"] = md.MetaFile(version=1)
    timestamp = md.Timestamp(expires=exp("timestamp"))

    def write(signed: md.Signed, role: str, keys_of: str, name: str) -> None:
        m = md.Metadata(signed)
        for s in _keys(keys_of, spec):
            m.sign(s, append=True)
        m.to_file(str(directory / name))

    v = "1." if spec.consistent else ""
    write(root, "root", "root", "1.root.json")
    write(targets, "targets", "targets", f"{v}targets.json")
    for name, t in delegated.items():
        write(t, name, "bins" if spec.bins else "patches", f"{v}{name}.json")
    write(snapshot, "snapshot", "snapshot", f"{v}snapshot.json")
    write(timestamp, "timestamp", "timestamp", "timestamp.json")
    return directory


def report(tmp_path: Path, spec: Spec, **config: object):  # type: ignore[no-untyped-def]
    return security_report(build(tmp_path / "tuf", spec), config=config, now=NOW)


FILES = {f"demo/demo-{i}.0-py3-none-any.whl": bytes([i]) * (100 + i) for i in range(6)}


def test_phase_1_counts_only_the_pq_keys(tmp_path: Path) -> None:
    r = report(tmp_path, Spec(files=FILES))
    # 5 roles (root, timestamp, snapshot, targets, bins) x (ed25519 + ML-DSA-65), threshold 1:
    # the PQ signature is never required, so only the 5 ML-DSA keys count.
    assert (r.keys_total, r.keys_covered) == (10, 5)
    assert r.pqc_coverage == 0.5
    assert r.coverage_by_role == dict.fromkeys(
        ["root", "timestamp", "snapshot", "targets", "bins"], 0.5
    )
    assert r.quantum_threat_score == 1.0  # every hop accepts Ed25519 alone
    assert r.files_total == 6 and r.weighting == "count"
    controls = {c.id: c for c in r.controls}
    assert controls["C10"].status == "fail"
    assert "role root phase 1" in controls["C10"].detail
    assert controls["C07"].status == "pass", controls["C07"].detail


def test_phase_2_everywhere_covers_every_key_and_no_file(tmp_path: Path) -> None:
    phases = dict.fromkeys(["root", "timestamp", "snapshot", "targets", "bins"], 2)
    r = report(tmp_path, Spec(files=FILES, phases=phases))
    assert (r.keys_total, r.keys_covered, r.pqc_coverage) == (10, 10, 1.0)
    assert r.quantum_threat_score == 0.0 and r.exposed_roles == ()
    controls = {c.id: c for c in r.controls}
    for cid in ("C01", "C03", "C04", "C07", "C09", "C10", "C11", "C12"):
        assert controls[cid].status == "pass", (cid, controls[cid].detail)


def test_mixed_phases_move_coverage_per_role_and_threat_per_hop(tmp_path: Path) -> None:
    # Everything phase 2 but timestamp: every file's chain has a classical-only hop.
    phases = dict.fromkeys(["root", "snapshot", "targets", "bins"], 2)
    r = report(tmp_path, Spec(files=FILES, phases=phases))
    assert (r.keys_total, r.keys_covered) == (10, 9)
    assert r.coverage_by_role["timestamp"] == 0.5 and r.coverage_by_role["root"] == 1.0
    assert r.quantum_threat_score == 1.0 and r.exposed_roles == ("timestamp",)


def test_threat_score_counts_only_files_behind_a_weak_bin(tmp_path: Path) -> None:
    # Top-level roles in phase 2, the bins in phase 1: all files are behind bins -> exposed.
    top = dict.fromkeys(["root", "timestamp", "snapshot", "targets"], 2)
    r = report(tmp_path, Spec(files=FILES, phases=top))
    assert r.quantum_threat_score == 1.0 and r.exposed_roles == ("bins",)
    # Without bins, the files sit in targets (phase 2): none exposed; the patches role in
    # phase 1 lists no files, so it lowers coverage but not the threat score.
    r = report(tmp_path / "flat", Spec(files=FILES, phases=top, bins=0))
    assert r.quantum_threat_score == 0.0
    assert r.coverage_by_role["patches"] == 0.5 and r.keys_covered == 9


def test_threat_score_weighted_by_downloads(tmp_path: Path) -> None:
    top = dict.fromkeys(["root", "timestamp", "snapshot", "targets", "bins"], 2)
    spec = Spec(files=FILES, phases=top)
    served = tmp_path / "reg"
    for path, data in FILES.items():
        (served / path).parent.mkdir(parents=True, exist_ok=True)
        (served / path).write_bytes(data)
    extra = "demo/demo-9.0-py3-none-any.whl"  # served, in no targets metadata
    (served / extra).write_bytes(b"unsigned")
    md_dir = build(served / ".registry-core" / "tuf", spec)
    downloads = {path: 1 for path in FILES} | {extra: 94}
    r = security_report(served, config={"downloads": downloads}, now=NOW)
    assert r.metadata_dir == str(md_dir)
    assert r.weighting == "downloads" and r.files_total == 100
    assert r.quantum_threat_score == pytest.approx(0.94)
    assert r.exposed_roles == ("(unsigned)",)
    c05 = next(c for c in r.controls if c.id == "C05")
    assert c05.status == "fail" and "demo-9.0" in c05.detail
    r = security_report(served, now=NOW)  # by count: 1 of 7
    assert r.quantum_threat_score == pytest.approx(1 / 7)
    (served / extra).unlink()
    r = security_report(served, now=NOW)
    assert r.quantum_threat_score == 0.0
    assert next(c for c in r.controls if c.id == "C05").status == "pass"
    # bytes changed under the metadata: the file is no longer covered
    first = next(iter(FILES))
    (served / first).write_bytes(b"x" * len(FILES[first]))
    c05 = next(c for c in security_report(served, now=NOW).controls if c.id == "C05")
    assert c05.status == "fail" and "differs from its targets entry" in c05.detail


def test_controls_fail_as_defined(tmp_path: Path) -> None:
    spec = Spec(
        files=FILES,
        pq={"root": "ml-dsa-44/1", "bins": None},
        expires={"timestamp": timedelta(days=30), "snapshot": -timedelta(hours=1)},
        consistent=False,
        shared_online_root=True,
    )
    r = report(tmp_path, spec)
    c = {x.id: x for x in r.controls}
    assert c["C01"].status == "fail" and "role bins has no ML-DSA key" in c["C01"].detail
    assert c["C03"].status == "pass"  # ML-DSA-44 is a FIPS 204 parameter set...
    assert c["C04"].status == "fail" and "ml-dsa-44" in c["C04"].detail  # ...but too weak
    assert c["C09"].status == "fail"
    assert "role snapshot expired" in c["C09"].detail and "timestamp expires in 30 d" in (
        c["C09"].detail
    )
    assert c["C11"].status == "fail" and c["C12"].status == "fail"
    assert r.coverage_by_role["bins"] == 0.0
    # the score is passed / applicable, printed with the checklist version
    assert r.compliance_score == r.passed / r.applicable < 1
    text = r.render()
    assert CHECKLIST_VERSION in text and f"{r.passed}/{r.applicable}" in text


def test_tampered_metadata_fails_signature_control(tmp_path: Path) -> None:
    d = build(tmp_path / "tuf", Spec(files=FILES))
    target = d / "1.targets.json"
    doc = json.loads(target.read_bytes())
    doc["signed"]["version"] = 7  # signatures no longer match the signed part
    target.write_text(json.dumps(doc))
    c07 = next(c for c in security_report(d, now=NOW).controls if c.id == "C07")
    assert c07.status == "fail" and "role targets" in c07.detail


def test_json_round_trip_and_missing_metadata(tmp_path: Path) -> None:
    r = report(tmp_path, Spec(files=FILES))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["pqc_coverage"] == 0.5 and d["checklist_version"] == CHECKLIST_VERSION
    assert d["controls_passed"] == r.passed and len(d["controls"]) == len(r.controls)
    assert {x["role"] for x in d["roles"]} == set(r.coverage_by_role)
    (tmp_path / "tuf" / "1.snapshot.json").unlink()
    with pytest.raises(SignatureError, match="snapshot"):
        security_report(tmp_path / "tuf", now=NOW)


def test_tls_facts_are_measured_not_assumed(tmp_path: Path) -> None:
    r = report(tmp_path, Spec(files=FILES))
    c = {x.id: x for x in r.controls}
    assert c["C14"].status == "pass"  # Transport and ProxyApp verify by default
    import ssl

    from registry_core.transport._client import _shared_context

    client_floor = _shared_context(True).minimum_version
    assert (c["C15"].status == "pass") == (client_floor == ssl.TLSVersion.TLSv1_3) or (
        "server accepts" in c["C15"].detail
    )
    r2 = report(
        tmp_path / "b",
        Spec(files=FILES),
        tls={"server_min_tls": "TLSv1_3", "client_min_tls": "TLSv1_3", "h3_pq_kex": True},
    )
    c2 = {x.id: x for x in r2.controls}
    assert c2["C15"].status == "pass" and c2["C16"].status == "pass"


def test_digest_of_served_file_is_checked_by_content(tmp_path: Path) -> None:
    # the sha256 in our metadata is the file's: what C05 compares against
    data = FILES[next(iter(FILES))]
    tf = tuf_md.TargetFile.from_data("x", data, ["sha256"])
    assert tf.hashes["sha256"] == hashlib.sha256(data).hexdigest()


def test_demo_signed_update_verifies_and_reports_the_goals(capsys) -> None:  # type: ignore[no-untyped-def]
    """The demo's signed path end to end: release 1 in full and release 2 as a signed patch,
    both verified through ngclient; a tampered file refused; the report on that registry."""
    pytest.importorskip("setuptools")
    from registry_core.server._demo import run_signed_update_demo

    result = run_signed_update_demo(source_kb=64, data_kb=64)
    first, update = result["steps"]
    assert not first["delta"] and update["delta"] and update["wire"] < update["bytes"] // 2
    assert result["tamper_refused"] is True
    report = result["report"]
    assert report["pqc_coverage"] == 1.0 and report["quantum_threat_score"] == 0.0
    by_id = {c["id"]: c for c in report["controls"]}
    assert by_id["C06"]["status"] == "pass" and "1 envelopes verified" in by_id["C06"]["detail"]
    failing = {c["id"] for c in report["controls"] if c["status"] == "fail"}
    assert failing <= {"C15", "C16"}, failing  # the TLS facts of this code (see docs)
    assert "PQC key coverage: 100.0%" in capsys.readouterr().out


def test_pq_key_exchange_control_follows_the_flag(tmp_path: Path) -> None:
    """C16 passes when the deployment's flags turn PQ_KEY_EXCHANGE on (and the stack can do
    it), and says what is missing otherwise."""
    from registry_core.flags import FeatureFlags
    from registry_core.transport import _pqkex

    off = {x.id: x for x in report(tmp_path, Spec(files=FILES)).controls}
    assert off["C16"].status == "fail" and "PQ_KEY_EXCHANGE" in off["C16"].detail
    flags = FeatureFlags(overrides={"PQ_KEY_EXCHANGE": True})
    on = report(tmp_path / "on", Spec(files=FILES), flags=flags)
    c16 = {x.id: x for x in on.controls}["C16"]
    assert c16.status == ("pass" if _pqkex.supported() else "fail")
