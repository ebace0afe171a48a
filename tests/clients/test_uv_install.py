"""uv installs from our index over HTTPS: yanked files, requires-python, PEP 658, hashes."""

from __future__ import annotations

import sys

from _packages import run, tool


def _uv(site, target, *args, check=True):
    return run(
        [
            tool("uv"),
            "pip",
            "install",
            "--no-cache",
            "--python",
            sys.executable,
            "--target",
            str(target),
            "--index-url",
            site.simple(),
            "--only-binary",
            ":all:",
            *args,
        ],
        env=site.env(),
        check=check,
    )


def _versions(target) -> dict[str, str]:
    out = {}
    for d in target.glob("*.dist-info"):
        name, version = d.name[: -len(".dist-info")].rsplit("-", 1)
        out[name] = version
    return out


def test_uv_resolves_with_metadata_skips_yanked_and_future_python(full_site, releases, tmp_path):
    site = full_site
    before = {n: site.file_hits(b.wheel.name) for n, b in releases.items()}
    meta_before = {n: site.app.metadata_hits.get(b.wheel.name, 0) for n, b in releases.items()}
    target = tmp_path / "u1"
    _uv(site, target, "alpha")
    assert _versions(target) == {"alpha": "1.0", "beta": "2.0"}
    for name in ("alpha-1.0", "beta-2.0"):
        wheel = releases[name].wheel.name
        assert site.app.metadata_hits.get(wheel, 0) > meta_before[name], wheel
        assert site.file_hits(wheel) == before[name] + 1, wheel
    for name in ("alpha-1.1", "alpha-2.0", "beta-1.0"):
        wheel = releases[name].wheel.name
        assert site.file_hits(wheel) == before[name], wheel
        assert site.app.metadata_hits.get(wheel, 0) == meta_before[name], wheel


def test_uv_installs_a_yanked_file_when_pinned(full_site, tmp_path):
    target = tmp_path / "u2"
    _uv(full_site, target, "alpha==1.1")
    assert _versions(target)["alpha"] == "1.1"


def test_uv_require_hashes(full_site, tmp_path):
    site = full_site
    alpha = next(r for r in site.index.files("alpha") if r.version == "1.0" and r.kind == "wheel")
    beta = next(r for r in site.index.files("beta") if r.version == "2.0" and r.kind == "wheel")
    req = tmp_path / "requirements.txt"
    req.write_text(
        f"alpha==1.0 --hash=sha256:{alpha.sha256}\nbeta==2.0 --hash=sha256:{beta.sha256}\n"
    )
    target = tmp_path / "u3"
    _uv(site, target, "--require-hashes", "-r", str(req))
    assert _versions(target) == {"alpha": "1.0", "beta": "2.0"}
    bad = tmp_path / "bad.txt"
    bad.write_text(f"beta==2.0 --hash=sha256:{'0' * 64}\n")
    proc = _uv(site, tmp_path / "u4", "--require-hashes", "-r", str(bad), check=False)
    assert proc.returncode != 0 and "hash" in (proc.stdout + proc.stderr).lower()
