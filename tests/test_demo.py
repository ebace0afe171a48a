"""The demo's release sources: never two artifacts of the same name."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from registry_core import demo


def _prefix(root: Path, pip_version: str) -> str:
    site = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    (site / "pip").mkdir(parents=True)
    (site / "pip" / "__init__.py").write_text(f"__version__ = {pip_version!r}\n")
    (site / f"pip-{pip_version}.dist-info").mkdir()
    return str(root)


def test_same_pip_in_venv_and_interpreter_gives_distinct_releases(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", _prefix(tmp_path / "venv", "24.0"))
    monkeypatch.setattr(sys, "base_prefix", _prefix(tmp_path / "base", "24.0"))
    releases = demo._machine_releases()
    assert releases is not None and len(releases) >= 2
    names = [name for name, _ in releases]
    assert len(set(names)) == len(names)


def test_two_pip_versions_give_two_pip_wheels(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", _prefix(tmp_path / "venv", "24.10"))
    monkeypatch.setattr(sys, "base_prefix", _prefix(tmp_path / "base", "24.9"))
    releases = demo._machine_releases()
    assert [name for name, _ in releases or []] == [
        "pip-24.9-py3-none-any.whl",
        "pip-24.10-py3-none-any.whl",
    ]


def test_the_delta_demo_runs_on_the_fallback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "prefix", _prefix(tmp_path / "venv", "24.0"))
    monkeypatch.setattr(sys, "base_prefix", _prefix(tmp_path / "base", "24.0"))
    monkeypatch.setattr(demo, "_corpus_releases", lambda: None)
    releases = demo.delta_report()
    assert len(releases) >= 2
    assert "byte-exact: yes" in capsys.readouterr().out


def test_pip_upgrade_through_the_proxy_moves_a_delta(capsys):
    """The demo's index + proxy path with real pip: release 1 in full, the upgrade as a
    delta far smaller than the wheel, and the installed files are release 2's."""
    from registry_core.server._demo import run_pip_upgrade_demo

    report = run_pip_upgrade_demo(source_kb=256, data_kb=256)
    first, upgrade = report["steps"]
    assert not first["delta"] and first["upstream_bytes"] >= first["wheel_bytes"]
    assert upgrade["delta"] and upgrade["upstream_bytes"] < upgrade["wheel_bytes"] // 4
    out = capsys.readouterr().out
    assert "pip install --upgrade rc-demo-app -> 1.1.0" in out and "% saved" in out


def test_the_tenants_demo_shows_two_tenants_with_different_roles(capsys):
    """alice (acme owner) uploads, bob (acme reader) is refused 403 and installs with pip,
    alice's token on globex gets the uniform 404 an unknown tenant gets."""
    from registry_core.server._demo import run_tenants_demo

    result = run_tenants_demo()
    assert result == {
        "alice_upload": 200,
        "bob_upload": 403,
        "bob_installed": True,
        "cross_tenant": 404,
        "cross_tenant_uniform": True,
    }
    out = capsys.readouterr().out
    assert "two tenants" in out and "the same bytes as an unknown tenant's" in out
