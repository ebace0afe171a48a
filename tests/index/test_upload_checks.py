"""The upload-check seam of the index: findings audited, "warn" publishes, "refuse" stores
nothing; real checks (typosquat, content) from registry_core.ml on real archives."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from _dists import make_sdist, make_wheel
from registry_core.audit import MemorySink
from registry_core.errors import InvalidArgumentError, UploadRejectedError
from registry_core.index import Index
from registry_core.index._checks import Finding, UploadCandidate, UploadChecks
from registry_core.ml._content import ContentCheck
from registry_core.ml._typosquat import TyposquatCheck


class _Boom:
    name = "boom"

    def check(self, upload: UploadCandidate) -> Sequence[Finding]:
        raise RuntimeError("bug in the check")


class _Seen:
    """Records what the index handed over."""

    name = "seen"

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, int, bytes]] = []

    def check(self, upload: UploadCandidate) -> Sequence[Finding]:
        self.seen.append((upload.project, upload.new_project, upload.size, upload.file.read()))
        return []


def _index(tmp_path: Path, checks: UploadChecks) -> tuple[Index, MemorySink, str]:
    sink = MemorySink()
    ix = Index(tmp_path, audit=sink, checks=checks)
    token = ix.create_token(description="t")[0]
    return ix, sink, token


def _stored(root: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, fs in os.walk(root)
        for f in fs
        if not d.startswith(str(root / ".registry-core"))
    )


def _suspicious(sink: MemorySink) -> list[dict[str, str]]:
    return [
        dict(e.detail) | {"outcome": e.outcome}
        for e in sink.events
        if e.kind == "upload.suspicious"
    ]


def test_warn_audits_and_publishes(tmp_path: Path) -> None:
    checks = UploadChecks([TyposquatCheck(["requests", "numpy"])])
    ix, sink, token = _index(tmp_path, checks)
    try:
        data = make_wheel("reqeusts", "1.0")
        rec = ix.upload("reqeusts-1.0-py3-none-any.whl", io.BytesIO(data), token=token)
        assert rec.project == "reqeusts"
        found = _suspicious(sink)
        assert len(found) == 1
        assert found[0]["target"] == "requests"
        assert found[0]["transformation"] == "swapped-characters"
        assert found[0]["outcome"] == "ok"
        assert "upload" in sink.kinds()
        # a second file of the now existing project is its owner's: no finding
        data2 = make_wheel("reqeusts", "1.1")
        ix.upload("reqeusts-1.1-py3-none-any.whl", io.BytesIO(data2), token=token)
        assert len(_suspicious(sink)) == 1
    finally:
        ix.close()


def test_refuse_stores_nothing(tmp_path: Path) -> None:
    checks = UploadChecks([TyposquatCheck(["requests"]), ContentCheck()], action="refuse")
    ix, sink, token = _index(tmp_path, checks)
    try:
        before = _stored(tmp_path)
        with pytest.raises(UploadRejectedError, match="typosquat") as exc:
            ix.upload(
                "requestss-1.0-py3-none-any.whl",
                io.BytesIO(make_wheel("requestss", "1.0")),
                token=token,
            )
        assert exc.value.status == 400
        assert _stored(tmp_path) == before
        assert ix.db.file("requestss-1.0-py3-none-any.whl") is None
        assert [f["outcome"] for f in _suspicious(sink)] == ["denied"]
        assert "upload" not in sink.kinds()
        # a clean upload passes the same checks
        ix.upload("clean-1.0-py3-none-any.whl", io.BytesIO(make_wheel("clean", "1.0")), token=token)
        assert ix.db.file("clean-1.0-py3-none-any.whl") is not None
    finally:
        ix.close()


def test_refuse_only_at_severity(tmp_path: Path) -> None:
    blob = b"DATA = '" + b"QUFB" * 200 + b"'\n"  # low: an encoded blob, nothing executes it
    checks = UploadChecks([ContentCheck()], action="refuse", refuse_severity="high")
    ix, sink, token = _index(tmp_path, checks)
    try:
        data = make_wheel("blobby", "1.0", members={"blobby/data.py": blob})
        ix.upload("blobby-1.0-py3-none-any.whl", io.BytesIO(data), token=token)
        assert [f["rule"] for f in _suspicious(sink)] == ["encoded-blob"]
        evil = make_sdist(
            "evil-1.0",
            pkg_info=b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
            members={
                "evil-1.0/setup.py": b"import urllib.request\n"
                b"urllib.request.urlopen('http://example.invalid/x').read()\n"
            },
        )
        with pytest.raises(UploadRejectedError, match="setup.py opens network"):
            ix.upload("evil-1.0.tar.gz", io.BytesIO(evil), token=token)
        assert ix.db.file("evil-1.0.tar.gz") is None
    finally:
        ix.close()


def test_candidate_and_broken_check(tmp_path: Path) -> None:
    seen = _Seen()
    ix, sink, token = _index(tmp_path, UploadChecks([_Boom(), seen], action="refuse"))
    try:
        data = make_wheel("fine", "1.0")
        ix.upload("fine-1.0-py3-none-any.whl", io.BytesIO(data), token=token)
        assert seen.seen == [("fine", True, len(data), data)]  # staged bytes, from the start
        found = _suspicious(sink)
        assert [(f["check"], f["failed_check"], f["outcome"]) for f in found] == [
            ("check-error", "boom", "ok")
        ]
    finally:
        ix.close()


def test_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        UploadChecks([], action="block")
    with pytest.raises(InvalidArgumentError):
        UploadChecks([], refuse_severity="urgent")
    with pytest.raises(InvalidArgumentError):
        UploadChecks([object()])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        Finding("x", "critical", "m")
