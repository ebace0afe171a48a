"""warm(): requirements parsing (comments, continuations, -r, --hash, refused options), the
choice of one file for this interpreter (tag order, sdist fallback, requires-python, yanked,
pre-releases), and a real warm run against our index: N, then N+1 as a delta, then cached."""

from __future__ import annotations

import pytest
from _proxy_support import PROJECT
from packaging.specifiers import SpecifierSet

from registry_core.errors import InvalidArgumentError
from registry_core.index import SimpleFile
from registry_core.proxy import parse_requirements, warm
from registry_core.proxy._select import choose_file, dist_info

H = "a" * 64


def test_parse_lines_comments_continuations_hashes(tmp_path):
    inner = tmp_path / "inner.txt"
    inner.write_text("six==1.16.0  # pinned\n")
    main = tmp_path / "req.txt"
    main.write_text(
        "# a comment\n"
        "\n"
        "requests>=2 ; python_version >= '3'\n"
        f"idna==3.7 \\\n    --hash=sha256:{H}\n"
        "-r inner.txt\n"
        "Plain_Name\n"
    )
    reqs = parse_requirements(main)
    assert [r.text for r in reqs] == [
        "requests>=2 ; python_version >= '3'",
        "idna==3.7",
        "six==1.16.0",
        "Plain_Name",
    ]
    assert reqs[1].hashes == frozenset({H}) and reqs[1].line == 4
    assert parse_requirements(["a==1", "# x", "b"])[1].text == "b"


@pytest.mark.parametrize(
    "line",
    [
        "-i https://example.org/simple",
        "--extra-index-url https://example.org/simple",
        "-e .",
        "-c constraints.txt",
        "pkg @ https://example.org/pkg.whl",
        "--frobnicate",
        "pkg==1 --hash=md5:abc",
        "-r",
    ],
)
def test_refused_lines_name_the_line(line):
    with pytest.raises(InvalidArgumentError, match="<lines>:2"):
        parse_requirements(["ok==1", line])


def test_missing_requirements_file(tmp_path):
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        parse_requirements(tmp_path / "nope.txt")


def test_include_loop_is_bounded(tmp_path):
    (tmp_path / "a.txt").write_text("-r a.txt\n")
    with pytest.raises(InvalidArgumentError, match="deeply"):
        parse_requirements(tmp_path / "a.txt")


def _f(name: str, **kw) -> SimpleFile:
    return SimpleFile(name, f"https://x/{name}", {"sha256": H}, **kw)


TAGS = ["cp311-cp311-manylinux_2_17_x86_64", "cp311-abi3-manylinux_2_17_x86_64", "py3-none-any"]


def test_choose_prefers_best_tag_then_sdist():
    files = [
        _f("p-1.0.tar.gz"),
        _f("p-1.0-py3-none-any.whl"),
        _f("p-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"),
        _f("p-1.0-cp39-cp39-win_amd64.whl"),
    ]
    pick = choose_file(files, SpecifierSet(""), python_version="3.11.4", tags=TAGS)
    assert pick.filename == "p-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"
    only = choose_file(files[:1] + files[3:], SpecifierSet(""), python_version="3.11", tags=TAGS)
    assert only.filename == "p-1.0.tar.gz"


def test_choose_version_python_yanked_prerelease():
    files = [
        _f("p-1.0.tar.gz"),
        _f("p-1.1.tar.gz", requires_python=">=3.12"),
        _f("p-1.2.tar.gz", yanked="broken"),
        _f("p-2.0rc1.tar.gz"),
    ]
    spec = SpecifierSet("")
    assert choose_file(files, spec, python_version="3.11.4", tags=TAGS).filename == "p-1.0.tar.gz"
    pinned = SpecifierSet("==1.2")
    assert choose_file(files, pinned, python_version="3.11", tags=TAGS).filename == "p-1.2.tar.gz"
    pre = SpecifierSet(">=2.0rc1")
    assert choose_file(files, pre, python_version="3.11", tags=TAGS).filename == "p-2.0rc1.tar.gz"
    assert choose_file(files, SpecifierSet(">5"), python_version="3.11", tags=TAGS) is None


def test_dist_info():
    w = dist_info("Demo_Pkg-1.0-py3-none-any.whl")
    assert w.project == "demo-pkg" and str(w.version) == "1.0" and w.kind == "wheel"
    assert w.tags == frozenset({"py3-none-any"})
    assert dist_info("demo-1.0.tar.gz").kind == "sdist"
    assert dist_info("nonsense.whl") is None and dist_info("x.exe") is None


def test_warm_then_delta_then_cached(upstream, built, tmp_path):
    cache = tmp_path / "cache"
    kw = {"upstream": upstream.base, "cache_dir": cache, "verify": upstream.ca}
    first = warm([f"{PROJECT}==1.0"], **kw)
    assert first.ok, first.failed
    ((name, moved, full, how),) = first.fetched
    # first_downloads="auto" (the default) with no throughput measured yet (a new proxy, and
    # this wheel is far under the 256 KiB a sample needs): a plain GET, never an EXPANDED
    # patch, whatever earlier tests left precomputed on the shared upstream
    assert name == built["1.0"].wheel.name and how == "full" and moved == full > 0
    req = tmp_path / "req.txt"
    req.write_text(f"{PROJECT}==1.1\nnot-on-upstream-proj==1\nmarked==1; python_version < '3'\n")
    second = warm(req, **kw)
    ((name, moved, full, how),) = second.fetched
    assert name == built["1.1"].wheel.name and how == "delta" and moved < full // 2
    assert [f[0] for f in second.failed] == [f"not-on-upstream-proj==1 ({req}:2)"]
    assert second.skipped == ["marked==1; python_version < '3'"] and not second.ok
    third = warm([f"{PROJECT}==1.1"], **kw)
    assert third.fetched[0][3] == "cached" and third.fetched[0][1] < 4096  # just the page
    assert third.fetched[0][2] == built["1.1"].wheel.stat().st_size
    assert (cache / "files" / PROJECT / built["1.1"].wheel.name).read_bytes() == (
        built["1.1"].wheel.read_bytes()
    )
