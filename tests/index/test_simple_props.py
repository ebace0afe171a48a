"""Property tests: every Simple API page we render parses back to what was rendered."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from registry_core.errors import UpstreamError
from registry_core.index._simple import (
    HTML_V1,
    JSON_V1,
    SimpleFile,
    SimpleProject,
    negotiate,
    parse_index,
    parse_project,
    render_index,
    render_project,
)

_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), max_size=30
)  # any printable text: quotes, <, &, non-ASCII
_filename = st.builds(
    lambda n, v, ext: f"{n}-{v}{ext}",
    _name,
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True),
    st.sampled_from([".tar.gz", "-py3-none-any.whl", ".zip"]),
)


@st.composite
def _files(draw, single_hash: bool):
    filename = draw(_filename)
    hashes = {"sha256": draw(_hex)}
    if not single_hash and draw(st.booleans()):
        hashes["sha512"] = draw(_hex) * 2
    yanked = draw(st.one_of(st.booleans(), _text.filter(bool)))
    meta = draw(st.one_of(st.booleans(), st.builds(lambda h: {"sha256": h}, _hex)))
    return SimpleFile(
        filename=filename,
        url=f"https://idx.test/files/{draw(_name)}/{filename}",
        hashes=hashes,
        requires_python=draw(st.one_of(st.none(), _text)),
        yanked=yanked,
        core_metadata=meta,
        size=None if single_hash else draw(st.one_of(st.none(), st.integers(0, 2**40))),
        upload_time=None
        if single_hash
        else draw(st.one_of(st.none(), st.just("2024-05-01T12:00:00.123456Z"))),
    )


@given(_name, st.lists(_files(single_hash=False), max_size=8), st.lists(_text, max_size=4))
def test_json_round_trip(name, files, versions):
    p = SimpleProject(name, tuple(files), tuple(versions))
    assert parse_project(render_project(p, JSON_V1), JSON_V1, "https://other.test/") == p


@given(
    _name, st.lists(_files(single_hash=True), max_size=8), st.sampled_from([HTML_V1, "text/html"])
)
def test_html_round_trip(name, files, media):
    p = SimpleProject(name, tuple(files))
    assert parse_project(render_project(p, media), media, "https://other.test/") == p


@given(st.lists(_name, max_size=20), st.sampled_from([JSON_V1, HTML_V1, "text/html"]))
def test_index_round_trip(names, media):
    assert parse_index(render_index(names, media), media) == names


@given(st.binary(max_size=2000), st.sampled_from([JSON_V1, HTML_V1, "text/html"]))
def test_parse_never_crashes(body, media):
    with contextlib.suppress(UpstreamError):
        parse_project(body, media, "https://x.test/simple/p/")


@given(st.text(max_size=300))
def test_negotiate_total(accept):
    assert negotiate(accept) in (JSON_V1, HTML_V1, "text/html", None)
