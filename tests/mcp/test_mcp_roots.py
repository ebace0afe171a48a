"""Path confinement of the MCP file tools (registry_core.mcp._roots.Roots): '..', absolute
paths elsewhere, symlinks out, NUL, size bounds, atomic writes; a property test that whatever
path string comes in, the answer is a refusal or a real path inside a root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import InvalidArgumentError, PermissionDeniedError
from registry_core.mcp import Roots


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"A" * 10)
    (root / "sub" / "b.bin").write_bytes(b"B" * 10)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"S")
    return root, outside


def test_relative_and_absolute_inside(tree) -> None:
    root, _ = tree
    r = Roots([root])
    assert r.resolve("a.bin") == (root / "a.bin").resolve()
    assert r.resolve("sub/b.bin") == (root / "sub" / "b.bin").resolve()
    assert r.resolve(str(root / "sub" / "b.bin")) == (root / "sub" / "b.bin").resolve()
    assert r.read("a.bin", 10) == b"A" * 10


@pytest.mark.parametrize(
    "path",
    ["../outside/secret", "sub/../a.bin", "sub/../../outside/secret", "..", "sub\\..\\a.bin"],
)
def test_dotdot_refused_even_inside(tree, path: str) -> None:
    root, _ = tree
    with pytest.raises(PermissionDeniedError, match=r"'\.\.'"):
        Roots([root]).resolve(path)


def test_absolute_elsewhere_refused(tree) -> None:
    root, outside = tree
    r = Roots([root])
    for p in (str(outside / "secret"), "/etc/passwd", str(root) + "x/a.bin"):
        with pytest.raises(PermissionDeniedError, match="outside"):
            r.resolve(p)


def test_symlinks_out_refused_in_allowed(tree) -> None:
    root, outside = tree
    (root / "link-out").symlink_to(outside / "secret")
    (root / "dir-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "a.bin")
    r = Roots([root])
    for p in ("link-out", "dir-out/secret"):
        with pytest.raises(PermissionDeniedError, match="leads outside"):
            r.resolve(p)
    assert r.resolve("link-in") == (root / "a.bin").resolve()
    with pytest.raises(PermissionDeniedError, match="leads outside"):
        r.resolve("dir-out/new", write=True)
    with pytest.raises(PermissionDeniedError, match="symlink"):
        r.resolve("link-in", write=True)
    assert (outside / "secret").read_bytes() == b"S"


def test_bad_strings_and_no_roots(tree) -> None:
    root, _ = tree
    r = Roots([root])
    for bad in ("", "a\x00b", "x" * 5000):
        with pytest.raises(InvalidArgumentError):
            r.resolve(bad)
    with pytest.raises(InvalidArgumentError, match="not an existing regular file"):
        r.resolve("sub")
    with pytest.raises(InvalidArgumentError, match="not an existing regular file"):
        r.resolve("missing")
    with pytest.raises(PermissionDeniedError, match="no roots"):
        Roots([]).resolve("a.bin")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        Roots([root / "a.bin"])


def test_size_bound_and_write(tree) -> None:
    root, _ = tree
    r = Roots([root])
    with pytest.raises(InvalidArgumentError, match="over the 9-byte limit"):
        r.read("a.bin", 9)
    out = r.write("sub/new.bin", b"N" * 3)
    assert out == (root / "sub" / "new.bin").resolve() and out.read_bytes() == b"NNN"
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        r.write("nodir/new.bin", b"x")
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        r.write("sub", b"x")
    assert sorted(os.listdir(root / "sub")) == ["b.bin", "new.bin"]  # no temp file left


def test_several_roots(tree, tmp_path) -> None:
    root, outside = tree
    r = Roots([root, outside])
    assert r.resolve(str(outside / "secret")) == (outside / "secret").resolve()
    assert r.resolve("a.bin") == (root / "a.bin").resolve()  # relative: the first root


_PIECES = st.sampled_from(["..", ".", "a.bin", "sub", "b.bin", "", "x", "/", "\\", "~", "%2e%2e"])


@given(st.lists(_PIECES, max_size=8).map("/".join), st.booleans(), st.booleans())
def test_property_inside_or_refused(
    tmp_path_factory, path: str, absolute: bool, write: bool
) -> None:
    base = tmp_path_factory.getbasetemp() / "prop"
    root = base / "root"
    if not root.exists():
        (root / "sub").mkdir(parents=True)
        (root / "a.bin").write_bytes(b"A")
        (root / "sub" / "b.bin").write_bytes(b"B")
        (base / "b.bin").write_bytes(b"outside")
    if absolute:
        path = str(base) + "/" + path
    real_root = Path(os.path.realpath(root))
    try:
        got = Roots([root]).resolve(path, write=write)
    except (PermissionDeniedError, InvalidArgumentError):
        return
    assert got == real_root or real_root in got.parents
