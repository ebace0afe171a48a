"""twine uploads to our index over HTTPS with a token; refusals come back as twine shows them."""

from __future__ import annotations

import shutil

from _packages import build_project, run, tool


def _twine(site, *paths, token=None, extra=(), check=True):
    return run(
        [
            tool("twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            site.upload_url(),
            "--cert",
            site.ca,
            "-u",
            "__token__",
            "-p",
            token if token is not None else site.token,
            *extra,
            *map(str, paths),
        ],
        env=site.env(),
        check=check,
    )


def test_twine_upload_then_pip_sees_it(empty_site, releases):
    site = empty_site
    built = releases["beta-1.0"]
    proc = _twine(site, built.wheel, built.sdist)
    assert site.token not in proc.stdout + proc.stderr
    rec = site.index.file(built.wheel.name)
    assert rec is not None and rec.uploader is not None
    assert site.index.file(built.sdist.name) is not None
    assert site.app.stats["uploads"] == 2


def test_twine_wrong_token_refused(empty_site, releases):
    site = empty_site
    wheel = releases["beta-1.0"].wheel
    proc = _twine(site, wheel, token="rc-unknown-" + "A" * 43, check=False)
    assert proc.returncode != 0
    assert "401" in proc.stdout + proc.stderr
    scoped, _ = site.index.create_token(scope="alpha")
    proc = _twine(site, wheel, token=scoped, check=False)
    assert proc.returncode != 0 and "403" in proc.stdout + proc.stderr
    assert site.index.file(wheel.name) is None


def test_twine_duplicate_and_skip_existing(empty_site, releases, tmp_path):
    site = empty_site
    built = releases["beta-2.0"]
    _twine(site, built.wheel)
    # the same bytes again: accepted (idempotent), so a re-run of a release job passes
    uploads = site.app.stats["uploads"]
    _twine(site, built.wheel)
    assert site.app.stats["uploads"] == uploads + 1
    # twine >= 6.1 allows --skip-existing only for PyPI/TestPyPI URLs and refuses it before
    # sending anything; older twines skip on our 409 / accept our 200
    proc = _twine(site, built.wheel, extra=["--skip-existing"], check=False)
    if proc.returncode != 0:
        assert "UnsupportedConfiguration" in proc.stdout + proc.stderr
        assert site.app.stats["uploads"] == uploads + 1
    # another file under the same name: 409, the stored file stays
    other = build_project(tmp_path / "b", "beta", "2.0", payload_kb=4)
    moved = tmp_path / "dup"
    moved.mkdir()
    fake = moved / built.wheel.name
    shutil.copy(other.wheel, fake)
    proc = _twine(site, fake, check=False)
    assert proc.returncode != 0 and "409" in proc.stdout + proc.stderr
    assert site.index.file(built.wheel.name).sha256 != _sha(fake)


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
