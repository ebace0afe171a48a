"""``--eviction``: a real proxy (the shared upstream harness) with ``--eviction sieve`` parsed by
the CLI's own parser keeps its cache under a bound that forces evictions, through SIEVE; the
learned policy is refused while ML_LEARNED_EVICTION is off, and loads a model when it is on."""

from __future__ import annotations

import argparse

import httpx
import pytest
from _proxy_support import PROJECT, run

from registry_core.cli import main
from registry_core.cli._proxy import _eviction, add_proxy_parser
from registry_core.eviction import S3FIFOEviction, SieveEviction
from registry_core.flags import FeatureFlags
from registry_core.proxy import ProxyApp


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_proxy_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    args.flags = FeatureFlags(environ={})
    return args


def test_proxy_with_sieve_eviction_stays_under_its_bound(upstream, built, tmp_path):
    files = [p for b in built.values() for p in (b.wheel, b.sdist)]
    sizes = [p.stat().st_size for p in files]
    bound = max(sizes) + min(sizes)  # never room for all four
    args = _parse(
        ["proxy", "--upstream", upstream.base, "--cache-dir", str(tmp_path / "c"),
         "--max-cache-bytes", str(bound), "--eviction", "sieve"]
    )  # fmt: skip
    chosen = _eviction(args)
    assert isinstance(chosen["eviction"], SieveEviction)
    app = ProxyApp(
        args.upstream, args.cache_dir, verify=upstream.ca, max_cache_bytes=bound, **chosen
    )

    async def main_():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proxy.test"
        ) as c:
            out = []
            for p in files + files[:1]:
                out.append(await c.get(f"/files/{PROJECT}/{p.name}"))
                assert app.stats.cache_bytes <= bound
        await app.aclose()
        return out

    rs = run(main_())
    assert [r.content for r in rs] == [p.read_bytes() for p in files + files[:1]]
    assert app.stats.evictions >= 2 and app.cache.policy is chosen["eviction"]
    assert len(app.cache.policy) == len(app.cache._sizes)
    on_disk = sum(f.stat().st_size for f in (tmp_path / "c" / "files").rglob("*") if f.is_file())
    assert on_disk == app.cache.total <= bound


def test_eviction_choices_from_the_command_line(tmp_path):
    base = ["proxy", "--upstream", "https://pypi.org", "--cache-dir", str(tmp_path)]
    assert _eviction(_parse(base)) == {}  # LRU: the app's default
    s3 = _eviction(_parse([*base, "--eviction", "s3fifo", "--max-cache-bytes", "1MiB"]))
    assert isinstance(s3["eviction"], S3FIFOEviction)
    assert s3["eviction"].capacity_bytes == 1 << 20


def test_learned_is_refused_while_its_flag_is_off(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REGISTRY_CORE_FLAGS", raising=False)
    argv = ["proxy", "--upstream", "https://pypi.org", "--cache-dir", str(tmp_path),
            "--eviction", "learned"]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "serving on" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("registry-core proxy: error: "), err
    assert "ML_LEARNED_EVICTION" in err[0]


def test_learned_with_the_flag_on_loads_its_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REGISTRY_CORE_FLAGS", "ML_LEARNED_EVICTION=on")
    argv = ["proxy", "--upstream", "https://pypi.org", "--cache-dir", str(tmp_path),
            "--eviction", "learned", "--eviction-model", str(tmp_path / "none.rcml")]  # fmt: skip
    assert main(argv) == 2  # past the flag gate: the model file is what is missing
    err = capsys.readouterr().err
    assert "--eviction-model" in err and "no such file" in err and "ML_LEARNED_EVICTION" not in err
    pytest.importorskip("numpy", reason="the ml extra")
    args = _parse([*argv[:-2]])
    args.flags = FeatureFlags(environ={"REGISTRY_CORE_FLAGS": "ML_LEARNED_EVICTION=on"})
    from registry_core.ml._learned_cache import LearnedEviction

    assert isinstance(_eviction(args)["eviction"], LearnedEviction)
    bad = tmp_path / "bad.rcml"
    bad.write_bytes(b"RCML not a model")
    args.eviction_model = str(bad)
    from registry_core.errors import ModelError

    with pytest.raises(ModelError):
        _eviction(args)
