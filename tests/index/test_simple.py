"""The Simple API renderers, parsers and Accept negotiation (sans-IO, no sockets)."""

from __future__ import annotations

import json

import pytest

from registry_core.errors import InvalidArgumentError, UpstreamError
from registry_core.index._model import FileRecord
from registry_core.index._simple import (
    HTML_V1,
    JSON_V1,
    MAX_FILES,
    SimpleFile,
    SimpleProject,
    negotiate,
    parse_index,
    parse_project,
    render_index,
    render_project,
    simple_file,
)

SHA = "ab" * 32
META = "cd" * 32
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)


def _file(**over):
    base = dict(
        filename="demo-1.0-py3-none-any.whl",
        url="https://idx.test/demo/demo-1.0-py3-none-any.whl",
        hashes={"sha256": SHA},
        requires_python=">=3.8,<4",
        yanked=False,
        core_metadata={"sha256": META},
        size=1234,
        upload_time="2024-05-01T12:00:00.123456Z",
    )
    base.update(over)
    return SimpleFile(**base)


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "text/html"),
        ("", "text/html"),
        (PIP_ACCEPT, JSON_V1),
        ("application/vnd.pypi.simple.v1+html", HTML_V1),
        ("text/html", "text/html"),
        ("*/*", "text/html"),  # curl, browsers: what PyPI gives them
        ("application/*", HTML_V1),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.latest+html", HTML_V1),
        ("application/vnd.pypi.simple.v1+json;q=0, */*", "text/html"),
        ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.6", JSON_V1),
        ("text/html;q=0.7, application/vnd.pypi.simple.v1+json;q=0.6", "text/html"),
        (f"{HTML_V1};q=0.2, {JSON_V1};q=0.2", JSON_V1),
        ("TEXT/HTML", "text/html"),
        ("text/*;q=0.3", "text/html"),
        ("text/html;q=0", None),
        ("application/json", None),
        ("application/vnd.pypi.simple.v2+json", None),
        ("garbage", None),
        ("text/html;q=abc", None),
        ("text/html;q=7", None),
    ],
)
def test_negotiate(accept, media):
    assert negotiate(accept) == media


def test_negotiate_long_header_is_bounded():
    # thousands of ranges: only the first 64 are looked at, no error, no long loop
    assert negotiate(", ".join(["x/y"] * 10_000) + ", text/html") is None


def test_json_page_has_every_pep_field():
    doc = json.loads(render_project(SimpleProject("demo", (_file(),), ("1.0",)), JSON_V1))
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["name"] == "demo"
    assert doc["versions"] == ["1.0"]
    (f,) = doc["files"]
    assert f == {
        "filename": "demo-1.0-py3-none-any.whl",
        "url": "https://idx.test/demo/demo-1.0-py3-none-any.whl",
        "hashes": {"sha256": SHA},
        "requires-python": ">=3.8,<4",
        "yanked": False,
        "core-metadata": {"sha256": META},
        "dist-info-metadata": {"sha256": META},
        "size": 1234,
        "upload-time": "2024-05-01T12:00:00.123456Z",
    }


def test_html_page_attributes_are_escaped_and_doubled():
    page = render_project(SimpleProject("demo", (_file(yanked='broken <"&">'),)), HTML_V1).decode()
    assert '<meta name="pypi:repository-version" content="1.1">' in page
    assert f'href="https://idx.test/demo/demo-1.0-py3-none-any.whl#sha256={SHA}"' in page
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in page
    assert 'data-yanked="broken &lt;&quot;&amp;&quot;&gt;"' in page
    assert f'data-core-metadata="sha256={META}"' in page
    assert f'data-dist-info-metadata="sha256={META}"' in page
    parsed = parse_project(
        page.encode(), "text/html; charset=utf-8", "https://idx.test/simple/demo/"
    )
    (f,) = parsed.files
    assert f.yanked == 'broken <"&">'
    assert f.requires_python == ">=3.8,<4"
    assert parsed.name == "demo"


def test_html_omits_absent_attributes():
    page = render_project(
        SimpleProject("demo", (_file(requires_python=None, core_metadata=False),)), "text/html"
    ).decode()
    assert "data-requires-python" not in page
    assert "data-yanked" not in page
    assert "metadata" not in page


def test_yanked_without_reason_and_metadata_without_hash():
    f = _file(yanked=True, core_metadata=True)
    for media in (JSON_V1, HTML_V1):
        (g,) = parse_project(render_project(SimpleProject("demo", (f,)), media), media, "x:/").files
        assert g.yanked is True
        assert g.core_metadata is True


def test_index_page_both_formats():
    names = ["Demo_Pkg", "other"]
    doc = json.loads(render_index(names, JSON_V1))
    assert doc == {
        "meta": {"api-version": "1.1"},
        "projects": [{"name": "Demo_Pkg"}, {"name": "other"}],
    }
    page = render_index(names, HTML_V1).decode()
    assert '<a href="demo-pkg/">Demo_Pkg</a>' in page
    assert parse_index(page.encode(), HTML_V1) == names
    assert parse_index(render_index(names, JSON_V1), JSON_V1) == names


def test_render_refuses_unknown_media():
    with pytest.raises(InvalidArgumentError):
        render_project(SimpleProject("x", ()), "application/json")
    with pytest.raises(InvalidArgumentError):
        render_index([], "text/plain")


def test_relative_urls_resolved_against_the_page_and_base_tag():
    page = (
        b'<html><body><a href="../../files/demo-1.0.tar.gz#sha256=' + SHA.encode() + b'">'
        b"demo-1.0.tar.gz</a></body></html>"
    )
    (f,) = parse_project(page, "text/html", "https://up.test/simple/demo/").files
    assert f.url == "https://up.test/files/demo-1.0.tar.gz"
    assert f.hashes == {"sha256": SHA}
    assert f.filename == "demo-1.0.tar.gz"
    based = b'<html><head><base href="https://cdn.test/p/"></head><a href="x-1.0.tar.gz">x</a>'
    (g,) = parse_project(based, "text/html", "https://up.test/simple/x/").files
    assert g.url == "https://cdn.test/p/x-1.0.tar.gz"
    doc = {
        "meta": {"api-version": "1.0"},
        "name": "demo",
        "files": [{"filename": "demo-1.0.tar.gz", "url": "/f/demo-1.0.tar.gz", "hashes": {}}],
    }
    (h,) = parse_project(json.dumps(doc).encode(), JSON_V1, "https://up.test/simple/demo/").files
    assert h.url == "https://up.test/f/demo-1.0.tar.gz"
    assert h.yanked is False and h.core_metadata is False


def test_json_old_key_dist_info_metadata_is_read():
    doc = {
        "meta": {"api-version": "1.0"},
        "name": "demo",
        "files": [
            {"filename": "a", "url": "a", "hashes": {}, "dist-info-metadata": {"sha256": META}}
        ],
    }
    (f,) = parse_project(json.dumps(doc).encode(), JSON_V1, "https://x/").files
    assert f.core_metadata == {"sha256": META}


def test_html_filename_falls_back_to_url():
    (f,) = parse_project(b'<a href="/p/x-1.0.tar.gz"></a>', "text/html", "https://x/").files
    assert f.filename == "x-1.0.tar.gz"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"name": "x", "files": []}',  # no meta
        b'{"meta": {"api-version": "2.0"}, "name": "x", "files": []}',
        b'{"meta": {"api-version": "1.0"}, "name": 3, "files": []}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": {}}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": [1]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": [{"filename": "a"}]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": '
        b'[{"filename": "a", "url": "a", "hashes": {"sha256": 5}}]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": '
        b'[{"filename": "a", "url": "a", "hashes": {"sha256": "zz"}}]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": '
        b'[{"filename": "a", "url": "a", "hashes": {}, "yanked": 1}]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": '
        b'[{"filename": "a", "url": "a", "hashes": {}, "size": -1}]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": '
        b'[{"filename": "a", "url": "a", "hashes": {}, "core-metadata": "yes"}]}',
        b'{"meta": {"api-version": "1.0"}, "name": "x", "files": [], "versions": [1]}',
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting: RecursionError becomes UpstreamError
    ],
)
def test_json_nonsense_is_upstream_error(body):
    with pytest.raises(UpstreamError):
        parse_project(body, JSON_V1, "https://x/")


def test_unsupported_media_and_html_version():
    with pytest.raises(UpstreamError):
        parse_project(b"{}", "application/octet-stream", "https://x/")
    page = b'<meta name="pypi:repository-version" content="2.0"><a href="a">a</a>'
    with pytest.raises(UpstreamError):
        parse_project(page, "text/html", "https://x/")


def test_body_and_file_count_bounded():
    with pytest.raises(UpstreamError, match="limit"):
        parse_project(b" " * ((64 << 20) + 1), "text/html", "https://x/")
    many = b'<a href="a">a</a>' * (MAX_FILES + 1)
    with pytest.raises(UpstreamError, match="more than"):
        parse_project(many, "text/html", "https://x/")
    doc = {"meta": {"api-version": "1.0"}, "name": "x", "files": [{}] * (MAX_FILES + 1)}
    with pytest.raises(UpstreamError, match="files"):
        parse_project(json.dumps(doc).encode(), JSON_V1, "https://x/")


def test_html_garbage_does_not_crash():
    body = bytes(range(256)) * 50 + b"<a href='#sha256=zz'>\x00</a><<<>>"
    p = parse_project(body, "text/html", "https://x/simple/y/")
    assert all(not f.hashes for f in p.files)


def test_simple_file_from_record():
    rec = FileRecord(
        project="demo",
        filename="demo-1.0-py3-none-any.whl",
        version="1.0",
        kind="wheel",
        path="demo/demo-1.0-py3-none-any.whl",
        size=10,
        sha256=SHA,
        upload_time_ns=1_714_564_800_123_456_789,
        requires_python=">=3.8",
        yanked="",
        metadata_sha256=META,
    )
    f = simple_file(rec, "/demo/demo-1.0-py3-none-any.whl")
    assert f.hashes == {"sha256": SHA}
    assert f.yanked is True  # empty reason: yanked, no reason
    assert f.core_metadata == {"sha256": META}
    assert f.size == 10
    assert f.upload_time == "2024-05-01T12:00:00.123456Z"
    assert f.requires_python == ">=3.8"
    g = simple_file(
        FileRecord(
            "demo",
            "demo-1.0.tar.gz",
            "1.0",
            "sdist",
            "demo/demo-1.0.tar.gz",
            1,
            SHA,
            0,
            yanked="bad build",
        ),
        "/x",
    )
    assert g.yanked == "bad build"
    assert g.core_metadata is False
    assert g.upload_time is None
