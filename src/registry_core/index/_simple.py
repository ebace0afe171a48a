"""The Simple Repository API (PEP 503 HTML, PEP 691 JSON, PEP 629/658/700/714), sans-IO.

Rendering turns :class:`SimpleProject` values into the bytes an index serves; parsing turns an
upstream's bytes back into them (the proxy reads other indexes with it), bounded so a hostile
upstream cannot make it hold unbounded memory. :func:`negotiate` picks the media type from an
``Accept`` header with q-values, as PEP 691 describes. No I/O here.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin

from ..errors import InvalidArgumentError, UpstreamError
from ._model import FileRecord
from ._names import normalize as _normalize

__all__ = [
    "HTML_LEGACY",
    "HTML_V1",
    "JSON_V1",
    "MAX_BODY_BYTES",
    "MAX_FILES",
    "SimpleFile",
    "SimpleProject",
    "negotiate",
    "parse_index",
    "parse_project",
    "render_index",
    "render_project",
    "simple_file",
]

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
HTML_LEGACY = "text/html"
API_VERSION = "1.1"
MAX_BODY_BYTES = 64 << 20
MAX_FILES = 200_000
MAX_PROJECTS = 2_000_000


@dataclass(frozen=True)
class SimpleFile:
    """One file as the Simple API describes it.

    ``yanked``: False, True (no reason) or the reason string. ``core_metadata``: False, True
    (available, no hash) or the hashes of the ``.metadata`` file. ``upload_time``: ISO 8601
    with a ``Z`` suffix, e.g. ``2024-05-01T12:00:00.123456Z``.
    """

    filename: str
    url: str
    hashes: dict[str, str] = field(default_factory=dict)
    requires_python: str | None = None
    yanked: bool | str = False
    core_metadata: dict[str, str] | bool = False
    size: int | None = None
    upload_time: str | None = None


@dataclass(frozen=True)
class SimpleProject:
    """A project page: its (normalized) name, files and (PEP 700) versions."""

    name: str
    files: tuple[SimpleFile, ...]
    versions: tuple[str, ...] = ()
    api_version: str = API_VERSION


# -- negotiation -------------------------------------------------------------------------------

# Offered in this order of preference when the client names several with the same q (PEP 691
# suggests JSON first; pip sends explicit q-values so its order wins).
_OFFERS = (JSON_V1, HTML_V1, HTML_LEGACY)
_LATEST = {  # PEP 691's aliases for the newest version this server speaks
    "vnd.pypi.simple.latest+json": "vnd.pypi.simple.v1+json",
    "vnd.pypi.simple.latest+html": "vnd.pypi.simple.v1+html",
}


def negotiate(accept: str | None) -> str | None:
    """The media type to answer ``Accept`` with: JSON_V1, HTML_V1 or ``text/html``.

    No header (or an empty one) -> ``text/html``, the PEP 503 default. ``*/*`` and
    ``application/*`` style ranges match too; the highest q wins, ties go to the more specific
    range, then to JSON_V1 > HTML_V1 > text/html for named types and to text/html first for
    wildcards (``*/*`` gets what a browser expects). The ``latest`` aliases of PEP 691 mean v1.
    None when nothing offered is acceptable (answer 406).
    """
    if accept is None or not accept.strip():
        return HTML_LEGACY
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    ranges: list[tuple[str, str, float]] = []
    for part in accept.split(",", 64)[:64]:  # a hostile header cannot make this loop long
        items = part.split(";")
        media = items[0].strip().lower()
        if "/" not in media:
            continue
        q = 1.0
        for param in items[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        mtype, _, msub = media.partition("/")
        msub = _LATEST.get(msub.strip(), msub)
        ranges.append((mtype.strip(), msub.strip(), q))
    for rank, offer in enumerate(_OFFERS):
        otype, _, osub = offer.partition("/")
        # the most specific matching range decides this offer's q (RFC 9110 12.5.1)
        match: tuple[int, float] | None = None
        for mtype, msub, q in ranges:
            if mtype == otype and msub == osub:
                spec = 2
            elif mtype == otype and msub == "*":
                spec = 1
            elif mtype == "*" and msub == "*":
                spec = 0
            else:
                continue
            if match is None or spec > match[0]:
                match = (spec, q)
        if match is None or match[1] <= 0.0:
            continue
        # a wildcard answers the page a browser or curl expects (text/html, as PyPI does);
        # an explicit tie (same q) prefers JSON, then the versioned HTML
        pref = -rank if match[0] == 2 else rank
        score = (match[1], match[0], pref)
        if best is None or score > best:
            best, chosen = score, offer
    return chosen


# -- rendering ---------------------------------------------------------------------------------


def _esc(value: str) -> str:
    return html.escape(value, quote=True)


def _hash_fragment(hashes: dict[str, str]) -> str:
    for name in ("sha256", "sha384", "sha512", "blake2b"):
        if name in hashes:
            return f"#{name}={hashes[name]}"
    if hashes:
        name = sorted(hashes)[0]
        return f"#{name}={hashes[name]}"
    return ""


def _metadata_attr(value: dict[str, str] | bool) -> str | None:
    if value is False:
        return None
    if value is True or not value:
        return "true"
    name = "sha256" if "sha256" in value else sorted(value)[0]
    return f"{name}={value[name]}"


def _html_head(title: str, api_version: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{_esc(api_version)}">',
        f"    <title>{_esc(title)}</title>",
        "  </head>",
        "  <body>",
    ]


def render_project(p: SimpleProject, media: str) -> bytes:
    """The project page ``p`` in ``media`` (JSON_V1, HTML_V1 or ``text/html``)."""
    if media == JSON_V1:
        files: list[dict[str, Any]] = []
        for f in p.files:
            d: dict[str, Any] = {"filename": f.filename, "url": f.url, "hashes": dict(f.hashes)}
            if f.requires_python is not None:
                d["requires-python"] = f.requires_python
            d["yanked"] = f.yanked
            cm = f.core_metadata if isinstance(f.core_metadata, bool) else dict(f.core_metadata)
            d["core-metadata"] = cm
            d["dist-info-metadata"] = cm  # PEP 714: the old key too, for older clients
            if f.size is not None:
                d["size"] = f.size
            if f.upload_time is not None:
                d["upload-time"] = f.upload_time
            files.append(d)
        doc = {
            "meta": {"api-version": p.api_version},
            "name": p.name,
            "files": files,
            "versions": list(p.versions),
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    if media not in (HTML_V1, HTML_LEGACY):
        raise InvalidArgumentError(f"cannot render media type {media!r}")
    lines = _html_head(f"Links for {p.name}", p.api_version)
    lines.append(f"    <h1>Links for {_esc(p.name)}</h1>")
    for f in p.files:
        attrs = [f'href="{_esc(f.url + _hash_fragment(f.hashes))}"']
        if f.requires_python is not None:
            attrs.append(f'data-requires-python="{_esc(f.requires_python)}"')
        if f.yanked is not False:
            reason = "" if f.yanked is True else str(f.yanked)
            attrs.append(f'data-yanked="{_esc(reason)}"')
        meta = _metadata_attr(f.core_metadata)
        if meta is not None:
            attrs.append(f'data-core-metadata="{_esc(meta)}"')
            attrs.append(f'data-dist-info-metadata="{_esc(meta)}"')
        lines.append(f"    <a {' '.join(attrs)}>{_esc(f.filename)}</a><br>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def render_index(names: Sequence[str], media: str, *, api_version: str = API_VERSION) -> bytes:
    """The project list (``/simple/``) in ``media``; links are ``<normalized>/`` relative."""
    if media == JSON_V1:
        doc = {"meta": {"api-version": api_version}, "projects": [{"name": n} for n in names]}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    if media not in (HTML_V1, HTML_LEGACY):
        raise InvalidArgumentError(f"cannot render media type {media!r}")
    lines = _html_head("Simple index", api_version)
    for n in names:
        lines.append(f'    <a href="{_esc(_normalize(n))}/">{_esc(n)}</a><br>')
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


# -- from the index's records ------------------------------------------------------------------


def _iso(ns: int) -> str:
    import datetime

    seconds, rest = divmod(ns, 1_000_000_000)
    dt = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def simple_file(record: FileRecord, url: str) -> SimpleFile:
    """The Simple API view of an index record, linked at ``url`` (without fragment)."""
    yanked: bool | str = False
    if record.yanked is not None:
        yanked = record.yanked or True
    core: dict[str, str] | bool = False
    if record.metadata_sha256:
        core = {"sha256": record.metadata_sha256}
    return SimpleFile(
        filename=record.filename,
        url=url,
        hashes={"sha256": record.sha256},
        requires_python=record.requires_python,
        yanked=yanked,
        core_metadata=core,
        size=record.size,
        upload_time=_iso(record.upload_time_ns) if record.upload_time_ns else None,
    )


# -- parsing -----------------------------------------------------------------------------------


def _check_body(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise UpstreamError(
            f"index page of {len(body)} bytes is over the {MAX_BODY_BYTES}-byte limit"
        )


def _filename_from_url(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


_HASH_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
_HASH_VALUE = re.compile(r"^[0-9a-fA-F]{1,256}$")


def _hashes(raw: Any, what: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise UpstreamError(f"{what}: hashes is not an object")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise UpstreamError(f"{what}: hash names and values must be strings")
        if not _HASH_NAME.match(k) or not _HASH_VALUE.match(v):
            raise UpstreamError(f"{what}: malformed hash {k!r}")
        out[k] = v.lower()
    return out


def _meta_value(raw: Any, what: str) -> dict[str, str] | bool:
    if raw is None or raw is False:
        return False
    if raw is True:
        return True
    if isinstance(raw, dict):
        return _hashes(raw, what) or True
    raise UpstreamError(f"{what}: core-metadata must be a boolean or an object")


def _parse_json(body: bytes, base_url: str) -> SimpleProject:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise UpstreamError(f"index page is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UpstreamError("index page JSON is not an object")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("api-version"), str):
        raise UpstreamError("index page JSON has no meta.api-version")
    api_version = meta["api-version"]
    if not api_version.startswith("1."):
        raise UpstreamError(f"unsupported Simple API version {api_version!r}")
    name = doc.get("name")
    raw_files = doc.get("files")
    if not isinstance(name, str) or not isinstance(raw_files, list):
        raise UpstreamError("index page JSON needs a name and a files list")
    if len(raw_files) > MAX_FILES:
        raise UpstreamError(f"index page lists {len(raw_files)} files, over {MAX_FILES}")
    files = []
    for i, raw in enumerate(raw_files):
        what = f"files[{i}]"
        if not isinstance(raw, dict):
            raise UpstreamError(f"{what} is not an object")
        filename, url = raw.get("filename"), raw.get("url")
        if not isinstance(filename, str) or not isinstance(url, str) or not filename:
            raise UpstreamError(f"{what} needs filename and url strings")
        rp = raw.get("requires-python")
        if rp is not None and not isinstance(rp, str):
            raise UpstreamError(f"{what}: requires-python is not a string")
        yanked = raw.get("yanked", False)
        if yanked is None:
            yanked = False
        if not isinstance(yanked, (bool, str)):
            raise UpstreamError(f"{what}: yanked must be a boolean or a string")
        cm_raw = raw.get("core-metadata", raw.get("dist-info-metadata", False))
        size = raw.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise UpstreamError(f"{what}: size is not a non-negative integer")
        ut = raw.get("upload-time")
        if ut is not None and not isinstance(ut, str):
            raise UpstreamError(f"{what}: upload-time is not a string")
        files.append(
            SimpleFile(
                filename=filename,
                url=urljoin(base_url, url),
                hashes=_hashes(raw.get("hashes", {}), what),
                requires_python=rp,
                yanked=yanked,
                core_metadata=_meta_value(cm_raw, what),
                size=size,
                upload_time=ut,
            )
        )
    versions = doc.get("versions", [])
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise UpstreamError("index page JSON: versions must be a list of strings")
    return SimpleProject(name, tuple(files), tuple(versions), api_version)


class _LinkParser(HTMLParser):
    """Collects ``<a>`` tags (attributes and text) and the repository-version meta tag."""

    def __init__(self, max_anchors: int = MAX_FILES) -> None:
        super().__init__(convert_charrefs=True)
        self.max_anchors = max_anchors
        self.anchors: list[tuple[dict[str, str | None], list[str]]] = []
        self.api_version: str | None = None
        self.base: str | None = None  # <base href>: links resolve against it (pip does too)
        self.h1: list[str] = []
        self._text: list[str] | None = None
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            if len(self.anchors) >= self.max_anchors:
                raise UpstreamError(f"index page has more than {self.max_anchors} links")
            self._text = []
            self.anchors.append((dict(attrs), self._text))
        elif tag == "meta":
            d = dict(attrs)
            if d.get("name") == "pypi:repository-version" and d.get("content"):
                self.api_version = d["content"]
        elif tag == "h1":
            self._in_h1 = True
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._text = None
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)
        if self._in_h1:
            self.h1.append(data)


def _html_meta(value: str | None) -> dict[str, str] | bool:
    if value is None:
        return False
    value = value.strip()
    if value.lower() == "true" or "=" not in value:
        return True
    name, _, digest = value.partition("=")
    if _HASH_NAME.match(name) and _HASH_VALUE.match(digest):
        return {name: digest.lower()}
    return True


def _parse_html(body: bytes, base_url: str, name: str | None) -> SimpleProject:
    text = body.decode("utf-8", errors="replace")
    parser = _LinkParser()
    try:
        parser.feed(text)
        parser.close()
    except UpstreamError:
        raise
    except Exception as exc:  # html.parser is lenient, but be sure nothing else escapes
        raise UpstreamError(f"index page HTML could not be parsed: {exc}") from None
    api_version = parser.api_version or "1.0"
    if not api_version.startswith("1."):
        raise UpstreamError(f"unsupported Simple API version {api_version!r}")
    if parser.base:
        base_url = urljoin(base_url, parser.base)
    files = []
    for attrs, text_parts in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        absolute, fragment = urldefrag(urljoin(base_url, href))
        hashes: dict[str, str] = {}
        if fragment:
            hname, _, digest = fragment.partition("=")
            if _HASH_NAME.match(hname) and _HASH_VALUE.match(digest):
                hashes[hname] = digest.lower()
        filename = "".join(text_parts).strip() or _filename_from_url(absolute)
        yanked: bool | str = False
        if "data-yanked" in attrs:
            reason = attrs["data-yanked"]
            yanked = reason if reason else True
        meta = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        files.append(
            SimpleFile(
                filename=filename,
                url=absolute,
                hashes=hashes,
                requires_python=attrs.get("data-requires-python"),
                yanked=yanked,
                core_metadata=_html_meta(meta),
            )
        )
    if name is None:
        heading = "".join(parser.h1).strip()
        name = heading[len("Links for ") :] if heading.startswith("Links for ") else heading
        if not name:
            name = _filename_from_url(base_url.rstrip("/")) or ""
    return SimpleProject(name, tuple(files), (), api_version)


def _media_base(media: str) -> str:
    return media.split(";", 1)[0].strip().lower()


def parse_project(
    body: bytes, media: str, base_url: str, *, name: str | None = None
) -> SimpleProject:
    """Parse an upstream's project page (``media`` from its Content-Type).

    URLs come back absolute (resolved against ``base_url``, the page's URL), HTML hashes from
    the link's fragment. ``name``: the project's name when the caller knows it (HTML pages
    carry it only in their heading). Raises UpstreamError for a body over 64 MiB, more than
    200,000 files, an unknown media type or API major version, or malformed content.
    """
    _check_body(body)
    base = _media_base(media)
    if base == JSON_V1 or base == "application/json":
        return _parse_json(body, base_url)
    if base in (HTML_V1, HTML_LEGACY, "application/xhtml+xml"):
        return _parse_html(body, base_url, name)
    raise UpstreamError(f"index page has unsupported media type {media!r}")


def parse_index(body: bytes, media: str) -> list[str]:
    """Project names from an upstream's ``/simple/`` page (JSON or HTML); bounded likewise."""
    _check_body(body)
    base = _media_base(media)
    if base in (JSON_V1, "application/json"):
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise UpstreamError(f"index list is not valid JSON: {exc}") from None
        projects = doc.get("projects") if isinstance(doc, dict) else None
        if not isinstance(projects, list):
            raise UpstreamError("index list JSON has no projects list")
        if len(projects) > MAX_PROJECTS:
            raise UpstreamError("index list has too many projects")
        names = []
        for p in projects:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise UpstreamError("index list JSON: each project needs a name")
            names.append(p["name"])
        return names
    if base in (HTML_V1, HTML_LEGACY):
        parser = _LinkParser(MAX_PROJECTS)
        try:
            parser.feed(body.decode("utf-8", errors="replace"))
            parser.close()
        except UpstreamError:
            raise
        except Exception as exc:
            raise UpstreamError(f"index list HTML could not be parsed: {exc}") from None
        return ["".join(t).strip() for _, t in parser.anchors if "".join(t).strip()]
    raise UpstreamError(f"index list has unsupported media type {media!r}")
