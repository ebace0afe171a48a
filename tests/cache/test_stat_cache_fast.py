"""The warm-check fast paths: a remembered action, blobs checked once, back-fills without fsync.

The property test is the one that matters: after any sequence of edits to an input tree, the
action key from a warm StatCache (fast path or not) equals the key computed from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.cache import (
    Action,
    BuildCache,
    Digest,
    LocalActionTier,
    LocalStore,
    StatCache,
    compute_action,
)
from registry_core.cache._statcache import _Table
from registry_core.errors import InvalidArgumentError
from registry_core.flags import FeatureFlags

ON = FeatureFlags(overrides={"INCREMENTAL_CACHE": True})
HOUR = 3600 * 10**9
ARGV = ["/bin/sh", "-c", "true"]


def aged(path: Path, data: bytes, back_ns: int = HOUR) -> Path:
    """``path`` holding ``data``, its mtime ``back_ns`` ago with a sub-second part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time_ns() - back_ns + 123_456_789
    os.utime(path, ns=(old, old))
    return path


def tree(root: Path, n: int = 12) -> Path:
    for i in range(n):
        aged(root / "src" / f"d{i % 3}" / f"f{i}.c", bytes([i]) * (i + 3))
    return root


def action(root: Path, sc: StatCache, **kw: Any) -> Action:
    kw.setdefault("inputs", ["src"])
    return compute_action(ARGV, cwd=root, stat_cache=sc, **kw)


def fresh_key(root: Path, **kw: Any) -> str:
    """The key computed with no remembered state at all."""
    return action(root, StatCache(None), **kw).key


def test_a_warm_check_reuses_the_remembered_action(tmp_path: Path) -> None:
    tree(tmp_path)
    sc = StatCache(tmp_path / "stat.bin")
    first = action(tmp_path, sc)  # hashes everything: not remembered (entries were new)
    second = action(tmp_path, sc)  # every digest trusted: remembered
    assert second.key == first.key and sc.hashed == 12 + 1  # the tool too
    third = action(tmp_path, sc)
    assert third is second  # the remembered object: no per-file lookup, no encoding
    assert sc.hashed == 13


def test_touch_change_add_remove_and_chmod_are_all_seen(tmp_path: Path) -> None:
    tree(tmp_path)
    sc = StatCache(tmp_path / "stat.bin")
    action(tmp_path, sc)
    base = action(tmp_path, sc).key
    f = tmp_path / "src" / "d1" / "f4.c"
    os.utime(f)  # touched: new mtime, same content: the same key, the file rehashed
    hashed = sc.hashed
    assert action(tmp_path, sc).key == base and sc.hashed == hashed + 1
    st0 = f.stat()
    f.write_bytes(b"\xff" + f.read_bytes()[1:])  # same size, mtime put back: ctime differs
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    changed = action(tmp_path, sc).key
    assert changed != base and changed == fresh_key(tmp_path)
    aged(tmp_path / "src" / "d2" / "new.c", b"new")
    added = action(tmp_path, sc).key
    assert added not in (base, changed) and added == fresh_key(tmp_path)
    (tmp_path / "src" / "d2" / "new.c").unlink()
    assert action(tmp_path, sc).key == changed
    f.chmod(0o755)  # the mode changes the ctime, and the executable bit is in the key
    after = action(tmp_path, sc)
    assert [i.path for i in after.inputs if i.is_executable] == ["src/d1/f4.c"]
    assert after.key == fresh_key(tmp_path) != changed


def test_argv_env_outputs_and_patterns_are_part_of_the_remembered_signature(
    tmp_path: Path,
) -> None:
    tree(tmp_path)
    sc = StatCache(tmp_path / "stat.bin")
    action(tmp_path, sc)
    base = action(tmp_path, sc).key
    env = {"PATH": os.environ.get("PATH", os.defpath), "CFLAGS": "-O2"}
    with_env = action(tmp_path, sc, env=["CFLAGS"], environ=env).key
    assert with_env != base
    assert action(tmp_path, sc, env=["CFLAGS"], environ={**env, "CFLAGS": "-O0"}).key != with_env
    assert action(tmp_path, sc, outputs=["out.o"]).key != base
    assert action(tmp_path, sc, inputs=["src/d0"]).key != base
    other = compute_action(["/bin/sh", "-c", "false"], inputs=["src"], cwd=tmp_path, stat_cache=sc)
    assert other.key != base
    assert action(tmp_path, sc).key == base


def test_racy_files_keep_the_action_from_being_remembered(tmp_path: Path) -> None:
    tree(tmp_path)
    f = tmp_path / "src" / "d0" / "f0.c"
    now = time.time_ns()
    os.utime(f, ns=(now, now - 5_000_000))  # written 5 ms before the recording: racy
    sc = StatCache(tmp_path / "stat.bin", granularity_ns=20_000_000)
    action(tmp_path, sc, now_ns=now)
    hashed = sc.hashed
    action(tmp_path, sc, now_ns=now)  # racy again: rehashed, not remembered
    assert sc.hashed == hashed + 1
    later = now + 10**9
    action(tmp_path, sc, now_ns=later)  # re-recorded later: no longer racy, but rehashed
    assert sc.hashed == hashed + 2
    remembered = action(tmp_path, sc, now_ns=later)  # all trusted now
    assert action(tmp_path, sc, now_ns=later) is remembered
    assert sc.hashed == hashed + 2


def test_forget_drops_remembered_actions(tmp_path: Path) -> None:
    tree(tmp_path)
    sc = StatCache(tmp_path / "stat.bin")
    action(tmp_path, sc)
    a = action(tmp_path, sc)
    sc.forget()
    b = action(tmp_path, sc)
    assert b is not a and b.key == a.key


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["touch", "rewrite", "same_size", "add", "remove", "chmod", "nothing"]),
        st.integers(0, 11),
        st.binary(min_size=1, max_size=16),
    ),
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=_EDITS)
def test_warm_keys_equal_fresh_keys_after_any_edits(
    tmp_path: Path, edits: list[tuple[str, int, bytes]]
) -> None:
    root = tmp_path / "t"
    shutil.rmtree(root, ignore_errors=True)
    tree(root)
    sc = StatCache(root / "stat.bin")
    action(root, sc)
    action(root, sc)
    for op, i, data in edits:
        files = sorted((root / "src").rglob("*.c"))
        f = files[i % len(files)]
        if op == "touch":
            os.utime(f)
        elif op == "rewrite":
            aged(f, data)
        elif op == "same_size":  # same size, the old mtime put back (only ctime tells)
            st0 = f.stat()
            old = f.read_bytes()
            f.write_bytes(bytes(b ^ 1 for b in old))
            os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))
        elif op == "add":
            aged(f.with_name(f"x{i}-{len(data)}.c"), data)
        elif op == "remove" and len(files) > 1:
            f.unlink()
        elif op == "chmod":
            f.chmod(f.stat().st_mode ^ 0o100)
        warm = action(root, sc)
        assert warm.key == fresh_key(root)
        assert action(root, sc).key == warm.key


# -- blobs checked once, back-fills ---------------------------------------------------------


def test_put_known_and_get_verified(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    data = b"payload" * 100
    h = hashlib.sha256(data).hexdigest()
    assert store.put_known("k", data, sha256=h, fsync=False)
    assert store.get_verified("k") == (data, h)
    with pytest.raises(InvalidArgumentError):
        store.put_known("k2", data, sha256="XYZ")
    # A wrong digest given by a caller names the object wrongly: the read check catches it.
    assert store.put_known("bad", b"other", sha256="0" * 64)
    assert store.get("bad") is None and store.corrupt == 1
    assert store.get_verified("missing") is None


def test_local_tier_returns_only_what_the_digest_names(tmp_path: Path) -> None:
    tier = LocalActionTier(LocalStore(tmp_path / "s"))
    assert tier.verifies_blobs is True
    d = Digest.of(b"right")
    tier.store.put("cas/" + d.hash, b"wrong")  # another value under the blob's key
    assert tier.get_blob(d) is None
    tier.put_blob(d, b"right")
    assert tier.get_blob(d) == b"right"
    tier.backfill({d.hash: b"right"}, "a" * 64, b"\x20\x00")
    assert tier.get_action("a" * 64) == b"\x20\x00"


def test_a_remote_hit_is_back_filled_before_run_returns(tmp_path: Path) -> None:
    """Any ActionTier as the remote: the hit is restored and the local tier holds the entry
    when run returns (the back-fill thread is joined)."""
    work = tmp_path / "w"
    aged(work / "in.txt", b"in")
    remote = LocalActionTier(LocalStore(tmp_path / "remote"), name="other")
    argv = [sys.executable, "-c", "open('out.bin','wb').write(bytes(range(256))*4000)"]
    kw: dict[str, Any] = {"inputs": ["in.txt"], "outputs": ["out.bin"], "cwd": work}
    a = BuildCache(LocalStore(tmp_path / "a", fsync=False), flags=ON)
    assert a.run(argv, remote=remote, **kw).stored
    (work / "out.bin").unlink()
    b = BuildCache(LocalStore(tmp_path / "b"), flags=ON)
    r = b.run(argv, remote=remote, **kw)
    assert r.hit and r.tier == "other"
    assert (work / "out.bin").read_bytes() == bytes(range(256)) * 4000
    (work / "out.bin").unlink()
    alone = BuildCache(LocalStore(tmp_path / "b"), flags=ON)
    assert alone.run(argv, **kw).tier == "local"
    assert (work / "out.bin").read_bytes() == bytes(range(256)) * 4000


def test_remembered_actions_are_bounded_by_files(tmp_path: Path) -> None:
    tree(tmp_path)
    sc = StatCache(tmp_path / "stat.bin", max_entries=5)  # 12 inputs: never remembered
    action(tmp_path, sc)
    a = action(tmp_path, sc)
    b = action(tmp_path, sc)
    assert a is not b and a.key == b.key
    big = StatCache(tmp_path / "stat2.bin")
    action(tmp_path, big, inputs=["src/d0"])
    first = action(tmp_path, big, inputs=["src/d0"])
    action(tmp_path, big, inputs=["src/d1"])
    action(tmp_path, big, inputs=["src/d1"])
    assert action(tmp_path, big, inputs=["src/d0"]) is first  # two kept side by side


# -- the stat file merged column by column ------------------------------------------------

_U64 = st.integers(0, (1 << 64) - 1)
_I64 = st.integers(-(1 << 63), (1 << 63) - 1)
_ROWS = st.dictionaries(
    st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=12).map(
        lambda s: "/" + s
    ),
    st.tuples(
        st.tuples(_U64, _U64, _U64, _I64, _I64),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        _I64,
    ),
    max_size=12,
)


@given(_ROWS, _ROWS, st.data())
def test_a_merged_table_is_the_dump_of_the_merged_rows(
    base: dict[str, Any], update: dict[str, Any], data: st.DataObject
) -> None:
    if base:  # some updates overwrite existing rows
        for path in data.draw(st.lists(st.sampled_from(sorted(base)), max_size=3)):
            update[path] = data.draw(_ROWS.filter(bool)).popitem()[1]
    table = _Table.parse(_Table.dump_rows(base))
    assert table is not None
    merged = table.merged(update)
    assert merged is not None
    assert merged == _Table.dump_rows({**base, **update})  # byte for byte, same order
