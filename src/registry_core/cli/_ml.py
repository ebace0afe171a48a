"""``registry-core ml train | evaluate | card``: the training pipeline (docs/ml.md).

- ``train (--trace LOG [--format auto] | --generate [--days D] [--clients N]) --seed N --out DIR
  [--tasks a,b]``: train the models on a trace (one of our JSON access logs, nginx combined,
  libCacheSim oracleGeneral) or a generated one, and write ``DIR/<task>.rcml``,
  ``DIR/<task>.card.md`` and ``DIR/report.json``. Same trace and seed: same artifacts (but
  their ``created`` time).
- ``evaluate --model FILE --trace LOG``: a next-download model's quality on another trace.
- ``card FILE``: print the model card inside an artifact.
- ``trace --seed N --days D [--clients C] [--no-attacks] -o FILE [--format json|oracle]``: write
  a generated trace as our JSON access log (``ml train --trace FILE`` reads it back) or as
  libCacheSim's oracleGeneral binary (file requests only).
- ``publish ARTIFACT --name N --index DIR [--sign]``, ``promote N V --index DIR [--stage S]``,
  ``rollback N --index DIR [--stage S]``, ``history N --index DIR``, ``models --index DIR``:
  the model registry (#72) of the index in DIR (tenant "default", index "main"; models in
  ``DIR/.registry-core/models/``). As everywhere, whoever runs these with file access is the
  local operator (admin); with ``--as-token-file FILE`` (or ``$REGISTRY_CORE_AS_TOKEN``) the
  command acts as that token: publish needs ``upload`` (``create`` for a new model) on
  ``rc-model-N``, promote and rollback ``upload``, history ``read``; ``models`` lists those the
  token may read.
- ``serve --index DIR --model NAME[=STAGE] ... (--certfile F --keyfile K | --self-signed |
  --plain-http) [--host H --port P] [--refresh S] [--history LOG] [--verify]``: the prediction
  gateway (#73) over HTTP behind the tenant's RBAC (``ml/_serve.py``), following promotions
  every ``--refresh`` seconds.

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


# -- trace -------------------------------------------------------------------------------------


def _cmd_trace(args: argparse.Namespace) -> int:
    from ..ml.traces import generate, write_access_log, write_oracle_general

    if not args.days > 0 or args.days > 366:
        raise InvalidArgumentError(f"--days must be in (0, 366], not {args.days:g}")
    if args.clients is not None and not 1 <= args.clients <= 1_000_000:
        raise InvalidArgumentError(f"--clients must be in 1..1000000, not {args.clients}")
    trace = generate(seed=args.seed, days=args.days, clients=args.clients, attacks=args.attacks)
    if args.format == "oracle":
        n = write_oracle_general(trace.requests, args.output)
        what = "oracleGeneral records (file requests)"
    else:
        n = write_access_log(trace.requests, args.output)
        what = "JSON access-log lines"
    print(f"wrote {n} {what} to {args.output} ({trace.source})")
    return 0


# -- the model registry --------------------------------------------------------------------------


class _Opened:
    """The index in ``--index DIR``, its tenant store (the server's bindings), the model
    registry on its state directory, and who acts (the local operator or ``--as-token-file``)."""

    def __init__(self, args: argparse.Namespace, *, sign: bool = False) -> None:
        from pathlib import Path

        from ..auth import Principal
        from ..index import Index
        from ..ml._registry import ModelRegistry
        from ..storage import STATE_DIR
        from ._index import _as_token, v1_store

        directory = args.index
        if not Path(directory).is_dir():
            raise InvalidArgumentError(f"{directory}: not a directory")
        signer = None
        trusted = None
        if sign or getattr(args, "verify", False):
            from ..signing import Keyring, keyring_dir
            from ._keys import _passphrase

            ring = Keyring(keyring_dir(directory), passphrase=_passphrase(args) if sign else None)
            if sign:
                signer = ring.signers("models")
                if not signer:
                    raise InvalidArgumentError(
                        f"{directory}: no active 'models' key to sign with (registry-core keys "
                        f"generate {directory} --role models)"
                    )
            else:
                trusted = ring.public_keys("models")
                if not trusted:
                    raise InvalidArgumentError(
                        f"{directory}: --verify, but the keyring has no active 'models' key"
                    )
        self.store = v1_store(directory)
        try:
            self.index = Index(directory, auth=self.store)
        except BaseException:
            self.store.close()
            raise
        try:
            self.registry = ModelRegistry(
                self.index,
                state_dir=Path(directory) / STATE_DIR,
                signer=signer,
                trusted_keys=trusted,
            )
            raw = _as_token(args)
            self.principal = (
                Principal.local(self.index.tenant)
                if raw is None
                else self.store.authenticate_token(raw)
            )
        except BaseException:
            self.close()
            raise

    @property
    def local(self) -> bool:
        return self.principal.method == "local"

    def may_read(self, name: str) -> bool:
        from ..ml._registry import model_project

        return self.local or bool(self.index.authorize(self.principal, "read", model_project(name)))

    def close(self) -> None:
        self.index.close()
        self.store.close()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _version_line(v: Any) -> str:
    metrics = ", ".join(f"{k} {x:.4g}" for k, x in sorted(v.metrics.items())[:6])
    stages = f" [{', '.join(v.stages)}]" if v.stages else ""
    signed = "signed" if v.signed else "unsigned"
    return (
        f"{v.name} {v.version}{stages}  {v.kind}  {signed}  artifact sha256 "
        f"{v.artifact_sha256[:16]}  by {v.published_by or '-'}"
        + (f"  ({metrics})" if metrics else "")
    )


def _cmd_publish(args: argparse.Namespace) -> int:
    artifact = _read_artifact(args.artifact)
    with _Opened(args, sign=args.sign) as reg:
        v = reg.registry.publish(artifact, name=args.name, principal=reg.principal)
    print(
        f"published {v.name} version {v.version} as {v.filename} "
        f"({'signed' if v.signed else 'unsigned'})"
    )
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    with _Opened(args) as reg:
        v = reg.registry.promote(args.name, args.version, args.stage, principal=reg.principal)
    print(f"{v.name}: {args.stage} is version {v.version}")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    with _Opened(args) as reg:
        v = reg.registry.rollback(args.name, args.stage, principal=reg.principal)
    print(f"{v.name}: {args.stage} rolled back to version {v.version}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from ..errors import NotFoundError

    with _Opened(args) as reg:
        if not reg.may_read(args.name):
            raise NotFoundError(f"no model {args.name!r} in {args.index}")  # as for a private one
        versions = reg.registry.history(args.name)
        names = sorted({s for v in versions for s in v.stages})  # every stage has a current one
        stages = {s: reg.registry.stage_history(args.name, s) for s in names}
    if not versions:
        raise InvalidArgumentError(f"no model {args.name!r} in {args.index}")
    if args.json:
        print(json.dumps({"versions": [v.to_json() for v in versions], "stages": stages}, indent=2))
        return 0
    for v in versions:
        print(_version_line(v))
    for stage, hist in sorted(stages.items()):
        print(f"stage {stage}: {' -> '.join(hist) or '-'}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    with _Opened(args) as reg:
        rows = []
        for name in reg.registry.names():
            if not reg.may_read(name):
                continue
            versions = reg.registry.history(name)
            rows.append((name, versions))
    if args.json:
        doc = [
            {
                "name": name,
                "versions": len(vs),
                "latest": vs[-1].version if vs else None,
                "stages": {s: v.version for v in vs for s in v.stages},
            }
            for name, vs in rows
        ]
        print(json.dumps(doc, indent=2))
        return 0
    if not rows:
        print(f"no models in {args.index}")
    for name, vs in rows:
        stages = ", ".join(f"{s}={v.version}" for v in vs for s in v.stages) or "no stage"
        kind = vs[-1].kind if vs else "-"
        print(
            f"{name}  {kind}  {len(vs)} version(s), latest {vs[-1].version if vs else '-'}  "
            f"{stages}"
        )
    return 0


# -- serve ---------------------------------------------------------------------------------------


def _serve_complaint(args: argparse.Namespace) -> str | None:
    from .._util import is_loopback

    if not (args.certfile or args.self_signed or args.plain_http):
        return "one of --certfile, --self-signed or --plain-http is required"
    if bool(args.certfile) != bool(args.keyfile):
        return "--certfile and --keyfile go together"
    if args.plain_http and not is_loopback(args.host):
        return (
            f"--plain-http serves without TLS and is refused on {args.host}: use a loopback "
            "--host (127.0.0.1, ::1) or a certificate"
        )
    if not 0 <= args.port <= 65535:
        return f"port must be an integer in 0..65535 (0: any free port), got {args.port!r}"
    if args.refresh is not None and not 0.05 <= args.refresh <= 86400:
        return f"--refresh must be 0.05..86400 seconds, not {args.refresh:g}"
    return None


def start_gateway(args: argparse.Namespace) -> tuple[Any, Any, _Opened]:
    """Build and start what ``ml serve`` serves (the command, and tests, call this): returns
    the server handle, the GatewayApp and the opened index (close it after the server)."""
    complaint = _serve_complaint(args)
    if complaint is not None:
        raise InvalidArgumentError(complaint)
    from ..ml._serve import (
        build_gateway_app,
        extractor_from_trace,
        parse_model_specs,
        scaling_advisor,
    )
    from ..server._serve import _require_server_extra, start_server

    _require_server_extra()
    models = parse_model_specs(args.model or [])
    scaling = parse_model_specs([args.scaling]) if args.scaling else {}
    if scaling and args.per_worker_rps is None:
        raise InvalidArgumentError("--scaling needs --per-worker-rps (what one worker serves)")
    reg = _Opened(args)
    try:
        trace = None
        if args.history is not None:
            from ..ml.traces import load_trace

            trace = load_trace(args.history, format=args.history_format)
        extractor = extractor_from_trace(trace) if trace is not None else None
        advisor = None
        for name, stage in scaling.items():
            advisor = scaling_advisor(
                reg.registry, name, stage, per_worker_rps=args.per_worker_rps, history=trace
            )
        app = build_gateway_app(
            reg.index, models, registry=reg.registry, extractor=extractor, scaling=advisor
        )
        handle = start_server(
            app,
            host=args.host,
            port=args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            tls=not args.plain_http,
            quic=False,
        )
    except BaseException:
        reg.close()
        raise
    if args.refresh is not None:
        app.gateway.start_refresh(args.refresh)
    return handle, app, reg


def _cmd_serve(args: argparse.Namespace) -> int:
    import contextlib
    import signal
    import threading

    handle, app, reg = start_gateway(args)
    try:
        how = "TCP h1, plain HTTP: no TLS" if args.plain_http else f"certificate {handle.certfile}"
        print(f"registry-core ml: serving on {handle.url()} ({how})", flush=True)
        for m in app.gateway.status():
            state = f"version {m['version']}" if m["version"] else f"not loaded ({m['error']})"
            print(f"  {m['name']} ({m['stage']}): {state}", flush=True)
        done = threading.Event()
        with contextlib.suppress(ValueError):  # not in the main thread: Ctrl-C only
            signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        app.gateway.stop_refresh()
        handle.stop()
        reg.close()
    return 0


def _add_registry_arguments(p: argparse.ArgumentParser) -> None:
    from ._index import add_acting_argument

    p.add_argument("--index", metavar="DIR", required=True, help="the index directory")
    add_acting_argument(p)


def add_ml_parser(sub: Any) -> None:
    """Add ``ml train | evaluate | card`` to an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "ml",
        help="train and inspect the ML models (next-download, eviction, forecast, anomaly)",
        description="The ML training pipeline: models, evaluation report and model cards from "
        "an access log or a generated trace (needs pip install 'registry-core[ml-train]').",
    )
    verbs = p.add_subparsers(
        dest="ml_command",
        required=True,
        metavar="{train,evaluate,card,trace,publish,promote,rollback,history,models,serve}",
    )
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

    g = verbs.add_parser("trace", help="write a generated trace (JSON access log or oracleGeneral)")
    g.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    g.add_argument("--days", type=float, default=14.0, help="trace length in days (default 14)")
    g.add_argument("--clients", type=int, default=None, help="developer machines")
    g.add_argument(
        "--no-attacks", dest="attacks", action="store_false", help="leave the attack episodes out"
    )
    g.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write it")
    g.add_argument(
        "--format",
        choices=("json", "oracle"),
        default="json",
        help="json: our access log (ml train --trace reads it); oracle: libCacheSim "
        "oracleGeneral, file requests only (default json)",
    )
    g.set_defaults(func=_cmd_trace, command_name="ml trace")

    pub = verbs.add_parser("publish", help="publish an artifact as the next version of a model")
    pub.add_argument("artifact", metavar="ARTIFACT", help="a .rcml artifact (from ml train)")
    pub.add_argument("--name", required=True, help="the model name (project rc-model-NAME)")
    _add_registry_arguments(pub)
    pub.add_argument(
        "--sign",
        action="store_true",
        help="sign it with the keyring's 'models' keys (DIR/.registry-core/keys/)",
    )
    pub.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="passphrase of the keys (first line; default $REGISTRY_CORE_KEY_PASSPHRASE)",
    )
    pub.set_defaults(func=_cmd_publish, command_name="ml publish")

    pro = verbs.add_parser("promote", help="make a version current in a stage")
    pro.add_argument("name", metavar="NAME")
    pro.add_argument("version", metavar="VERSION")
    pro.add_argument("--stage", default="production", help="default production")
    _add_registry_arguments(pro)
    pro.set_defaults(func=_cmd_promote, command_name="ml promote")

    rb = verbs.add_parser("rollback", help="return a stage to its previous version")
    rb.add_argument("name", metavar="NAME")
    rb.add_argument("--stage", default="production", help="default production")
    _add_registry_arguments(rb)
    rb.set_defaults(func=_cmd_rollback, command_name="ml rollback")

    h = verbs.add_parser("history", help="a model's versions and stage history")
    h.add_argument("name", metavar="NAME")
    _add_registry_arguments(h)
    h.add_argument("--json", action="store_true", help="JSON instead of lines")
    h.set_defaults(func=_cmd_history, command_name="ml history")

    ms = verbs.add_parser("models", help="the models of the index")
    _add_registry_arguments(ms)
    ms.add_argument("--json", action="store_true", help="JSON instead of lines")
    ms.set_defaults(func=_cmd_models, command_name="ml models")

    sv = verbs.add_parser(
        "serve",
        help="serve predictions of registry models over HTTP, behind the tenant's RBAC",
        description="The prediction gateway: POST /v1/models/NAME:predict needs a token with "
        "read on rc-model-NAME (Authorization: Bearer); GET /v1/models needs read on the index; "
        "GET /readyz is open.",
    )
    sv.add_argument("--index", metavar="DIR", required=True, help="the index directory")
    sv.add_argument(
        "--model",
        action="append",
        metavar="NAME[=STAGE]",
        required=True,
        help="a model to serve and its stage (default production); repeatable",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8444, help="TCP port (default 8444; 0 = any)")
    tls = sv.add_mutually_exclusive_group()
    tls.add_argument("--certfile", help="PEM certificate chain (with --keyfile)")
    tls.add_argument("--self-signed", action="store_true", help="a self-signed certificate")
    tls.add_argument(
        "--plain-http", action="store_true", help="plain HTTP/1.1, only on a loopback --host"
    )
    sv.add_argument("--keyfile", help="PEM private key of --certfile")
    sv.add_argument(
        "--refresh",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="re-read the stage pointers this often and hot-swap moved models (default 10)",
    )
    sv.add_argument(
        "--history",
        metavar="LOG",
        help="an access log replayed into the feature store at start (next-download models)",
    )
    sv.add_argument("--history-format", default="auto", help="the log's format (default auto)")
    sv.add_argument(
        "--scaling",
        metavar="NAME[=STAGE]",
        help="a forecast model: GET /v1/scaling answers its scaling hint to tenant admins "
        "(index.admin), its history fed from --history",
    )
    sv.add_argument(
        "--per-worker-rps",
        type=float,
        metavar="RPS",
        help="requests per second one worker serves (with --scaling)",
    )
    sv.add_argument(
        "--verify",
        action="store_true",
        help="load only models signed by the keyring's 'models' keys",
    )
    sv.set_defaults(func=_cmd_serve, command_name="ml serve", as_token_file=None)
