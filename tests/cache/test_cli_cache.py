"""``registry-core cache run | stats | gc | clear`` in a real process, as a shell would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from registry_core.cli._cache import parse_size
from registry_core.errors import InvalidArgumentError

# The command table as cli/_main.py builds it, with the cache commands added (until the lead
# registers add_cache_parser there), and _main's one-line error handling.
DRIVER = textwrap.dedent(
    """
    import argparse, sys
    from registry_core.cli._main import _load_flags, _one_line_errors, _Parser
    from registry_core.cli._cache import add_cache_parser
    parser = _Parser(prog="registry-core")
    add_cache_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:])
    try:
        with _one_line_errors(args.command_name):
            args.flags = _load_flags()
            code = int(args.func(args) or 0)
    except SystemExit as exc:
        code = int(exc.code or 0)
    sys.exit(code)
    """
)


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("hello\n")

    def run(*argv: str, flags: str = "INCREMENTAL_CACHE=on", **env: str):  # type: ignore[no-untyped-def]
        environ = {
            **os.environ,
            "REGISTRY_CORE_FLAGS": flags,
            "REGISTRY_CORE_CACHE_DIR": str(tmp_path / "cache"),
            **env,
        }
        return subprocess.run(
            [sys.executable, str(driver), *argv],
            cwd=work,
            env=environ,
            capture_output=True,
            timeout=120,
        )

    run.work = work  # type: ignore[attr-defined]
    return run


COPY = [
    "cache", "run", "--input", "*.txt", "--output", "out.txt", "--",
    sys.executable, "-c",
    "import sys; d = open('in.txt').read(); open('out.txt', 'w').write(d.upper()); "
    "print('copied'); sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)",
]  # fmt: skip


def test_run_miss_then_hit(cli) -> None:  # type: ignore[no-untyped-def]
    first = cli(*COPY)
    assert first.returncode == 0, first.stderr
    assert first.stdout == b"copied\n"  # passed through
    assert b"registry-core cache: miss" in first.stderr and b"cached" in first.stderr
    (cli.work / "out.txt").unlink()
    second = cli(*COPY)
    assert second.returncode == 0 and second.stdout == b"copied\n"  # replayed
    assert b"hit (local), saved" in second.stderr
    assert (cli.work / "out.txt").read_text() == "HELLO\n"


def test_exit_status_passes_through(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(*COPY, "7")
    assert r.returncode == 7 and b"not cached" in r.stderr
    assert cli(*COPY, "7").returncode == 7
    failing = [*COPY[:2], "--cache-failures", *COPY[2:], "7"]
    assert cli(*failing).returncode == 7
    hit = cli(*failing)
    assert hit.returncode == 7 and b"hit" in hit.stderr


def test_flag_off_runs_and_says_how_to_turn_it_on(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(*COPY, "3", flags="INCREMENTAL_CACHE=off")
    assert r.returncode == 3 and r.stdout == b"copied\n"
    assert b"INCREMENTAL_CACHE is off" in r.stderr and b"REGISTRY_CORE_FLAGS" in r.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cache", "run", "--input", "*.txt"], b"no command given"),
        (["cache", "run", "--input", "../x", "--", "true"], b"outside the working directory"),
        (["cache", "run", "--input", "*.nope", "--", "true"], b"matched nothing"),
        (["cache", "run", "--", "no-such-command-xyz"], b"not found on PATH"),
        (["cache", "run", "--remote", "ftp://x", "--", "true"], b"--remote"),
    ],
)
def test_errors_are_one_line_and_exit_2(cli, argv: list[str], message: bytes) -> None:  # type: ignore[no-untyped-def]
    r = cli(*argv)
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1 and message in r.stderr, r.stderr
    assert r.stderr.startswith(b"registry-core cache run: error:")


def test_stats_gc_clear(cli) -> None:  # type: ignore[no-untyped-def]
    assert b"no cache at" in cli("cache", "stats").stdout
    cli(*COPY)
    cli(*COPY)
    doc = json.loads(cli("cache", "stats", "--json").stdout)
    assert doc["exists"] and doc["hits"] == 1 and doc["misses"] == 1 and doc["actions"] == 1
    assert doc["blobs"] == 2 and doc["bytes"] > 0 and doc["stat_entries"] >= 2
    text = cli("cache", "stats").stdout.decode()
    assert "2: 1 hits, 1 misses (50% hits)" in text
    gc = cli("cache", "gc", "--max-size", "1")
    assert gc.returncode == 0 and b"removed 3 object(s)" in gc.stdout
    cli(*COPY)
    cleared = cli("cache", "clear")
    assert cleared.returncode == 0 and b"cleared 3 key(s)" in cleared.stdout
    doc = json.loads(cli("cache", "stats", "--json").stdout)
    assert doc["actions"] == 0 and doc["hits"] == 0
    assert cli("cache", "gc", "--max-size", "lots").returncode == 2


def test_run_with_a_redis_remote(cli, redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    remote = ["--remote", redis_server.url]
    argv = [*COPY[:2], *remote, *COPY[2:]]
    assert cli(*argv).returncode == 0
    other = cli(*argv, REGISTRY_CORE_CACHE_DIR=str(tmp_path / "elsewhere"))
    assert other.returncode == 0 and b"hit (redis)" in other.stderr, other.stderr


def test_parse_size() -> None:
    assert parse_size("123") == 123
    assert parse_size("1K") == 1024 and parse_size("2GiB") == 2 << 30
    assert parse_size("1.5m") == 3 << 19
    for bad in ("", "-1", "0", "1X", "G"):
        with pytest.raises(InvalidArgumentError):
            parse_size(bad)
