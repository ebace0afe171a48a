"""``registry-core ml trace | publish | promote | rollback | history | models | serve``: the
model registry and the prediction gateway operated from the command line, on a real index
directory, its tenant store and a real server on loopback (ml/_serve.py's RBAC)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _cli_run import Running, cli_env
from registry_core.cli._main import main
from registry_core.ml._artifact import ModelArtifact
from registry_core.ml._calibrate import Calibrator
from registry_core.ml._dense import DenseNet
from registry_core.ml._features import FEATURE_NAMES
from registry_core.ml._predict import Predictor
from registry_core.ml._serve import parse_model_specs
from registry_core.ml.traces import Request, load_trace, read_oracle_general, write_access_log

DAY = 86400.0
BASE = 1_700_000_000.0
W = "demo-{}-py3-none-any.whl"


def artifact(p: float) -> bytes:
    """A next-download model that answers probability ``p`` whatever the features."""
    net = DenseNet(
        [(np.zeros((len(FEATURE_NAMES), 1)), np.zeros(1), "linear")], feature_names=FEATURE_NAMES
    )
    cal = Calibrator((0.0,), (p,), (0.0,), (p,), (p,))
    pred = Predictor(net, cal, horizon_s=DAY, latest_share=0.8, model_type="dense")
    return ModelArtifact(
        kind="next-download", payload=pred.to_bytes(), metrics={"brier": p}
    ).to_bytes()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # a usage error, from argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """An index directory with two artifacts on disk and three tokens: one reading the model,
    one reading another project only, one that may upload the model."""
    d = tmp_path / "idx"
    d.mkdir()
    for n, p in (("a", 0.5), ("b", 0.3)):
        (tmp_path / f"{n}.rcml").write_bytes(artifact(p))
    tokens = {}
    for who, scope in (
        ("reader", "read:main/rc-model-next"),
        ("other", "read:main/other"),
        ("uploader", "upload,create,read:main/rc-model-next"),
        ("indexreader", "read:main"),
        ("admin", "index.admin:*"),
    ):
        code, out, _ = run(capsys, "token", "create", str(d), "--scope", scope)
        assert code == 0
        tokens[who] = out.strip()
        (tmp_path / f"{who}.token").write_text(tokens[who] + "\n")
    return {"dir": str(d), "tmp": tmp_path, "tokens": tokens}


def test_registry_round_trip(index: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d, tmp = index["dir"], index["tmp"]
    code, out, _ = run(capsys, "ml", "publish", str(tmp / "a.rcml"), "--name", "next", "--index", d)
    assert code == 0 and "version 1" in out and "unsigned" in out
    assert run(capsys, "ml", "publish", str(tmp / "b.rcml"), "--name", "next", "--index", d)[0] == 0
    assert run(capsys, "ml", "promote", "next", "1", "--index", d)[1].strip() == (
        "next: production is version 1"
    )
    assert run(capsys, "ml", "promote", "next", "2", "--index", d)[0] == 0
    assert run(capsys, "ml", "promote", "next", "1", "--stage", "staging", "--index", d)[0] == 0
    code, out, _ = run(capsys, "ml", "history", "next", "--index", d, "--json")
    doc = json.loads(out)
    assert [v["version"] for v in doc["versions"]] == ["1", "2"]
    assert doc["stages"] == {"production": ["1", "2"], "staging": ["1"]}
    assert doc["versions"][1]["stages"] == ["production"] and doc["versions"][0]["metrics"]
    code, out, _ = run(capsys, "ml", "rollback", "next", "--index", d)
    assert code == 0 and "rolled back to version 1" in out
    code, out, _ = run(capsys, "ml", "models", "--index", d)
    assert out.split()[:2] == ["next", "next-download"] and "production=1" in out
    # what the registry loads is what was published, checked end to end
    from registry_core.index import Index
    from registry_core.ml._registry import ModelRegistry

    with Index(d) as ix:
        art = ModelRegistry(ix, state_dir=Path(d) / ".registry-core").load("next")
    assert art.version == "1" and art.payload == ModelArtifact.from_bytes(artifact(0.5)).payload
    # one-line errors, exit 2
    for argv, why in (
        (("ml", "rollback", "next", "--index", d), "no earlier version"),
        (("ml", "promote", "next", "7", "--index", d), "no version 7"),
        (("ml", "history", "nope", "--index", d), "no model 'nope'"),
        (("ml", "publish", str(tmp / "a.rcml"), "--name", "Bad", "--index", d), "model name"),
        (("ml", "models", "--index", str(tmp / "missing")), "not a directory"),
        (("ml", "publish", str(tmp / "nothing.rcml"), "--name", "x", "--index", d), "nothing"),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and why in err and err.count("\n") == 1, (argv, err)


def test_acting_tokens(index: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d, tmp = index["dir"], index["tmp"]
    a = str(tmp / "a.rcml")
    code, _, err = run(
        capsys, "ml", "publish", a, "--name", "next", "--index", d, "--as-token-file",
        str(tmp / "reader.token"),
    )  # fmt: skip
    assert code == 2 and "error" in err
    code, out, _ = run(
        capsys, "ml", "publish", a, "--name", "next", "--index", d, "--as-token-file",
        str(tmp / "uploader.token"),
    )  # fmt: skip
    assert code == 0 and "version 1" in out
    reader = ("--as-token-file", str(tmp / "reader.token"))
    other = ("--as-token-file", str(tmp / "other.token"))
    assert run(capsys, "ml", "promote", "next", "1", "--index", d, *reader)[0] == 2
    assert run(capsys, "ml", "promote", "next", "1", "--index", d)[0] == 0
    code, out, _ = run(capsys, "ml", "history", "next", "--index", d, "--json", *reader)
    assert code == 0 and json.loads(out)["versions"][0]["published_by"].startswith("token:")
    code, _, err = run(capsys, "ml", "history", "next", "--index", d, *other)
    assert code == 2 and "no model 'next'" in err  # the same answer as for a missing one
    assert run(capsys, "ml", "models", "--index", d, "--json", *other)[1].strip() == "[]"
    assert json.loads(run(capsys, "ml", "models", "--index", d, "--json", *reader)[1])[0][
        "stages"
    ] == {"production": "1"}


def test_trace_files_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, oracle = tmp_path / "t.jsonl", tmp_path / "t.oracle"
    common = ("--seed", "3", "--days", "1", "--clients", "20")
    code, out, _ = run(capsys, "ml", "trace", *common, "-o", str(log))
    assert code == 0 and "seed=3" in out
    code, _, _ = run(
        capsys, "ml", "trace", *common, "--no-attacks", "-o", str(oracle), "--format", "oracle"
    )
    assert code == 0
    from registry_core.ml.traces import generate

    want = generate(seed=3, days=1, clients=20)
    got = load_trace(log)
    assert len(got.requests) == len(want.requests) == int(out.split()[1])
    for w, g in zip(want.requests, got.requests, strict=True):  # the same requests, in order
        assert abs(g.time - w.time) < 2e-3 and g.kind == w.kind and g.size == w.size
        if w.kind != "upload":  # (an upload's project is in its form, not in the log line)
            assert (g.project, g.filename, g.version) == (w.project, w.filename, w.version)
    files = [
        r for r in generate(seed=3, days=1, clients=20, attacks=False).requests if r.kind == "file"
    ]
    ours = list(read_oracle_general(oracle))
    assert len(ours) == len(files) and oracle.stat().st_size == 24 * len(files)
    try:
        import libcachesim as lcs
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("libcachesim is not installed, and CI=true: pip install libcachesim")
        pytest.skip("libcachesim is not installed")
    reader = lcs.TraceReader(str(oracle), lcs.TraceType.ORACLE_GENERAL_TRACE)
    assert reader.get_num_of_req() == len(files)
    total = sum({r.key: r.size for r in files}.values())
    miss, byte_miss = lcs.LRU(total // 10).process_trace(reader)
    assert 0 < miss < 1 and 0 < byte_miss < 1
    for bad in (("--days", "0"), ("--clients", "0"), ("--format", "csv")):
        assert run(capsys, "ml", "trace", *bad, "-o", str(tmp_path / "x"))[0] == 2


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(
            lambda n: "--" not in n
        ),
        st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)),
        min_size=1,
        max_size=5,
    )
)
def test_model_specs_parse_back(specs: dict[str, str | None]) -> None:
    """``NAME[=STAGE]`` arguments: written, parsed, the same (stage default production)."""
    argv = [n if s is None else f"{n}={s}" for n, s in specs.items()]
    assert parse_model_specs(argv) == {n: s or "production" for n, s in specs.items()}


def test_model_specs_refused() -> None:
    from registry_core.errors import InvalidArgumentError

    for argv in ([], ["a", "a=staging"], ["A"], ["a=Prod"], ["a="], ["-a"]):
        with pytest.raises(InvalidArgumentError):
            parse_model_specs(argv)


# -- serving -------------------------------------------------------------------------------------


def _history(path: Path) -> None:
    """An access log: demo 1.0 then 1.1 released (what the feature store learns)."""
    write_access_log(
        [
            Request(BASE, "alice", "file", "demo", W.format("1.0"), "1.0", 100),
            Request(BASE + DAY, "bob", "file", "demo", W.format("1.1"), "1.1", 100),
        ],
        path,
    )


def _serve_args(d: str, *extra: str) -> Any:
    from registry_core.cli._main import build_parser

    return build_parser().parse_args(
        ["ml", "serve", "--index", d, "--model", "next", "--plain-http", "--port", "0", *extra]
    )


def test_served_gateway_rbac_and_hot_swap(
    index: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from registry_core.cli._ml import start_gateway

    d, tmp, tokens = index["dir"], index["tmp"], index["tokens"]
    for n in ("a", "b"):
        assert (
            run(capsys, "ml", "publish", str(tmp / f"{n}.rcml"), "--name", "next", "--index", d)[0]
            == 0
        )
    assert run(capsys, "ml", "promote", "next", "1", "--index", d)[0] == 0
    _history(tmp / "history.jsonl")
    args = _serve_args(d, "--history", str(tmp / "history.jsonl"))
    args.refresh = None  # refreshed below by the test, not by a timer
    handle, app, reg = start_gateway(args)
    ask = {"client": "carol", "project": "demo", "held": "1.0", "now": BASE + 2 * DAY}

    def bearer(who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {tokens[who]}"}

    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            r = c.post("/v1/models/next:predict", json=ask, headers=bearer("reader"))
            assert r.status_code == 200, r.text
            assert r.headers["x-model-version"] == "1"
            (pred,) = r.json()["result"]
            assert pred["filename"] == W.format("1.1") and pred["probability"] == pytest.approx(0.5)
            # anonymous: 401 with a challenge, whatever the model
            for path in ("/v1/models/next:predict", "/v1/models/zz:predict", "/v1/models"):
                r = c.post(path, json=ask) if path.endswith("predict") else c.get(path)
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            r = c.post("/v1/models/next:predict", json=ask, headers={"authorization": "Bearer x"})
            assert r.status_code == 401
            # no read on the model, or no such model: the same uniform 404
            denied = c.post("/v1/models/next:predict", json=ask, headers=bearer("other"))
            unknown = c.post("/v1/models/zz:predict", json=ask, headers=bearer("reader"))
            assert denied.status_code == unknown.status_code == 404
            assert denied.content == unknown.content and denied.headers == unknown.headers
            # pip's and twine's form of the same token works too
            basic = httpx.BasicAuth("__token__", tokens["reader"])
            assert c.post("/v1/models/next:predict", json=ask, auth=basic).status_code == 200
            # refused with a body: the body is read, the connection serves the next request
            big = {"client": "x" * 200_000, "project": "demo", "held": "1.0", "now": 0}
            assert c.post("/v1/models/next:predict", json=big).status_code == 401
            assert c.post("/v1/models/zz:predict", json=big, auth=basic).status_code == 404
            # the list: read on the index, and only the models the caller may read
            r = c.get("/v1/models", headers=bearer("indexreader"))
            assert [m["name"] for m in r.json()["models"]] == ["next"]
            assert r.json()["models"][0]["version"] == "1"
            for who in ("reader", "other"):  # read on one project is not read on the index
                assert c.get("/v1/models", headers=bearer(who)).content == unknown.content
            assert c.get("/readyz").status_code == 200
            assert c.get("/v1/scaling", headers=bearer("reader")).status_code == 404  # none
            # hot swap: promote, refresh, the next answer comes from version 2; roll back
            assert run(capsys, "ml", "promote", "next", "2", "--index", d)[0] == 0
            assert app.gateway.refresh().swapped == {"next": ("1", "2")}
            r = c.post("/v1/models/next:predict", json=ask, headers=bearer("reader"))
            assert r.headers["x-model-version"] == "2"
            assert r.json()["result"][0]["probability"] == pytest.approx(0.3)
            assert run(capsys, "ml", "rollback", "next", "--index", d)[0] == 0
            assert app.gateway.refresh().swapped == {"next": ("2", "1")}
            r = c.post("/v1/models/next:predict", json=ask, headers=bearer("reader"))
            assert r.headers["x-model-version"] == "1"
    finally:
        handle.stop()
        reg.close()


def test_serve_command(index: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The real command: listens, answers, refuses what it must, stops on SIGTERM."""
    d, tmp, tokens = index["dir"], index["tmp"], index["tokens"]
    assert run(capsys, "ml", "publish", str(tmp / "a.rcml"), "--name", "next", "--index", d)[0] == 0
    assert run(capsys, "ml", "promote", "next", "1", "--index", d)[0] == 0
    _history(tmp / "history.jsonl")
    server = Running(
        ["ml", "serve", "--index", d, "--model", "next=production", "--plain-http", "--port", "0",
         "--history", str(tmp / "history.jsonl")],
        tmp,
        cli_env(),
    )  # fmt: skip
    try:
        ask = {"client": "c", "project": "demo", "held": "1.0", "now": BASE + 2 * DAY}
        with httpx.Client(base_url=server.url, timeout=30) as c:
            ok = c.post(
                "/v1/models/next:predict",
                json=ask,
                headers={"authorization": f"Bearer {tokens['reader']}"},
            )
            assert ok.status_code == 200 and ok.json()["version"] == "1"
            assert c.post("/v1/models/next:predict", json=ask).status_code == 401
    finally:
        assert server.stop() == 0
    # refused before anything is bound: one line, exit 2
    for extra, why in (
        ((), "one of --certfile, --self-signed or --plain-http"),
        (("--plain-http", "--host", "0.0.0.0"), "refused on 0.0.0.0"),
        (("--plain-http", "--refresh", "0"), "--refresh"),
    ):
        code, _, err = run(capsys, "ml", "serve", "--index", d, "--model", "next", *extra)
        assert code == 2 and why in err, err


def test_signed_publish_and_verified_serving(
    index: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``publish --sign`` signs with the keyring's 'models' keys; ``serve --verify`` loads only
    signed models (an unsigned one is reported and not served)."""
    from registry_core.cli._ml import start_gateway

    d, tmp = index["dir"], index["tmp"]
    (tmp / "pass").write_text("correct horse battery staple\n")
    monkeypatch.setenv("REGISTRY_CORE_KEY_PASSPHRASE", "correct horse battery staple")
    a, b = str(tmp / "a.rcml"), str(tmp / "b.rcml")
    code, _, err = run(capsys, "ml", "publish", a, "--name", "next", "--index", d, "--sign")
    assert code == 2 and "no active 'models' key" in err  # nothing published
    assert run(capsys, "ml", "models", "--index", d)[1].startswith("no models")
    assert run(capsys, "keys", "generate", d, "--role", "models", "--algorithm", "ed25519")[0] == 0
    pf = ("--passphrase-file", str(tmp / "pass"))
    code, out, _ = run(capsys, "ml", "publish", a, "--name", "next", "--index", d, "--sign", *pf)
    assert code == 0 and "(signed)" in out
    assert run(capsys, "ml", "publish", b, "--name", "unsigned", "--index", d)[0] == 0
    for name in ("next", "unsigned"):
        assert run(capsys, "ml", "promote", name, "1", "--index", d)[0] == 0
    args = _serve_args(d, "--model", "unsigned", "--verify")
    args.refresh = None
    handle, app, reg = start_gateway(args)
    try:
        status = {m["name"]: m for m in app.gateway.status()}
        assert status["next"]["version"] == "1"
        assert status["unsigned"]["version"] is None and "not signed" in status["unsigned"]["error"]
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            assert c.get("/readyz").status_code == 503  # one configured model is not loaded
    finally:
        handle.stop()
        reg.close()


def test_served_scaling_hint(index: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """``--scaling`` mounts the forecast model's hint at /v1/scaling (for tenant admins)."""
    from registry_core.cli._ml import start_gateway
    from registry_core.ml._forecast import Forecaster

    d, tmp, tokens = index["dir"], index["tmp"], index["tokens"]
    fc = ModelArtifact(kind="forecast", payload=Forecaster("seasonal-mean").to_bytes())
    (tmp / "fc.rcml").write_bytes(fc.to_bytes())
    (tmp / "a.rcml").write_bytes(artifact(0.5))
    for art, name in (("fc", "rate"), ("a", "next")):
        assert (
            run(capsys, "ml", "publish", str(tmp / f"{art}.rcml"), "--name", name, "--index", d)[0]
            == 0
        )
        assert run(capsys, "ml", "promote", name, "1", "--index", d)[0] == 0
    _history(tmp / "history.jsonl")
    code, _, err = run(capsys, "ml", "serve", "--index", d, "--model", "next", "--plain-http",
                       "--scaling", "rate")  # fmt: skip
    assert code == 2 and "--per-worker-rps" in err
    args = _serve_args(
        d, "--scaling", "rate", "--per-worker-rps", "50", "--history", str(tmp / "history.jsonl")
    )
    args.refresh = None
    handle, app, reg = start_gateway(args)
    try:
        with httpx.Client(base_url=handle.url(), timeout=30) as c:
            r = c.get("/v1/scaling", headers={"authorization": f"Bearer {tokens['admin']}"})
            assert r.status_code == 200, r.text
            hint = r.json()
            assert hint["workers"] >= 1 and hint["instances"] >= 1 and hint["reason"]
            for who in ("reader", "indexreader"):  # index.admin on the tenant, not read
                r = c.get("/v1/scaling", headers={"authorization": f"Bearer {tokens[who]}"})
                assert r.status_code == 404
            assert c.get("/v1/scaling").status_code == 401
    finally:
        handle.stop()
        reg.close()
