"""Index.rebuild: a directory of files (placed by hand, or changed behind the index's back)
brought into the database."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from _dists import core_metadata, make_sdist, make_wheel
from registry_core.index import FileRecord, Index, RebuildReport, SQLiteIndexDB
from registry_core.storage import DirectoryStorage


def _populate(root: Path) -> None:
    (root / "alpha").mkdir()
    (root / "alpha" / "alpha-1.0-py3-none-any.whl").write_bytes(
        make_wheel("alpha", "1.0", metadata=core_metadata("alpha", "1.0", requires_python=">=3"))
    )
    (root / "alpha" / "alpha-1.0.tar.gz").write_bytes(
        make_sdist("alpha-1.0", pkg_info=core_metadata("alpha", "1.0"))
    )
    # a flat layout file (pypiserver style), a non-distribution and a broken one
    (root / "beta-2.0-py3-none-any.whl").write_bytes(make_wheel("beta", "2.0"))
    (root / "README.txt").write_text("not a package")
    (root / "broken-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 truncated")
    # hidden files are never indexed
    (root / ".cache").mkdir()
    (root / ".cache" / "gamma-1.0-py3-none-any.whl").write_bytes(make_wheel("gamma", "1.0"))


def test_rebuild_indexes_a_directory(tmp_path: Path) -> None:
    _populate(tmp_path)
    with Index(tmp_path) as index:
        report = index.rebuild()
        assert (report.added, report.updated, report.removed, report.unchanged) == (3, 0, 0, 0)
        assert report.skipped == 1
        assert [p for p, _ in report.rejected] == ["broken-1.0-py3-none-any.whl"]
        assert "not a readable wheel" in report.rejected[0][1]
        assert [p.name for p in index.projects()] == ["alpha", "beta"]
        wheel = index.file("alpha-1.0-py3-none-any.whl")
        assert wheel is not None
        assert wheel.path == "alpha/alpha-1.0-py3-none-any.whl"
        assert wheel.requires_python == ">=3" and wheel.uploader is None
        assert index.metadata(wheel.filename) == core_metadata(
            "alpha", "1.0", requires_python=">=3"
        )
        beta = index.file("beta-2.0-py3-none-any.whl")
        assert beta is not None and beta.path == "beta-2.0-py3-none-any.whl"
        serial = index.serial
        again = index.rebuild()
        assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 3)
        assert index.serial == serial  # nothing changed, nothing bumped


def test_rebuild_follows_changes(tmp_path: Path) -> None:
    _populate(tmp_path)
    with Index(tmp_path) as index:
        index.rebuild()
        index.yank("alpha-1.0.tar.gz", "bad")
        # a file vanished, one was rewritten with other bytes, one added
        (tmp_path / "beta-2.0-py3-none-any.whl").unlink()
        (tmp_path / "alpha" / "alpha-1.0.tar.gz").write_bytes(
            make_sdist("alpha-1.0", pkg_info=core_metadata("alpha", "1.0", extra="Summary: new"))
        )
        (tmp_path / "alpha" / "alpha-1.1-py3-none-any.whl").write_bytes(make_wheel("alpha", "1.1"))
        report = index.rebuild()
        assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 1)
        assert index.file("beta-2.0-py3-none-any.whl") is None
        sdist = index.file("alpha-1.0.tar.gz")
        assert sdist is not None and sdist.yanked == "bad"  # the yank survives the re-read
        assert b"Summary: new" in (index.metadata("alpha-1.0.tar.gz") or b"")
        assert [f.version for f in index.files("alpha")] == ["1.0", "1.0", "1.1"]


def test_rebuild_after_uploads_and_duplicate_names(tmp_path: Path) -> None:
    with Index(tmp_path) as index:
        raw, _ = index.create_token()
        rec = index.upload(
            "delta-1.0-py3-none-any.whl", io.BytesIO(make_wheel("delta", "1.0")), token=raw
        )
        # the same filename placed elsewhere (walked first): reported, the uploaded one stays
        (tmp_path / "aaa").mkdir()
        (tmp_path / "aaa" / rec.filename).write_bytes(make_wheel("delta", "1.0"))
        report = index.rebuild()
        assert report.unchanged == 1 and report.added == 0
        assert [p for p, _ in report.rejected] == [f"aaa/{rec.filename}"]
        assert index.file(rec.filename) == rec


def test_rebuild_during_an_upload_keeps_the_uploads_row(tmp_path: Path) -> None:
    """A rebuild that walks while an upload is between storing its file and writing its row
    leaves the row to the upload (its uploader and on_upload call are kept)."""
    threads: list[threading.Thread] = []
    reports: list[RebuildReport] = []

    class RacingDB(SQLiteIndexDB):
        def add_file(self, record, metadata, display_name):  # type: ignore[no-untyped-def]
            if record.uploader is not None and not threads:  # the upload's insert
                t = threading.Thread(target=lambda: reports.append(index.rebuild()))
                threads.append(t)
                t.start()
            return super().add_file(record, metadata, display_name)

    db = RacingDB(":memory:")
    calls: list[FileRecord] = []
    index = Index(DirectoryStorage(tmp_path), db, on_upload=calls.append)
    raw, token = index.create_token()
    rec = index.upload(
        "race-1.0-py3-none-any.whl", io.BytesIO(make_wheel("race", "1.0")), token=raw
    )
    threads[0].join()
    assert rec.uploader == f"token:{token.token_id}"  # the uploading principal's subject
    assert index.file(rec.filename) == rec
    assert calls == [rec]
    assert reports[0].added == 0 and reports[0].rejected == ()
    index.close()
    db.close()
