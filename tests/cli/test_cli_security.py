"""``registry-core security report`` over a registry signed by our TufRepository: what it prints,
its JSON, how the figures move when the phases change, and its one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("tuf.api.metadata")

from registry_core.cli import main  # noqa: E402
from registry_core.index._model import FileRecord  # noqa: E402
from registry_core.signing import Keyring  # noqa: E402
from registry_core.signing._tuf import ROLES, TufRepository  # noqa: E402


def _registry(root: Path, *, bins: int = 4) -> TufRepository:
    keyring = Keyring(root / ".registry-core" / "keys", passphrase="test passphrase")
    repo = TufRepository(root / ".registry-core" / "tuf", keyring, bins=bins, fsync=False)
    repo.init()
    records = []
    for i in range(5):
        data = bytes([i]) * (200 + i)
        path = f"demo/demo-{i}.0-py3-none-any.whl"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        records.append(
            FileRecord(
                project="demo",
                filename=path.split("/")[1],
                version=f"{i}.0",
                kind="wheel",
                path=path,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                upload_time_ns=0,
            )
        )
    repo.add_targets(records)
    return repo


def _report(capsys: pytest.CaptureFixture[str], directory: Path) -> dict:  # type: ignore[type-arg]
    assert main(["security", "report", str(directory), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_report_moves_from_phase_1_to_phase_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    repo = _registry(tmp_path)
    assert main(["security", "report", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "PQC key coverage: 50.0%" in text and "Quantum threat score: 1.000" in text
    assert "checklist rc-pqc-checklist/1" in text and "[FAIL] C10" in text
    # root, timestamp, snapshot, targets, patches, bins and the succinct bin-* roles: a hybrid
    # pair each, threshold 1 -> only the ML-DSA half counts.
    d = _report(capsys, tmp_path)
    assert d["keys_total"] == 14 and d["keys_covered"] == 7
    assert d["files_total"] == 5 and d["files_exposed"] == 5
    # Phase 2 for the top-level roles only: files still behind phase-1 bins.
    for role in ("root", "targets", "snapshot", "timestamp"):
        repo.set_phase(role, 2)
    d = _report(capsys, tmp_path)
    assert d["keys_covered"] == 11  # 4 roles x 2 + patches, bins, bin: 1 each
    assert d["coverage_by_role"]["root"] == 1.0 and d["coverage_by_role"]["bin"] == 0.5
    assert d["quantum_threat_score"] == 1.0
    assert set(d["exposed_roles"]) == {"bins", "bin"}
    for role in ROLES:
        repo.set_phase(role, 2)
    d = _report(capsys, tmp_path)
    assert d["pqc_coverage"] == 1.0 and d["quantum_threat_score"] == 0.0
    by_id = {c["id"]: c for c in d["controls"]}
    for cid in ("C01", "C02", "C03", "C04", "C05", "C07", "C08", "C09", "C10", "C12", "C13"):
        assert by_id[cid]["status"] == "pass", (cid, by_id[cid]["detail"])
    # an unsigned file dropped into the storage is seen at once
    (tmp_path / "demo" / "demo-9.0-py3-none-any.whl").write_bytes(b"not signed")
    d = _report(capsys, tmp_path)
    assert d["quantum_threat_score"] == pytest.approx(1 / 6)
    assert {c["id"]: c for c in d["controls"]}["C05"]["status"] == "fail"


def test_fail_under_and_metadata_dir_argument(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _registry(tmp_path, bins=0)
    md = tmp_path / ".registry-core" / "tuf"
    assert main(["security", "report", str(md), "--fail-under", "100"]) == 1
    assert "Compliance score" in capsys.readouterr().out
    assert main(["security", "report", str(md), "--fail-under", "0"]) == 0


def test_no_metadata_is_one_line_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["security", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("registry-core security report: error: ")
    assert "no TUF metadata" in err[0]


def test_patch_envelopes_in_the_store_are_verified(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """C06 over a real PatchStore: a patch between two signed files with an envelope signed by
    the TUF-delegated patches keys passes; one signed by a foreign key, or joining a file the
    metadata does not list, fails."""
    from securesystemslib.signer import CryptoSigner

    from registry_core.server import PatchStore
    from registry_core.signing import patch_statement, sign_envelope

    repo = _registry(tmp_path)
    store = PatchStore(tmp_path / ".registry-core" / "patches")
    files = sorted((tmp_path / "demo").iterdir())
    base, target = (hashlib.sha256(p.read_bytes()).digest() for p in files[:2])
    patch = b"a patch, as far as the store knows"
    psha = hashlib.sha256(patch).digest()
    store.put(base, target, "archive", patch)
    statement = patch_statement(f"demo/{files[1].name}", target.hex(), base.hex(), psha.hex())
    store.put(psha, target, "dsse", sign_envelope(statement, repo.keyring.signers("patches")))

    def c06() -> dict:  # type: ignore[type-arg]
        return {c["id"]: c for c in _report(capsys, tmp_path)["controls"]}["C06"]

    assert c06()["status"] == "pass" and "1 envelopes verified" in c06()["detail"]
    foreign = [CryptoSigner.generate_ed25519(), CryptoSigner.generate_mldsa()]
    store.put(psha, target, "dsse", sign_envelope(statement, foreign))
    got = c06()
    assert got["status"] == "fail" and "envelope of patch" in got["detail"]
    store.put(psha, target, "dsse", sign_envelope(statement, repo.keyring.signers("patches")))
    store.put(b"\x01" * 32, target, "archive", patch)
    got = c06()
    assert got["status"] == "fail" and "joins a file not in targets metadata" in got["detail"]
