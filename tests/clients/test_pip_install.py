"""pip installs from our index over HTTPS: hashes, yanked files, requires-python, PEP 658."""

from __future__ import annotations

import json
from pathlib import Path

from _packages import run, tool


def _pip(site, target, *args):
    return run(
        [
            tool("pip"),
            "install",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            str(target),
            "--index-url",
            site.simple(),
            "--cert",
            site.ca,
            "--report",
            str(target) + ".report.json",
            "--retries",
            "0",
            *args,
        ],
        env=site.env(),
    )


def _installed(target) -> dict[str, str]:
    report = json.loads(Path(str(target) + ".report.json").read_text())
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in report["install"]}


def test_pip_resolves_with_metadata_skips_yanked_and_future_python(full_site, releases, tmp_path):
    site = full_site
    target = tmp_path / "t1"
    _pip(site, target, "alpha")
    # 1.1 is yanked (not chosen by a range), 2.0 needs Python >= 4: pip takes 1.0, and beta 2.0
    assert _installed(target) == {"alpha": "1.0", "beta": "2.0"}
    assert (target / "alpha" / "__init__.py").exists()
    # PEP 658: pip read the core metadata of what it chose before downloading it...
    for name in ("alpha-1.0", "beta-2.0"):
        wheel = releases[name].wheel.name
        assert site.app.metadata_hits.get(wheel, 0) >= 1, wheel
        assert site.file_hits(wheel) == 1
    # ...and never downloaded (or read the metadata of) a file it did not choose
    for name in ("alpha-1.1", "alpha-2.0", "beta-1.0"):
        wheel = releases[name].wheel.name
        assert site.file_hits(wheel) == 0, wheel
        assert site.app.metadata_hits.get(wheel, 0) == 0, wheel


def test_pip_installs_a_yanked_file_when_pinned(full_site, tmp_path):
    target = tmp_path / "t2"
    proc = _pip(full_site, target, "alpha==1.1")
    assert _installed(target)["alpha"] == "1.1"
    assert "yanked" in (proc.stdout + proc.stderr).lower()


def test_pip_require_hashes_from_the_index(full_site, tmp_path):
    site = full_site
    hashes = {}
    for project in ("alpha", "beta"):
        for rec in site.index.files(project):
            if rec.kind == "wheel" and rec.version in ("1.0", "2.0") and project == "beta":
                hashes[(project, rec.version)] = rec.sha256
            if rec.kind == "wheel" and project == "alpha" and rec.version == "1.0":
                hashes[(project, rec.version)] = rec.sha256
    req = tmp_path / "requirements.txt"
    req.write_text(
        f"alpha==1.0 --hash=sha256:{hashes[('alpha', '1.0')]}\n"
        f"beta==2.0 --hash=sha256:{hashes[('beta', '2.0')]}\n"
    )
    target = tmp_path / "t3"
    _pip(site, target, "--require-hashes", "-r", str(req))
    assert _installed(target) == {"alpha": "1.0", "beta": "2.0"}
    # a wrong hash is refused by pip
    bad = tmp_path / "bad.txt"
    bad.write_text(f"beta==2.0 --hash=sha256:{'0' * 64}\n")
    proc = run(
        [
            tool("pip"),
            "install",
            "--target",
            str(tmp_path / "t4"),
            "--index-url",
            site.simple(),
            "--cert",
            site.ca,
            "--require-hashes",
            "-r",
            str(bad),
        ],
        check=False,
        env=site.env(),
    )
    assert proc.returncode != 0 and "hash" in (proc.stdout + proc.stderr).lower()
