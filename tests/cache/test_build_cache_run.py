"""BuildCache.run: hits, misses, touched inputs, modes, failures, corruption, processes, remotes."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from registry_core.cache import (
    BuildCache,
    Digest,
    LocalActionTier,
    LocalStore,
    RedisActionTier,
    RedisStore,
    decode_action_result,
)
from registry_core.errors import CacheError
from registry_core.flags import FeatureFlags

PY = sys.executable
ON = FeatureFlags(overrides={"INCREMENTAL_CACHE": True})
OFF = FeatureFlags(overrides={"INCREMENTAL_CACHE": False})

# A build step: out.txt = upper-cased inputs; logs each real run to runs.log; prints to both.
STEP = textwrap.dedent(
    """
    import sys, os
    with open("runs.log", "a") as log:
        log.write("run\\n")
    data = b"".join(open(p, "rb").read() for p in sorted(sys.argv[1:]))
    with open("out.txt", "wb") as f:
        f.write(data.upper())
    with open("tool.sh", "wb") as f:
        f.write(b"#!/bin/sh\\necho hi\\n")
    os.chmod("tool.sh", 0o755)
    sys.stdout.write("built %d bytes\\n" % len(data))
    sys.stderr.write("warning: none\\n")
    sys.exit(int(os.environ.get("STEP_EXIT", "0")))
    """
)


def runs(work: Path) -> int:
    log = work / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def work(tmp_path: Path) -> Path:
    w = tmp_path / "work"
    w.mkdir()
    (w / "step.py").write_text(STEP)
    (w / "a.in").write_bytes(b"alpha\n")
    (w / "b.in").write_bytes(b"beta\n")
    return w


@pytest.fixture
def cache(tmp_path: Path) -> BuildCache:
    return BuildCache(LocalStore(tmp_path / "cache", fsync=False), flags=ON)


def step(cache: BuildCache, work: Path, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("environ", dict(os.environ))
    return cache.run(
        [PY, "step.py", "a.in", "b.in"],
        inputs=["*.in", "step.py"],
        outputs=["out.txt", "tool.sh"],
        env=["STEP_EXIT"],
        cwd=work,
        **kw,  # type: ignore[arg-type]
    )


def test_miss_then_hit_restores_outputs_and_replays_streams(cache: BuildCache, work: Path) -> None:
    first = step(cache, work)
    assert not first.hit and first.stored and first.exit_code == 0
    assert first.stdout == b"built 11 bytes\n" and first.stderr == b"warning: none\n"
    want = (work / "out.txt").read_bytes()
    (work / "out.txt").unlink()
    (work / "tool.sh").write_bytes(b"stale")
    os.chmod(work / "tool.sh", 0o644)
    second = step(cache, work)
    assert second.hit and second.tier == "local" and second.key == first.key
    assert second.stdout == first.stdout and second.stderr == first.stderr
    assert second.saved_s == pytest.approx(first.duration_s, abs=1e-6)
    assert second.outputs == ("out.txt", "tool.sh")
    assert (work / "out.txt").read_bytes() == want == b"ALPHA\nBETA\n"
    assert (work / "tool.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert runs(work) == 1
    assert cache.stats.runs == 2 and cache.stats.run_hits == 1


def test_modes_are_restored(cache: BuildCache, work: Path) -> None:
    step(cache, work)
    for name in ("out.txt", "tool.sh"):
        (work / name).unlink()
    assert step(cache, work).hit
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(work / "tool.sh").st_mode) == 0o777 & ~umask
    assert stat.S_IMODE(os.stat(work / "out.txt").st_mode) == 0o666 & ~umask
    assert os.access(work / "tool.sh", os.X_OK)


def test_touch_is_a_hit_and_one_byte_is_a_miss(cache: BuildCache, work: Path) -> None:
    step(cache, work)
    os.utime(work / "a.in")  # touched, same content
    assert step(cache, work).hit
    (work / "a.in").write_bytes(b"alphA\n")
    r = step(cache, work)
    assert not r.hit and (work / "out.txt").read_bytes() == b"ALPHA\nBETA\n"
    assert runs(work) == 2
    (work / "a.in").write_bytes(b"alpha\n")  # back: the first entry again
    assert step(cache, work).hit


def test_env_absent_and_empty_are_different_actions(cache: BuildCache, work: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STEP_EXIT"}
    step(cache, work, environ=env)
    assert not step(cache, work, environ={**env, "STEP_EXIT": "0"}).hit
    assert step(cache, work, environ={**env, "STEP_EXIT": "0"}).hit
    assert runs(work) == 2


def test_failures_are_not_cached_unless_asked(cache: BuildCache, work: Path) -> None:
    env = {**os.environ, "STEP_EXIT": "3"}
    r = step(cache, work, environ=env)
    assert r.exit_code == 3 and not r.stored
    assert not step(cache, work, environ=env).hit
    assert runs(work) == 2
    r = step(cache, work, environ=env, cache_failures=True)
    assert not r.hit and r.stored
    r = step(cache, work, environ=env, cache_failures=True)
    assert r.hit and r.exit_code == 3 and r.stderr == b"warning: none\n"
    assert not step(cache, work, environ=env).hit  # a cached failure is used only when asked
    assert runs(work) == 4


def test_a_missing_declared_output_is_an_error_not_an_entry(cache: BuildCache, work: Path) -> None:
    with pytest.raises(CacheError, match="missing"):
        cache.run([PY, "step.py", "a.in"], inputs=["a.in"], outputs=["never.txt"], cwd=work)
    assert LocalStore(cache.local.root).keys_lru() == []  # type: ignore[union-attr]


def test_an_output_over_the_bound_is_not_read_or_cached(tmp_path: Path, work: Path) -> None:
    cache = BuildCache(LocalStore(tmp_path / "small", max_bytes=2000, fsync=False), flags=ON)
    assert step(cache, work).stored  # about 450 bytes in all
    (work / "b.in").write_bytes(b"b" * 5000)  # out.txt: over the store's bound
    r = step(cache, work)
    assert r.exit_code == 0 and not r.stored and not step(cache, work).hit


def test_a_flipped_byte_in_a_stored_blob_is_a_miss_then_healed(
    cache: BuildCache, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    step(cache, work)
    store = cache.local
    assert store is not None
    out = Digest.of(b"ALPHA\nBETA\n")
    obj = store.root / "objects" / out.hash[:2] / out.hash[2:]
    data = bytearray(obj.read_bytes())
    data[3] ^= 0x20
    os.chmod(obj, 0o644)
    obj.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "registry_core.cache"):
        r = step(cache, work)
    assert not r.hit and r.stored and runs(work) == 2
    assert (work / "out.txt").read_bytes() == b"ALPHA\nBETA\n"
    assert step(cache, work).hit  # healed
    assert obj.read_bytes() == b"ALPHA\nBETA\n"


def test_a_missing_blob_makes_the_entry_a_miss(cache: BuildCache, work: Path) -> None:
    first = step(cache, work)
    tier = LocalActionTier(cache.local)  # type: ignore[arg-type]
    result = decode_action_result(tier.get_action(first.key))  # type: ignore[arg-type]
    tool = next(f for f in result.output_files if f.path == "tool.sh")
    tier.delete_blob(tool.digest)  # evicted, say: the AC entry stays
    assert tier.get_action(first.key) is not None
    r = step(cache, work)
    assert not r.hit and r.stored and runs(work) == 2
    assert step(cache, work).hit


def test_a_failed_restore_replaces_nothing(cache: BuildCache, work: Path) -> None:
    step(cache, work)
    (work / "out.txt").write_bytes(b"previous")
    (work / "tool.sh").unlink()
    (work / "tool.sh").mkdir()  # the second output cannot be written
    with pytest.raises(CacheError, match="directory"):
        step(cache, work)
    assert (work / "out.txt").read_bytes() == b"previous"  # the first was not replaced either
    assert sorted(p.name for p in work.iterdir() if ".rc-" in p.name) == []  # no temp files


def test_a_corrupt_action_entry_is_a_miss(cache: BuildCache, work: Path) -> None:
    first = step(cache, work)
    cache.local.put("ac/" + first.key, b"\x0bnot protobuf")  # type: ignore[union-attr]
    r = step(cache, work)
    assert not r.hit and runs(work) == 2
    assert step(cache, work).hit


def test_flag_off_runs_the_command_without_caching(tmp_path: Path, work: Path) -> None:
    cache = BuildCache(LocalStore(tmp_path / "c", fsync=False), flags=OFF)
    r1 = step(cache, work)
    r2 = step(cache, work)
    assert not r1.hit and not r2.hit and r2.exit_code == 0 and runs(work) == 2
    assert cache.stats.disabled_calls == 2 and len(cache.local) == 0  # type: ignore[arg-type]


def test_outputs_in_subdirectories_and_cwd_independence(tmp_path: Path) -> None:
    cache = BuildCache(LocalStore(tmp_path / "c", fsync=False), flags=ON)
    argv = [PY, "-c", "import os; os.makedirs('b/c', exist_ok=True); open('b/c/o','w').write('x')"]
    for name in ("w1", "w2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "in").write_text("same")
    r1 = cache.run(argv, inputs=["in"], outputs=["b/c/o"], cwd=tmp_path / "w1")
    r2 = cache.run(argv, inputs=["in"], outputs=["b/c/o"], cwd=tmp_path / "w2")
    assert not r1.hit and r2.hit and r1.key == r2.key  # another checkout, same key
    assert (tmp_path / "w2" / "b" / "c" / "o").read_text() == "x"


# -- two processes ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from registry_core.cache import BuildCache, LocalStore
    from registry_core.flags import FeatureFlags
    cache_dir, work = sys.argv[1], sys.argv[2]
    flags = FeatureFlags(overrides={"INCREMENTAL_CACHE": True})
    cache = BuildCache(LocalStore(cache_dir), flags=flags)
    argv = [sys.executable, "slow.py"]
    r = cache.run(argv, inputs=["in.txt", "slow.py"], outputs=["out.bin"], cwd=work)
    print(json.dumps({"hit": r.hit, "exit": r.exit_code}))
    """
)
# The command tells the test it started (a FIFO), then waits for the test's go (another FIFO).
SLOW = textwrap.dedent(
    """
    with open("runs.log", "a") as log:
        log.write("run\\n")
    with open("started.fifo", "w") as f:
        f.write("started\\n")
    with open("go.fifo") as f:
        f.read()
    with open("out.bin", "wb") as f:
        f.write(bytes(range(256)) * 4096)
    """
)


def test_two_processes_running_one_action_at_once(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "in.txt").write_text("input")
    (work / "slow.py").write_text(SLOW)
    os.mkfifo(work / "started.fifo")
    os.mkfifo(work / "go.fifo")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = [PY, str(script), str(tmp_path / "cache"), str(work)]
    a = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    with open(work / "started.fifo") as f:  # blocks until A's command runs (A holds the lock)
        assert f.read() == "started\n"
    b = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    with open(work / "go.fifo", "w") as f:  # blocks until A's command opens it
        f.write("go")
    out_a, _ = a.communicate(timeout=120)
    out_b, _ = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0
    results = sorted([json.loads(out_a), json.loads(out_b)], key=lambda r: r["hit"])
    assert results == [{"hit": False, "exit": 0}, {"hit": True, "exit": 0}]
    assert runs(work) == 1  # B waited for A's result instead of running (or racing) it
    assert (work / "out.bin").read_bytes() == bytes(range(256)) * 4096


# -- remote tier: a real redis-server --------------------------------------------------------


def test_remote_hit_backfills_the_local_tier(
    tmp_path: Path, work: Path, redis_server, prefix
) -> None:  # type: ignore[no-untyped-def]
    remote = RedisStore(redis_server.url, prefix=prefix)
    machine1 = BuildCache(LocalStore(tmp_path / "m1", fsync=False), remote, flags=ON)
    first = step(machine1, work)
    assert first.stored
    machine2 = BuildCache(LocalStore(tmp_path / "m2", fsync=False), remote, flags=ON)
    (work / "out.txt").unlink()
    r = step(machine2, work)
    assert r.hit and r.tier == "redis" and (work / "out.txt").read_bytes() == b"ALPHA\nBETA\n"
    alone = BuildCache(LocalStore(tmp_path / "m2", fsync=False), flags=ON)  # back-filled
    assert step(alone, work).tier == "local"
    assert runs(work) == 1


def test_a_corrupt_remote_blob_is_a_miss_and_is_overwritten(
    tmp_path: Path,
    work: Path,
    redis_server,
    prefix,  # type: ignore[no-untyped-def]
) -> None:
    store = RedisStore(redis_server.url, prefix=prefix)
    m1 = BuildCache(LocalStore(tmp_path / "m1", fsync=False), store, flags=ON)
    step(m1, work)
    # Valid in the store's own format (so RedisStore's check passes) but not the content the
    # digest names: the caller's digest check must catch it, and the rerun must overwrite it
    # (a HEAD-style has_blob would say it is there).
    store.put("cas/" + Digest.of(b"ALPHA\nBETA\n").hash, b"something else")
    tier = RedisActionTier(store)
    m2 = BuildCache(LocalStore(tmp_path / "m2", fsync=False), flags=ON)
    r = step(m2, work, remote=tier)
    assert not r.hit and r.stored
    m3 = BuildCache(LocalStore(tmp_path / "m3", fsync=False), flags=ON)
    assert step(m3, work, remote=tier).tier == "redis"  # healed remotely


def test_redis_going_down_mid_run_degrades_with_one_warning(
    tmp_path: Path,
    work: Path,
    private_redis,
    prefix,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    store = RedisStore(private_redis.url, prefix=prefix, timeout=1.0)
    cache = BuildCache(LocalStore(tmp_path / "c", fsync=False), store, flags=ON)
    # The command kills the server after the lookup, before the upload; it waits until the
    # port refuses connections, so the upload meets a dead server.
    killer = textwrap.dedent(
        f"""
        import os, signal, socket
        os.kill({private_redis.proc.pid}, signal.SIGKILL)
        while True:
            try:
                socket.create_connection(("127.0.0.1", {private_redis.port}), timeout=1).close()
            except OSError:
                break
        open("out.txt", "w").write("made")
        """
    )
    with caplog.at_level(logging.WARNING, "registry_core.cache"):
        r = cache.run([PY, "-c", killer], inputs=["a.in"], outputs=["out.txt"], cwd=work)
        assert r.exit_code == 0 and r.stored  # stored locally
        r2 = cache.run([PY, "-c", killer], inputs=["a.in"], outputs=["out.txt"], cwd=work)
        assert r2.hit and r2.tier == "local"
        step(cache, work)  # another action: the remote lookup fails too, no second warning
    private_redis.proc.wait()
    warnings = [m for m in caplog.messages if "remote cache tier 'redis' failed" in m]
    assert len(warnings) == 1
    assert cache.stats.remote_warnings >= 2


def test_a_remote_that_is_down_from_the_start(tmp_path: Path, work: Path) -> None:
    from _redis import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5, retries=0)
    cache = BuildCache(LocalStore(tmp_path / "c", fsync=False), store, flags=ON)
    r = step(cache, work)
    assert r.exit_code == 0 and r.stored and step(cache, work).hit


def test_kill_signal_exit_code(cache: BuildCache, work: Path) -> None:
    r = cache.run(
        [PY, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGTERM)})"],
        inputs=["a.in"],
        cwd=work,
    )
    assert r.exit_code == 128 + signal.SIGTERM and not r.stored


def test_any_action_tier_is_a_remote(tmp_path: Path, work: Path) -> None:
    """An ActionTier (here a second machine's local store, as a shared directory would be)."""
    shared = LocalActionTier(LocalStore(tmp_path / "shared", fsync=False), name="shared")
    m1 = BuildCache(LocalStore(tmp_path / "m1", fsync=False), shared, flags=ON)
    assert m1.remote is None and m1.action_remote is shared  # get/put stay local-only
    assert step(m1, work).stored
    m2 = BuildCache(LocalStore(tmp_path / "m2", fsync=False), shared, flags=ON)
    assert step(m2, work).tier == "shared"
    with pytest.raises(TypeError):
        BuildCache(LocalStore(tmp_path / "m3", fsync=False), object())  # type: ignore[arg-type]
