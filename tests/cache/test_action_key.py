"""The action key: every part counts, order does not where it should not, inputs as documented."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from registry_core.cache import cache_key, compute_action
from registry_core.cache._action import ACTION_SCHEMA, expand_inputs
from registry_core.errors import InvalidArgumentError

ENV = {"PATH": os.environ.get("PATH", os.defpath), "CC": "gcc"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.c").write_bytes(b"int a;\n")
    (tmp_path / "src" / "b.c").write_bytes(b"int b;\n")
    (tmp_path / "src" / ".hidden").write_bytes(b"h")
    (tmp_path / "README").write_bytes(b"r")
    return tmp_path


def key(tree: Path, **kw: object) -> str:
    args: dict[str, object] = {
        "inputs": ["src/*.c"],
        "outputs": ["out.o"],
        "env": ["CC"],
        "cwd": tree,
        "environ": ENV,
    }
    args.update(kw)
    argv = args.pop("argv", ["cc", "-c", "src/a.c"])
    return compute_action(argv, **args).key  # type: ignore[arg-type]


def test_each_part_changes_the_key(tree: Path) -> None:
    base = key(tree)
    assert key(tree) == base  # deterministic
    variants = {
        "argv": key(tree, argv=["cc", "-c", "src/b.c"]),
        "argv order": key(tree, argv=["cc", "src/a.c", "-c"]),
        "env value": key(tree, environ={**ENV, "CC": "clang"}),
        "env absent": key(tree, environ={"PATH": ENV["PATH"]}),
        "env empty": key(tree, environ={**ENV, "CC": ""}),
        "env names": key(tree, env=["CC", "CFLAGS"]),
        "input set": key(tree, inputs=["src/a.c"]),
        "outputs": key(tree, outputs=["out2.o"]),
        "more outputs": key(tree, outputs=["out.o", "out.d"]),
        "tool": key(tree, argv=["c++", "-c", "src/a.c"]),
    }
    assert len(set(variants.values()) | {base}) == len(variants) + 1, variants
    (tree / "src" / "a.c").write_bytes(b"int A;\n")  # one byte of content
    assert key(tree) != base
    (tree / "src" / "a.c").write_bytes(b"int a;\n")
    assert key(tree) == base
    os.chmod(tree / "src" / "a.c", 0o755)  # the executable bit
    assert key(tree) != base


def test_absent_and_empty_env_differ_but_unnamed_vars_do_not_count(tree: Path) -> None:
    base = key(tree)
    assert key(tree, environ={**ENV, "UNRELATED": "x"}) == base
    assert key(tree, env=["NOPE"]) != key(tree, env=["NOPE"], environ={**ENV, "NOPE": ""})


def test_order_of_inputs_outputs_and_env_names_does_not_count(tree: Path) -> None:
    a = key(tree, inputs=["src/a.c", "src/b.c"], outputs=["x", "y"], env=["CC", "PATH"])
    b = key(tree, inputs=["src/b.c", "src/a.c", "src/a.c"], outputs=["y", "x"], env=["PATH", "CC"])
    assert a == b
    assert key(tree, inputs=["src/*.c"]) == key(tree, inputs=["src/a.c", "src/b.c"])
    assert key(tree, inputs=["./src/../src/a.c", "src/b.c"]) == key(tree, inputs=["src/*.c"])


def test_the_key_is_the_documented_cache_key(tree: Path) -> None:
    """Recomputed from docs/cache.md with cache_key: schema, argv, tool, env, inputs, outputs."""
    tool = shutil.which("cc", path=ENV["PATH"])
    assert tool is not None
    tool_sha = hashlib.sha256(Path(tool).read_bytes()).hexdigest()
    inputs = [
        [p, False, hashlib.sha256((tree / p).read_bytes()).hexdigest()]
        for p in ("src/a.c", "src/b.c")
    ]
    expected = cache_key(
        ACTION_SCHEMA,
        ["cc", "-c", "src/a.c"],
        {"tool-sha256": tool_sha},
        {"CC": "gcc"},
        inputs,
        ["out.o"],
        namespace="action",
    )
    assert key(tree) == expected
    assert ACTION_SCHEMA == "registry-core/action-key/v1"


def test_the_tool_is_resolved_on_the_given_path(
    tree: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bin1 = tmp_path_factory.mktemp("bin1")
    bin2 = tmp_path_factory.mktemp("bin2")
    for d, body in ((bin1, b"#!/bin/sh\necho one\n"), (bin2, b"#!/bin/sh\necho two\n")):
        (d / "tool").write_bytes(body)
        os.chmod(d / "tool", 0o755)
    a = compute_action(["tool"], cwd=tree, environ={"PATH": str(bin1)})
    b = compute_action(["tool"], cwd=tree, environ={"PATH": str(bin2)})
    assert a.tool == str(bin1 / "tool") and b.tool == str(bin2 / "tool")
    assert a.key != b.key
    with pytest.raises(InvalidArgumentError, match="not found on PATH"):
        compute_action(["no-such-tool-here"], cwd=tree, environ={"PATH": str(bin1)})


def test_directories_are_walked_including_dot_files(tree: Path) -> None:
    assert expand_inputs(["src"], tree) == ["src/.hidden", "src/a.c", "src/b.c"]
    assert expand_inputs(["src/*"], tree) == ["src/a.c", "src/b.c"]  # glob: * skips dot-files
    assert expand_inputs(["**"], tree) == ["README", "src/.hidden", "src/a.c", "src/b.c"]


def test_outputs_reached_by_a_glob_are_not_inputs(tree: Path) -> None:
    (tree / "src" / "gen.c").write_bytes(b"generated")
    assert expand_inputs(["src/*.c"], tree, outputs=["src/gen.c"]) == ["src/a.c", "src/b.c"]
    with pytest.raises(InvalidArgumentError, match="both an input and an output"):
        expand_inputs(["src/gen.c"], tree, outputs=["src/gen.c"])


def test_symlinks_are_followed_to_files_and_refused_to_directories(tree: Path) -> None:
    (tree / "link.c").symlink_to("src/a.c")
    assert expand_inputs(["link.c"], tree) == ["link.c"]
    a = compute_action(["cc"], inputs=["link.c"], cwd=tree, environ=ENV)
    assert a.inputs[0].sha256 == hashlib.sha256(b"int a;\n").hexdigest()
    (tree / "dirlink").symlink_to("src")
    with pytest.raises(InvalidArgumentError, match="symlink to a directory"):
        expand_inputs(["dirlink"], tree)
    with pytest.raises(InvalidArgumentError, match="symlink to a directory"):
        expand_inputs(["."], tree)  # the walk meets it too
    (tree / "dangling").symlink_to("nowhere")
    with pytest.raises(InvalidArgumentError):
        expand_inputs(["dangling"], tree)


@pytest.mark.parametrize("pattern", ["/etc/passwd", "../x", "src/../../x", "", "a\x00b"])
def test_paths_outside_the_working_directory_are_refused(tree: Path, pattern: str) -> None:
    with pytest.raises(InvalidArgumentError):
        expand_inputs([pattern], tree)
    with pytest.raises(InvalidArgumentError):
        compute_action(["cc"], outputs=[pattern], cwd=tree, environ=ENV)


def test_a_pattern_matching_nothing_is_refused(tree: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="matched nothing"):
        expand_inputs(["src/*.rs"], tree)
    with pytest.raises(InvalidArgumentError):
        expand_inputs(["missing.c"], tree)


def test_special_files_are_refused(tree: Path) -> None:
    os.mkfifo(tree / "fifo")
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        expand_inputs(["fifo"], tree)


def test_the_cache_directory_is_excluded(tree: Path) -> None:
    (tree / ".cache").mkdir()
    (tree / ".cache" / "index").write_bytes(b"x")
    assert ".cache/index" not in expand_inputs(["."], tree, exclude=[str(tree / ".cache")])


def test_input_modes_are_recorded(tree: Path) -> None:
    os.chmod(tree / "src" / "b.c", stat.S_IRWXU)
    a = compute_action(["cc"], inputs=["src/*.c"], cwd=tree, environ=ENV)
    assert [(f.path, f.is_executable) for f in a.inputs] == [("src/a.c", False), ("src/b.c", True)]


def reference(patterns: list[str], root: Path) -> list[str]:
    """The documented rule spelled with the standard library: glob.glob, then walk dirs."""
    import glob

    out: set[str] = set()
    for pattern in patterns:
        for m in glob.glob(pattern, root_dir=root, recursive=True):
            full = root / m
            if full.is_dir():
                for dirpath, _dirs, names in os.walk(full):
                    rel = Path(dirpath).relative_to(root)
                    out.update(str(rel / n) if str(rel) != "." else n for n in names)
            else:
                out.add(os.path.normpath(m))
    return sorted(out)


GLOB_PATTERNS = [
    "**", "**/*", "**/*.c", "*.c", "*", ".*", "**/.*", "src/**", "src/**/*.c", "s*/**/c?.c",
    "src/*/", "**/sub", "src/[ab]*.c", "*/*/*", "src", "src/sub/../b1.c", "**/*.h", "src/**/**",
    ".hid/*", ".hid/**", "**/lib*", "**/", "*/", "src/", "src/sub/deep/",
]  # fmt: skip


@pytest.mark.parametrize("pattern", GLOB_PATTERNS)
def test_glob_semantics_are_pythons(tmp_path: Path, pattern: str) -> None:
    for rel in [
        "a.c", "b.h", ".top.c", "src/b1.c", "src/b2.c", "src/.e.c", "src/sub/c1.c",
        "src/sub/c2.h", "src/sub/deep/x.c", ".hid/d.c", ".hid/in/e.c", "src/.hd/f.c",
        "lib1/g.c", "src/lib2/h.c",
    ]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    want = reference([pattern], tmp_path)
    if not want:
        with pytest.raises(InvalidArgumentError):
            expand_inputs([pattern], tmp_path)
    else:
        assert expand_inputs([pattern], tmp_path) == want


def test_globs_refuse_symlinked_directories_glob_would_follow(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.c").write_bytes(b"x")
    (tmp_path / "link").symlink_to("real")
    for pattern in ("**/*.c", "l*/x.c", "li?k/*.c", "*", "link"):
        with pytest.raises(InvalidArgumentError, match="symlink to a directory"):
            expand_inputs([pattern], tmp_path)
    assert expand_inputs(["real/*.c"], tmp_path) == ["real/x.c"]
    assert expand_inputs(["link/x.c"], tmp_path) == ["link/x.c"]  # a file named through one
