"""``registry-core ml train | evaluate | card``: the training pipeline (docs/ml.md).

- ``train (--trace LOG [--format auto] | --generate [--days D] [--clients N]) --seed N --out DIR
  [--tasks a,b]``: train the models on a trace (one of our JSON access logs, nginx combined,
  libCacheSim oracleGeneral) or a generated one, and write ``DIR/<task>.rcml``,
  ``DIR/<task>.card.md`` and ``DIR/report.json``. Same trace and seed: same artifacts (but
  their ``created`` time).
- ``evaluate --model FILE --trace LOG``: a next-download model's quality on another trace.
- ``card FILE``: print the model card inside an artifact.

Training needs the ``[ml-train]`` extra (lightgbm, scikit-learn); nothing is imported until a
command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["add_ml_parser"]

_MAX_ARTIFACT = 64 << 20


def _load_trace(args: argparse.Namespace) -> Any:
    if args.trace and args.generate:
        raise InvalidArgumentError("give --trace LOG or --generate, not both")
    if args.trace:
        from ..ml.traces import load_trace

        return load_trace(args.trace, format=args.format)
    if getattr(args, "generate", False):
        from ..ml.traces import generate

        return generate(seed=args.seed, days=args.days, clients=args.clients)
    raise InvalidArgumentError("give --trace LOG (an access log) or --generate")


def _tasks(text: str | None) -> tuple[str, ...]:
    from ..ml._train import DEFAULT_TASKS, TASKS

    if not text:
        return DEFAULT_TASKS
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise InvalidArgumentError(
            f"unknown task(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(TASKS)}"
        )
    return tasks


def _cmd_train(args: argparse.Namespace) -> int:
    from ..ml._train import train

    tasks = _tasks(args.tasks)
    trace = _load_trace(args)
    report = train(
        trace,
        seed=args.seed,
        tasks=tasks,
        out=args.out,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(f"trained on {report['trace']} ({report['requests']} requests), wrote {args.out}")
    for task, rep in report["tasks"].items():
        if "skipped" in rep:
            print(f"  {task}: skipped ({rep['skipped']})")
        elif "shipped" in rep:
            q = rep["models"][rep["shipped"]]
            print(
                f"  {task}: {rep['shipped']}, held-out brier {q['brier']:.4f} log loss "
                f"{q['log_loss']:.4f} auc {q['auc']:.3f} accuracy {q['accuracy']:.3f} "
                f"(base rate {q['base_rate']:.3f})"
            )
        else:
            print(f"  {task}: trained")
    return 0


def _read_artifact(path: str) -> Any:
    from ..ml._artifact import ModelArtifact

    with open(path, "rb") as f:
        data = f.read(_MAX_ARTIFACT + 1)
    return ModelArtifact.from_bytes(data)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..ml._train import evaluate

    art = _read_artifact(args.model)
    args.generate = False
    trace = _load_trace(args)
    out = evaluate(art, trace)
    print(json.dumps(out, indent=2, sort_keys=True, default=float))
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from ..ml._card import render_card

    art = _read_artifact(args.file)
    sys.stdout.write(render_card(art.header()))
    return 0


def add_ml_parser(sub: Any) -> None:
    """Add ``ml train | evaluate | card`` to an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "ml",
        help="train and inspect the ML models (next-download, eviction, forecast, anomaly)",
        description="The ML training pipeline: models, evaluation report and model cards from "
        "an access log or a generated trace (needs pip install 'registry-core[ml-train]').",
    )
    verbs = p.add_subparsers(dest="ml_command", required=True, metavar="{train,evaluate,card}")
    t = verbs.add_parser("train", help="train models on a trace and write them to --out")
    t.add_argument(
        "--trace", metavar="LOG", help="an access log (JSON lines, nginx, oracleGeneral)"
    )
    t.add_argument("--format", default="auto", help="the log's format (default: auto)")
    t.add_argument("--generate", action="store_true", help="train on a generated trace instead")
    t.add_argument("--days", type=float, default=42.0, help="generated trace length (default 42)")
    t.add_argument("--clients", type=int, default=None, help="generated developer machines")
    t.add_argument("--seed", type=int, default=0, help="seed of the generator and the models")
    t.add_argument("--out", metavar="DIR", required=True, help="where the artifacts go")
    t.add_argument("--tasks", metavar="A,B", help="comma-separated tasks (default: all known)")
    t.set_defaults(func=_cmd_train, command_name="ml train")
    e = verbs.add_parser("evaluate", help="measure a next-download model on a trace")
    e.add_argument("--model", metavar="FILE", required=True, help="a .rcml artifact")
    e.add_argument("--trace", metavar="LOG", required=True, help="an access log")
    e.add_argument("--format", default="auto", help="the log's format (default: auto)")
    e.set_defaults(func=_cmd_evaluate, command_name="ml evaluate")
    c = verbs.add_parser("card", help="print the model card of an artifact")
    c.add_argument("file", metavar="FILE", help="a .rcml artifact")
    c.set_defaults(func=_cmd_card, command_name="ml card")
