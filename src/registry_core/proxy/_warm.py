"""``warm``: fill the proxy's cache from a requirements file before CI needs it.

No dependency resolution: every file to fetch must be named (a requirements file from
``pip-compile`` or ``pip freeze`` is complete). Each line ``name``, ``name==1.2``,
``name>=1,<2``, ``name[extra]==1; marker`` picks one file for this interpreter (see
:func:`registry_core.proxy._select.choose_file`) and fetches it through the proxy's own path
(delta against an older cached version when possible, SHA-256 checked, stored atomically).
``-r``/``--requirement`` includes another file; ``--hash=sha256:...`` limits the accepted
files to those digests. Options that would change where packages come from (``-i``,
``--extra-index-url``, ``-f``, ``-e``, URLs, ``-c``) are refused with the line number.

``predict``: a next-download :class:`~registry_core.ml._predict.Predictor` (bound to a feature
extractor that knows the proxy's traffic and the releases): after each requirement's file, the
newer files the predictor gives at least ``predict_threshold`` of being asked for by the proxy's
clients (as ``predict_client``) within its horizon are prefetched too (``WarmReport.predicted``).
The CLI gates it behind ML_PREDICTIVE_PREFETCH; :func:`load_predictor_for_warm` builds one from a
model file and an access log.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, RegistryCoreError

if TYPE_CHECKING:
    from ..flags import FeatureFlags
    from ._app import ProxyApp

__all__ = [
    "Requirement",
    "WarmReport",
    "load_predictor_for_warm",
    "parse_requirements",
    "warm",
    "warm_app",
]

_MAX_DEPTH = 8
_REFUSED = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-e",
    "--editable",
    "-c",
    "--constraint",
    "--no-index",
)


@dataclass(frozen=True)
class Requirement:
    """One requirement line: its text, where it came from, and its ``--hash`` digests."""

    text: str
    source: str
    line: int
    hashes: frozenset[str] = frozenset()  # lower-case sha256 hex


@dataclass
class WarmReport:
    """What :func:`warm` did. ``fetched``: (filename, bytes moved from the upstream, its full
    size, "delta" | "expanded" | "full" | "cached"; "expanded": a first download that came as
    an EXPANDED patch); ``failed``: (requirement, reason)."""

    fetched: list[tuple[str, int, int, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # markers false for this interpreter
    predicted: list[tuple[str, float]] = field(default_factory=list)  # (filename, probability)

    @property
    def upstream_bytes(self) -> int:
        return sum(f[1] for f in self.fetched)

    @property
    def full_bytes(self) -> int:
        return sum(f[2] for f in self.fetched)

    @property
    def ok(self) -> bool:
        return not self.failed


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined (numbered from 1)."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw
        if line.lstrip().startswith("#"):
            line = ""
        elif " #" in line or "\t#" in line:
            line = line[: min(i for i in (line.find(" #"), line.find("\t#")) if i >= 0)]
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def parse_requirements(
    source: str | os.PathLike[str] | Iterable[str], *, _depth: int = 0
) -> list[Requirement]:
    """Requirement lines from a file path or an iterable of lines (sans network)."""
    if _depth > _MAX_DEPTH:
        raise InvalidArgumentError("requirements files include each other too deeply")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read requirements file {path}: {exc}") from None
        name, base = str(path), path.parent
    else:
        text, name, base = "\n".join(source), "<lines>", Path.cwd()
    out: list[Requirement] = []
    for n, line in _logical_lines(text):
        where = f"{name}:{n}"
        tokens = line.split()
        head = tokens[0]
        if head in ("-r", "--requirement") or head.startswith(("-r", "--requirement=")):
            target = (
                tokens[1]
                if head in ("-r", "--requirement") and len(tokens) > 1
                else head.split("=", 1)[1]
                if "=" in head
                else head[2:]
            )
            if not target:
                raise InvalidArgumentError(f"{where}: -r needs a file name")
            out += parse_requirements(base / target, _depth=_depth + 1)
            continue
        if head.startswith("-"):
            opt = head.split("=", 1)[0]
            if opt in _REFUSED or opt.startswith(("-i", "-f", "-e", "-c")):
                raise InvalidArgumentError(
                    f"{where}: {opt} is not supported by warm (the proxy's upstream is the "
                    "only index; name each package instead)"
                )
            raise InvalidArgumentError(f"{where}: unknown option {opt!r}")
        hashes: set[str] = set()
        words = []
        for tok in tokens:
            if tok.startswith("--hash="):
                alg, _, value = tok[len("--hash=") :].partition(":")
                if alg != "sha256" or len(value) != 64:
                    raise InvalidArgumentError(f"{where}: only --hash=sha256:<64 hex> is supported")
                hashes.add(value.lower())
            elif tok.startswith("--"):
                raise InvalidArgumentError(f"{where}: unsupported per-requirement option {tok!r}")
            else:
                words.append(tok)
        text_req = " ".join(words)
        if "@" in text_req.split(";", 1)[0] or "://" in text_req:
            raise InvalidArgumentError(f"{where}: direct URL requirements are not supported")
        out.append(Requirement(text_req, name, n, frozenset(hashes)))
    return out


async def warm_app(
    app: ProxyApp,
    requirements: str | os.PathLike[str] | Iterable[str],
    *,
    python_version: str | None = None,
    tags: list[str] | None = None,
    predict: Any | None = None,
    predict_threshold: float = 0.5,
    predict_client: str = "proxy",
    now: float | None = None,
) -> WarmReport:
    """Fetch one file per requirement into ``app``'s cache, one after the other (so each
    file's upstream bytes are its own); with ``predict``, the predicted newer files too."""
    if predict is not None and not 0.0 <= predict_threshold <= 1.0:
        raise InvalidArgumentError(f"predict_threshold must be in [0, 1], not {predict_threshold}")
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PReq

    from ._app import normalize
    from ._select import choose_file

    reqs = parse_requirements(requirements)
    if python_version is None:
        python_version = ".".join(str(p) for p in sys.version_info[:3])
    if tags is None:
        from packaging.tags import sys_tags

        tags = [str(t) for t in sys_tags()]
    report = WarmReport()
    for req in reqs:
        label = f"{req.text} ({req.source}:{req.line})"
        try:
            parsed = PReq(req.text)
        except InvalidRequirement as exc:
            report.failed.append((label, f"not a requirement: {exc}"))
            continue
        if parsed.marker is not None and not parsed.marker.evaluate():
            report.skipped.append(req.text)
            continue
        project = normalize(parsed.name)
        try:
            page = await app.page(project)
            if page is None:
                report.failed.append((label, "the upstream has no such project"))
                continue
            files = [
                f
                for f in page.files.values()
                if not req.hashes or f.hashes["sha256"].lower() in req.hashes
            ]
            chosen = choose_file(files, parsed.specifier, python_version=python_version, tags=tags)
            if chosen is None:
                report.failed.append((label, "no file matches for this interpreter"))
                continue
            before = app.stats
            cached = f"{project}/{chosen.filename}" in app.cache
            await app.ensure(project, chosen)
            after = app.stats
        except RegistryCoreError as exc:
            report.failed.append((label, str(exc)))
            continue
        moved = after.upstream_bytes - before.upstream_bytes
        full = after.full_equivalent_bytes - before.full_equivalent_bytes
        if cached and after.cache_hits > before.cache_hits:
            how = "cached"
            full = app.cache.size(f"{project}/{chosen.filename}") or chosen.size or 0
        else:
            how = _how(before, after)
        report.fetched.append((chosen.filename, moved, full, how))
        if predict is not None:
            from ._select import dist_info

            info = dist_info(chosen.filename)
            held = str(info.version) if info is not None else ""
            await _prefetch(
                app, report, page, project, held, predict, predict_threshold, predict_client, now
            )
    return report


async def _prefetch(
    app: ProxyApp,
    report: WarmReport,
    page: Any,
    project: str,
    held: str,
    predictor: Any,
    threshold: float,
    client: str,
    now: float | None,
) -> None:
    """Fetch the newer files ``predictor`` expects ``client`` to ask for (>= ``threshold``)."""
    import time

    when = float(now) if now is not None else time.time()
    try:
        predictions = predictor.predict(client, project, held, when)
    except RegistryCoreError as exc:
        report.failed.append((f"{project} (prediction)", str(exc)))
        return
    for pred in predictions:
        f = page.files.get(pred.filename)
        if pred.probability < threshold or f is None:
            continue
        try:
            before = app.stats
            await app.ensure(project, f)
            after = app.stats
        except RegistryCoreError as exc:
            report.failed.append((f"{pred.filename} (predicted)", str(exc)))
            continue
        moved = after.upstream_bytes - before.upstream_bytes
        full = after.full_equivalent_bytes - before.full_equivalent_bytes
        how = _how(before, after) if moved else "cached"
        report.fetched.append((pred.filename, moved, full, how))
        report.predicted.append((pred.filename, pred.probability))


def load_predictor_for_warm(
    model: str | os.PathLike[str], access_log: str | os.PathLike[str] | None = None
) -> Any:
    """A next-download Predictor from a ``.rcml`` file, its features fed from ``access_log``
    (the proxy's own JSON access log: who holds what, which releases exist)."""
    from ..ml._features import FeatureExtractor
    from ..ml._predict import load_predictor

    try:
        with open(model, "rb") as f:
            data = f.read((64 << 20) + 1)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read model {model}: {exc}") from None
    predictor = load_predictor(data)
    if access_log is None:
        return predictor.bind(FeatureExtractor(None))
    from ..ml.traces import load_trace

    trace = load_trace(access_log)
    ex = FeatureExtractor(trace.catalogue)
    for r in trace.requests:
        ex.update(r)
    return predictor.bind(ex)


def warm(
    requirements: str | os.PathLike[str] | Iterable[str],
    *,
    upstream: str,
    cache_dir: str | os.PathLike[str],
    python_version: str | None = None,
    tags: list[str] | None = None,
    verify: bool | str = True,
    flags: FeatureFlags | None = None,
    max_cache_bytes: int = 10 << 30,
    predict: Any | None = None,
    predict_threshold: float = 0.5,
    predict_client: str = "proxy",
    now: float | None = None,
    **kw: Any,
) -> WarmReport:
    """Fill ``cache_dir`` (a proxy cache) with the files ``requirements`` names, fetched from
    ``upstream``; returns what was moved. Runs its own event loop (call :meth:`ProxyApp.warm`
    from async code). No dependency resolution: list every package."""
    from ._app import ProxyApp

    async def main() -> WarmReport:
        app = ProxyApp(
            upstream,
            cache_dir,
            verify=verify,
            flags=flags,
            max_cache_bytes=max_cache_bytes,
            **kw,
        )
        try:
            return await warm_app(
                app,
                requirements,
                python_version=python_version,
                tags=tags,
                predict=predict,
                predict_threshold=predict_threshold,
                predict_client=predict_client,
                now=now,
            )
        finally:
            await app.aclose()

    return asyncio.run(main())


def _how(before: Any, after: Any) -> str:
    """How a file crossed from the upstream, from two ProxyStats snapshots around it."""
    if after.deltas > before.deltas:
        return "delta"
    return "expanded" if after.expanded > before.expanded else "full"
