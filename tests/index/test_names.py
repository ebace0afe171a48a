"""Project names and distribution filenames: PEP 503 / 508 / 427 / 625 grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from registry_core.errors import UploadRejectedError
from registry_core.index import ParsedFilename, normalize, parse_filename
from registry_core.index._names import (
    canonical_version,
    is_valid_name,
    sdist_filename,
    version_key,
    wheel_filename,
)

# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Django", "django"),
        ("zope.interface", "zope-interface"),
        ("Foo__Bar--Baz..Qux", "foo-bar-baz-qux"),
        ("a-_.b", "a-b"),
        ("already-normal", "already-normal"),
    ],
)
def test_normalize_examples(name: str, expected: str) -> None:
    assert normalize(name) == expected


_word = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=1,
    max_size=8,
)
_sep = st.text(alphabet="-_.", min_size=1, max_size=3)
_names = st.builds(
    lambda words, seps: "".join(w + s for w, s in zip(words, seps, strict=False)) + words[-1],
    st.lists(_word, min_size=1, max_size=5),
    st.lists(_sep, min_size=5, max_size=5),
)


@given(_names)
def test_normalize_is_idempotent(name: str) -> None:
    once = normalize(name)
    assert normalize(once) == once
    assert is_valid_name(name) and is_valid_name(once)


@given(st.lists(_word, min_size=1, max_size=5), st.data())
def test_normalize_equivalence_classes(words: list[str], data: st.DataObject) -> None:
    """Names differing only in separators (any run of -_.) and case normalize alike."""
    seps_a = [data.draw(_sep) for _ in words[1:]]
    seps_b = [data.draw(_sep) for _ in words[1:]]
    a = words[0] + "".join(s + w for s, w in zip(seps_a, words[1:], strict=False))
    b = words[0].swapcase() + "".join(
        s + w.upper() for s, w in zip(seps_b, words[1:], strict=False)
    )
    assert normalize(a) == normalize(b) == "-".join(w.lower() for w in words)


@given(st.lists(_word, min_size=2, max_size=3))
def test_different_words_stay_different(words: list[str]) -> None:
    joined = "-".join(words)
    glued = "".join(words)
    assert normalize(joined) != normalize(glued)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("a", True),
        ("A1", True),
        ("foo.bar_baz-qux", True),
        ("-foo", False),
        ("foo-", False),
        ("foo bar", False),
        ("", False),
        ("föö", False),
        ("foo/bar", False),
    ],
)
def test_is_valid_name(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid


# -- versions ----------------------------------------------------------------------------------


def test_canonical_version() -> None:
    assert canonical_version("1.0.0") == "1.0.0"
    assert canonical_version("1.0RC1") == "1.0rc1"
    assert canonical_version("v2.0") == "2.0"
    with pytest.raises(UploadRejectedError, match="not a valid PEP 440 version"):
        canonical_version("not-a-version")


def test_version_key_orders_pep440() -> None:
    versions = ["1.0", "1.0rc1", "0.9", "1.0.post1", "1.0.dev0", "10.0"]
    assert sorted(versions, key=version_key) == [
        "0.9",
        "1.0.dev0",
        "1.0rc1",
        "1.0",
        "1.0.post1",
        "10.0",
    ]


# -- filenames ---------------------------------------------------------------------------------


def test_parse_wheel() -> None:
    p = parse_filename("Foo_Bar-1.0-py3-none-any.whl")
    assert p == ParsedFilename("foo-bar", "1.0", "wheel", frozenset({"py3-none-any"}), None)


def test_parse_wheel_build_tag_and_compressed_tags() -> None:
    p = parse_filename("pkg-2.0RC1-1abc-py2.py3-none-any.whl")
    assert p.project == "pkg"
    assert p.version == "2.0rc1"
    assert p.build == "1abc"
    assert p.tags == {"py2-none-any", "py3-none-any"}
    plat = parse_filename("numpy-2.1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert plat.tags == {
        "cp312-cp312-manylinux_2_17_x86_64",
        "cp312-cp312-manylinux2014_x86_64",
    }


@pytest.mark.parametrize(
    ("filename", "project", "version"),
    [
        ("foo_bar-1.0.tar.gz", "foo-bar", "1.0"),
        ("Foo-Bar-1.0.post2.tar.gz", "foo-bar", "1.0.post2"),  # legacy: dashes in the name
        ("legacy-0.1.zip", "legacy", "0.1"),
    ],
)
def test_parse_sdist(filename: str, project: str, version: str) -> None:
    p = parse_filename(filename)
    assert (p.project, p.version, p.kind, p.tags, p.build) == (
        project,
        version,
        "sdist",
        frozenset(),
        None,
    )


@pytest.mark.parametrize(
    "filename",
    [
        "",
        "foo-1.0.exe",
        "foo-1.0.tar.bz2",
        "foo-1.0.egg",
        "foo.whl",
        "foo-1.0-py3-none.whl",  # too few parts
        "foo-1.0-1-2-py3-none-any.whl",  # too many parts
        "foo-notaversion-py3-none-any.whl",
        "foo-1.0-x-py3-none-any.whl",  # build tag must start with a digit
        "foo__bar-1.0-py3-none-any.whl",
        "-foo-1.0-py3-none-any.whl",
        "foo-1.0-py3..py2-none-any.whl",  # empty tag component
        "foo-1.0-py3-none-any!.whl",
        "foo-notaversion.tar.gz",
        "foo.tar.gz",
        "-1.0.tar.gz",
        "../evil-1.0.tar.gz",
        "dir/evil-1.0.tar.gz",
        "dir\\evil-1.0.tar.gz",
        ".hidden-1.0.tar.gz",
        "nul\x00-1.0.tar.gz",
        "sp ace-1.0.tar.gz",
        "ünï-1.0.tar.gz",
        "a" * 250 + "-1.0.tar.gz",
    ],
)
def test_bad_filenames_are_rejected(filename: str) -> None:
    with pytest.raises(UploadRejectedError) as info:
        parse_filename(filename)
    assert info.value.status == 400
    assert str(info.value)


def test_non_str_filename() -> None:
    with pytest.raises(UploadRejectedError, match="must be a str"):
        parse_filename(b"foo-1.0.tar.gz")  # type: ignore[arg-type]


# -- round trips -------------------------------------------------------------------------------

_versions = st.builds(
    lambda rel, pre, post, dev: ".".join(map(str, rel)) + pre + post + dev,
    st.lists(st.integers(0, 300), min_size=1, max_size=4),
    st.sampled_from(["", "a1", "b2", "rc3", "RC1", "alpha4"]),
    st.sampled_from(["", ".post1", "-5"]),
    st.sampled_from(["", ".dev0", ".dev7"]),
)
_tag_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)
# an interpreter tag is an identifier (py3, cp312, pp310...)
_py_tag = st.builds(lambda a, b: a + b, st.sampled_from(["py", "cp", "pp", "ip"]), _tag_part)


@given(
    _names,
    _versions,
    st.lists(_py_tag, min_size=1, max_size=3, unique=True),
    _tag_part,
    st.lists(_tag_part, min_size=1, max_size=2, unique=True),
    st.one_of(
        st.none(),
        st.builds(lambda n, s: f"{n}{s}", st.integers(0, 99), st.sampled_from(["", "a", "_x"])),
    ),
)
def test_wheel_filename_round_trip(
    name: str, version: str, pys: list[str], abi: str, plats: list[str], build: str | None
) -> None:
    filename = wheel_filename(name, version, ".".join(pys), abi, ".".join(plats), build)
    p = parse_filename(filename)
    assert p.project == normalize(name)
    assert Version(p.version) == Version(version)
    assert p.version == str(Version(version))
    assert p.kind == "wheel"
    assert p.build == build
    assert p.tags == {f"{py}-{abi}-{plat}" for py in pys for plat in plats}


@given(_names, _versions, st.sampled_from([".tar.gz", ".zip"]))
def test_sdist_filename_round_trip(name: str, version: str, ext: str) -> None:
    filename = sdist_filename(name, version, ext)
    p = parse_filename(filename)
    assert (p.project, p.version, p.kind) == (normalize(name), str(Version(version)), "sdist")
    # the parse is stable: formatting the parsed fields again gives the same filename
    assert sdist_filename(p.project, p.version, ext) == filename
