"""`registry-core proxy warm --predict`: refused while ML_PREDICTIVE_PREFETCH is off, checked
before anything is fetched."""

from __future__ import annotations

from registry_core.cli import main


def _argv(tmp_path, *more):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("six==1.16.0\n")
    return ["proxy", "warm", "-r", str(reqs), "--upstream", "https://pypi.org",
            "--cache-dir", str(tmp_path / "cache"), *more]  # fmt: skip


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("registry-core proxy warm: error: "), err
    return err[0]


def test_predict_is_refused_while_its_flag_is_off(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REGISTRY_CORE_FLAGS", raising=False)
    model = tmp_path / "m.rcml"
    model.write_bytes(b"unused")
    assert main(_argv(tmp_path, "--predict", str(model))) == 2
    assert "ML_PREDICTIVE_PREFETCH" in _one_error(capsys)
    assert not (tmp_path / "cache" / "files").exists() or not any(
        (tmp_path / "cache" / "files").iterdir()
    )


def test_a_bad_model_or_threshold_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REGISTRY_CORE_FLAGS", "ML_PREDICTIVE_PREFETCH=on")
    model = tmp_path / "m.rcml"
    model.write_bytes(b"not a model")
    assert main(_argv(tmp_path, "--predict", str(model))) == 2
    assert "model" in _one_error(capsys).lower()
    assert main(_argv(tmp_path, "--predict", str(model), "--predict-threshold", "0")) == 2
    assert "--predict-threshold" in _one_error(capsys)
