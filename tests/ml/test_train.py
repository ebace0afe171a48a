"""The training pipeline: artifacts, report and card from a trace; same seed, same bytes (but
``created``); the ``ml train | evaluate | card`` commands; bad input refused."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from pathlib import Path

import pytest

from registry_core.errors import InvalidArgumentError, MLError
from registry_core.ml._artifact import ModelArtifact
from registry_core.ml._predict import Predictor, load_predictor
from registry_core.ml._train import evaluate, train, train_next_download
from registry_core.ml.traces import Trace, generate

TASK = ("next-download-24h",)


@functools.lru_cache(maxsize=1)
def trace() -> Trace:
    return generate(seed=5, days=6, clients=30)  # what `ml train --generate` below makes


def _stable(data: bytes) -> bytes:
    art = ModelArtifact.from_bytes(data)
    return dataclasses.replace(art, created=1.0).to_bytes()


def _parse(*argv: str) -> argparse.Namespace:
    from registry_core.cli._ml import add_ml_parser

    parser = argparse.ArgumentParser(prog="registry-core")
    add_ml_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def cli_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    args = _parse(
        "ml", "train", "--generate", "--days", "6", "--clients", "30", "--seed", "5",
        "--out", str(out), "--tasks", "next-download-24h",
    )  # fmt: skip
    assert args.func(args) == 0
    return out


def test_cli_train_then_api_train_same_bytes(cli_out: Path, tmp_path: Path) -> None:
    a = train(trace(), seed=5, tasks=TASK, out=tmp_path)
    one = (cli_out / "next-download-24h.rcml").read_bytes()
    two = (tmp_path / "next-download-24h.rcml").read_bytes()
    assert _stable(one) == _stable(two)  # same trace and seed: same bytes but `created`
    b = json.loads((cli_out / "report.json").read_text())
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    task = b["tasks"]["next-download-24h"]
    assert task["shipped"] in ("gbdt", "logistic")
    assert set(task["models"]) == {"gbdt", "logistic"}
    assert set(task["baselines"]) == {"frequency", "recency"}
    for q in (*task["models"].values(), *task["baselines"].values()):
        assert 0.0 <= q["brier"] <= 1.0 and q["n"] > 0
    card = (cli_out / "next-download-24h.card.md").read_text()
    assert b["data_sha256"] in card and "## Intended use" in card and "## Limits" in card
    art = ModelArtifact.from_bytes(one)
    assert art.kind == "next-download" and art.data_sha256 == trace().sha256()
    assert art.seed == 5 and art.card == card
    assert len(one) < 2 << 20  # the roadmap's model budget
    pred = load_predictor(one)
    assert isinstance(pred, Predictor) and pred.horizon_s == 86400.0


def test_evaluate_on_a_trace(cli_out: Path) -> None:
    art = ModelArtifact.from_bytes((cli_out / "next-download-24h.rcml").read_bytes())
    out = evaluate(art.to_bytes(), trace())
    assert out["examples"] > 0 and 0.0 <= out["quality"]["brier"] <= 1.0
    with pytest.raises(InvalidArgumentError):
        evaluate(dataclasses.replace(art, kind="forecast"), trace())


def test_too_short_a_trace_is_refused() -> None:
    short = generate(seed=5, days=2, clients=10, attacks=False)
    with pytest.raises(InvalidArgumentError, match="longer trace"):
        train_next_download(short, horizon_s=7 * 86400.0)


def test_unknown_task_and_missing_modules() -> None:
    with pytest.raises(InvalidArgumentError):
        train(trace(), tasks=("nope",))
    from registry_core.ml._train import _task_trainer

    assert _task_trainer("next-download") is None  # trained here, not by a module


def test_cli_card_and_errors(
    cli_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli_out
    model = out / "next-download-24h.rcml"
    args = _parse("ml", "card", str(model))
    assert args.func(args) == 0
    assert "# Model card: next-download-24h" in capsys.readouterr().out
    with pytest.raises(InvalidArgumentError):
        args = _parse("ml", "train", "--out", str(out), "--tasks", "bogus", "--generate")
        args.func(args)
    with pytest.raises(InvalidArgumentError):
        args = _parse("ml", "train", "--out", str(out))
        args.func(args)
    bad = tmp_path / "bad.rcml"
    bad.write_bytes(b"RCML\x01junk")
    with pytest.raises(MLError):
        args = _parse("ml", "card", str(bad))
        args.func(args)
