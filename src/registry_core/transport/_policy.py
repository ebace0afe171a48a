"""The delta fetch policy, sans-IO: what to ask for, and what to do with the answer.

:class:`FetchPolicy` holds no sockets, no clock and no event loop. Given what the client holds
(the bytes of an older version and their SHA-256, hashed once) it produces the request headers
(:meth:`FetchPolicy.plan`); given a response (status, headers, body) it decides
(:meth:`FetchPolicy.decide`):

- ``have``: 304, the client already holds the current version;
- ``apply``: a ``226 IM Used`` carrying a registry-core patch; the caller applies it (off the
  event loop, with a deadline) and hands the outcome to :meth:`FetchPolicy.after_apply`;
- ``accept``: a verified full body (``200``, possibly ``dcz``-decoded by the caller);
- ``refetch``: the patch cannot be used here (this platform cannot rebuild it, it is over the
  limits, corrupt, or made for another base): ask again without delta headers;
- errors are raised as :mod:`registry_core.errors` classes.

First downloads (the client holds no version): when the platform reproduces the reference
engines and ``first_downloads`` says so ("always", or "auto" with the origin's measured plain
throughput, passed in as a number, below ``first_download_below``), the request names
``expanded`` in ``Delta-Engines`` with ``A-IM: rcdelta`` and no ``If-None-Match``
(:meth:`FetchPolicy.plan` with ``have=None``); a ``226`` to it is accepted only when its
``Delta-Base`` is the SHA-256 of the empty string (:data:`EMPTY_SHA256`) and the patch is an
EXPANDED one against the empty base (:meth:`FetchPolicy.first_download_target`,
:meth:`FetchPolicy.before_apply`). Requests that name a held version never carry ``expanded``.

Hashing: ``have`` is hashed once by the client (:func:`sha256`, the one helper), the result of
a patch is checked without hashing it again here: the patch's declared target SHA-256 must equal
``Repr-Digest``'s ``sha-256`` member and the strong ETag before the patch is applied, and
``DeltaAggregator.apply`` verifies its output against that declared target. A full body is
hashed once for ``Content-Digest``/``Repr-Digest``/ETag together when they cover the same bytes.
Docs: docs/transport.md ("Fetch policy") and docs/wire.md section 3.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    BaseMismatchError,
    CorruptPatchError,
    DeltaError,
    DigestMismatchError,
    InvalidArgumentError,
    OutputTooLargeError,
    ReproductionUnavailableError,
    TransportError,
)
from ..wire._delta import (
    DELTA_ENGINES,
    IM_RCDELTA,
    delta_request_headers,
    etag_for_sha256,
    etag_to_sha256,
    format_delta_engines,
    parse_im,
)
from ..wire._digest import compute_digest, parse_digest, verify_digest
from ._throughput import DEFAULT_FIRST_DOWNLOAD_BELOW, first_download_mode

__all__ = [
    "EMPTY_SHA256",
    "FIRST_DOWNLOAD_TOKEN",
    "REFERENCE_ENGINES",
    "Decision",
    "FetchPlan",
    "FetchPolicy",
    "reproduced_engines",
    "sha256",
]

#: Deflate engines a registry-core server may use to recompress archive members.
REFERENCE_ENGINES = ("zlib", "miniz")
#: The ``Delta-Engines`` token of a first download: "an EXPANDED patch against the empty base
#: (method 5) is welcome". Sent only by requests that name no held version.
FIRST_DOWNLOAD_TOKEN = "expanded"
#: The SHA-256 of the empty byte string: the base (and ``Delta-Base``) of an EXPANDED patch.
EMPTY_SHA256 = hashlib.sha256(b"").digest()
_EXPANDED_METHOD = "EXPANDED"


def sha256(data: Any) -> bytes:
    """SHA-256 of ``data``: the one place the client hashes (counted by the tests)."""
    return hashlib.sha256(data).digest()


def reproduced_engines() -> frozenset[str]:
    """The reference deflate engines this platform reproduces byte-exactly.

    Asks ``registry_core.delta``'s ``engine_reproduces`` (a one-time ~10 ms check per engine,
    cached for the process). An engine whose check cannot run counts as not reproduced.
    ``recon`` is the C core's reconstruction of any deflate stream from a correction record
    (layout version 2): a server sends reconstructed streams only to clients that name it.
    ``zstd-prefix`` is not a deflate engine but a patch method (ZSTD_PREFIX, zstandard is a
    core dependency): named so that servers send it only to clients that apply it.
    """
    from ..delta._deflate import MINIZ, RECON, ZLIB, engine_reproduces

    out = []
    for name, engine in (("zlib", ZLIB), ("miniz", MINIZ), ("recon", RECON)):
        try:
            if engine_reproduces(engine):
                out.append(name)
        except Exception:  # a broken engine is an absent one
            continue
    out.append("zstd-prefix")
    return frozenset(out)


@dataclass(frozen=True)
class FetchPlan:
    """One request of a fetch: its headers and what the client held when it was made."""

    headers: dict[str, str]
    have: bytes | None = None
    have_sha256: bytes | None = None
    delta: bool = False  # A-IM: rcdelta was sent
    dictionary: Any = None  # a compress.Dictionary over ``have`` when dcz was offered
    full: bool = False  # the fallback request (no delta headers)
    first: bool = False  # a first download: no base held, ``expanded`` named (have_sha256: empty)


@dataclass(frozen=True)
class Decision:
    """What to do with a response. ``action``: "have", "apply", "accept" or "refetch"."""

    action: str
    data: bytes | None = None  # "have" / "accept": the artifact
    patch: bytes | None = None  # "apply": the patch body
    stat: str = ""  # the Transport.stats counter this outcome adds to
    reason: str = ""
    # "apply": what the output is checked against, when no SHA-256 could be compared up front
    post_digest: tuple[str, bytes] | None = field(default=None, repr=False)


class FetchPolicy:
    """The decisions of :meth:`Transport.fetch`, with plain options.

    ``delta``: ask for registry-core patches (the DELTA_AGGREGATOR flag, resolved by the
    caller). ``dcz``: offer ``have`` as a shared dictionary (ZSTD_COMPRESSION). ``engines``: the
    reference deflate engines this platform reproduces (sent as ``Delta-Engines``).
    ``first_downloads``: when to ask for an EXPANDED patch if the client holds no version:
    "always" (True), "never" (False) or "auto" (the default: only when the plan is given a
    ``throughput`` estimate of the origin below ``first_download_below`` bytes/s; none yet
    means plain, which measures). Only with ``delta`` and when ``engines`` holds both
    reference engines (the server uses nothing less); otherwise "never".
    """

    def __init__(
        self,
        *,
        delta: bool,
        dcz: bool,
        engines: frozenset[str],
        first_downloads: bool | str = "auto",
        first_download_below: float = DEFAULT_FIRST_DOWNLOAD_BELOW,
    ) -> None:
        self.delta = delta
        self.dcz = dcz
        self.engines = frozenset(engines)
        mode = first_download_mode(first_downloads)
        capable = delta and set(REFERENCE_ENGINES) <= self.engines
        #: "auto", "always" or "never" (what this platform and the options allow)
        self.first_downloads = mode if capable else "never"
        if not first_download_below >= 0:
            raise InvalidArgumentError(
                f"first_download_below must be >= 0 bytes/s, not {first_download_below!r}"
            )
        self.first_download_below = float(first_download_below)

    def wants_first_download(self, throughput: float | None) -> bool:
        """Whether a request naming no version asks for ``expanded``, given the origin's
        measured plain-download ``throughput`` (bytes/s, None: not measured yet)."""
        if self.first_downloads == "always":
            return True
        if self.first_downloads == "never" or throughput is None:
            return False
        return throughput < self.first_download_below

    # -- requests -------------------------------------------------------------------------------

    def plan(
        self,
        have: bytes | None,
        *,
        have_sha256: bytes | None = None,
        dictionary: Any = None,
        throughput: float | None = None,
    ) -> FetchPlan:
        """Headers for the first request. ``have_sha256``: SHA-256 of ``have`` (hashed once by
        the caller, e.g. by building the dcz ``dictionary`` over it). ``throughput``: the
        origin's plain-download estimate in bytes/s (first downloads in "auto" mode)."""
        if have is None:
            if not self.wants_first_download(throughput):
                return FetchPlan(delta_request_headers(None))
            headers = delta_request_headers(None)
            headers["a-im"] = IM_RCDELTA
            headers[DELTA_ENGINES] = format_delta_engines(self.engines | {FIRST_DOWNLOAD_TOKEN})
            return FetchPlan(headers, None, EMPTY_SHA256, delta=True, first=True)
        if have_sha256 is None:
            have_sha256 = dictionary.sha256 if dictionary is not None else sha256(have)
        if len(have_sha256) != 32:
            raise InvalidArgumentError("have_sha256 must be the 32-byte SHA-256 of have")
        if self.delta:
            headers = delta_request_headers(None, have_sha256=have_sha256, engines=self.engines)
        else:
            headers = delta_request_headers(None)
            headers["if-none-match"] = etag_for_sha256(have_sha256)
        if self.dcz and dictionary is not None:
            from ..wire._dictionary import available_dictionary

            headers["available-dictionary"] = available_dictionary(have_sha256)
        return FetchPlan(headers, have, have_sha256, self.delta, dictionary if self.dcz else None)

    def full_plan(self) -> FetchPlan:
        """Headers for the fallback request: no If-None-Match, no A-IM, no dictionary."""
        return FetchPlan(delta_request_headers(None), full=True)

    # -- responses ------------------------------------------------------------------------------

    def decide(
        self,
        plan: FetchPlan,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        url: str,
        coding: str = "identity",
        digests: dict[str, bytes] | None = None,
    ) -> Decision:
        """Decide on a response to ``plan``. ``body`` is the decoded content (for 226: the
        patch). ``digests``: digests of ``body`` already computed (``{"sha-256": ...}``), reused
        instead of hashing again."""
        if status == 304:
            if plan.have is None:
                raise TransportError(f"GET {url} answered 304 to a request naming no version")
            return Decision("have", data=plan.have, stat="fetch_not_modified")
        if status == 226:
            return self._on_226(plan, headers, body, url)
        if status != 200:
            raise TransportError(f"GET {url} answered {status}; expected the artifact")
        digests = {} if digests is None else digests
        checked = self._check_etag(url, body, headers.get("etag"), digests)
        if not checked and not headers.get("content-digest") and not headers.get("repr-digest"):
            raise DigestMismatchError(
                f"{url}: the server sent no digest and no strong ETag; "
                "the artifact cannot be verified"
            )
        return Decision(
            "accept",
            data=body,
            stat="fetch_dcz" if coding.strip().lower() == "dcz" else "fetch_full",
        )

    def _on_226(
        self, plan: FetchPlan, headers: Mapping[str, str], body: bytes, url: str
    ) -> Decision:
        if not plan.delta or plan.have_sha256 is None:
            raise TransportError(
                f"{url}: 226 IM Used answered a request that asked for no " "instance manipulation"
            )
        try:
            ims = parse_im(headers.get("im", ""))
        except InvalidArgumentError:
            ims = []
        if IM_RCDELTA not in ims:
            raise TransportError(
                f"{url}: 226 response with unsupported IM " f"{headers.get('im')!r}"
            )
        repr_digest = headers.get("repr-digest")
        if not repr_digest:
            raise DigestMismatchError(
                f"{url}: delta response carries no Repr-Digest; " "refusing an unverifiable result"
            )
        try:
            announced = parse_digest(repr_digest)
        except InvalidArgumentError as exc:
            raise DigestMismatchError(
                f"{url}: unusable Repr-Digest on a delta response: {exc}"
            ) from exc
        if "sha-256" not in announced and "sha-512" not in announced:
            raise DigestMismatchError(
                f"{url}: Repr-Digest names no supported algorithm " f"({sorted(announced)})"
            )
        return Decision("apply", patch=body, stat="fetch_expanded" if plan.first else "fetch_delta")

    def check_delta_base(self, plan: FetchPlan, headers: Mapping[str, str], url: str) -> None:
        """``Delta-Base`` must name what the request said it holds: the empty string's SHA-256
        for a first download (where the field is required), ``have`` otherwise (when sent).
        BaseMismatchError (an unusable patch: the caller falls back) otherwise."""
        value = headers.get("delta-base")
        if not value:
            if plan.first:
                raise BaseMismatchError(
                    f"{url}: a 226 to a first download without Delta-Base (the empty base)"
                )
            return
        sha = etag_to_sha256(value)
        held = plan.have_sha256
        if sha is None or held is None or not hmac.compare_digest(sha, held):
            what = "a first download (no base)" if plan.first else "the version it holds"
            raise BaseMismatchError(
                f"{url}: the 226 names Delta-Base {value}, not {what}; patch dropped"
            )

    def first_download_target(
        self, plan: FetchPlan, headers: Mapping[str, str], url: str
    ) -> tuple[bytes | None, tuple[str, bytes] | None]:
        """Header checks of a ``226`` to a first download, before its body is decoded.

        Returns ``(expected_sha256, post_digest)``: the SHA-256 the patch's declared target
        must equal (``Repr-Digest``'s ``sha-256`` member, else the strong ETag's; None when
        neither names one), and the digest the output must still be checked against (a
        ``sha-512``-only ``Repr-Digest``), or None. Raises BaseMismatchError for a Delta-Base
        that is not the empty one, DigestMismatchError when ``Repr-Digest`` and the ETag
        disagree (the server contradicts itself), TransportError when the request was no
        first download.
        """
        if not plan.first:
            raise TransportError(f"{url}: first-download checks on a request naming a base")
        self.check_delta_base(plan, headers, url)
        try:
            announced = parse_digest(headers.get("repr-digest", ""))
        except InvalidArgumentError as exc:
            raise DigestMismatchError(f"{url}: unusable Repr-Digest on a 226: {exc}") from exc
        etag_sha = etag_to_sha256(headers.get("etag", "")) if headers.get("etag") else None
        want = announced.get("sha-256")
        if want is not None and etag_sha is not None and not hmac.compare_digest(want, etag_sha):
            raise DigestMismatchError(
                f"{url}: Repr-Digest and ETag {headers.get('etag')} name different artifacts; "
                "nothing was written"
            )
        expected = want if want is not None else etag_sha
        if want is None and "sha-512" in announced:
            return expected, ("sha-512", announced["sha-512"])
        if expected is None:
            raise DigestMismatchError(f"{url}: the 226 names no SHA-256 or SHA-512 of its target")
        return expected, None

    def before_apply(
        self, plan: FetchPlan, info: Any, headers: Mapping[str, str], url: str
    ) -> tuple[str, bytes] | None:
        """Checks on the patch header (``DeltaAggregator.inspect``), before any work.

        Raises DigestMismatchError when the patch's target disagrees with ``Repr-Digest`` or the
        ETag (the server contradicts itself), BaseMismatchError when it was made for another
        base. Returns the digest the output must still be checked against after applying, or
        None when the patch's target SHA-256 (which ``apply`` verifies) already equals
        ``Repr-Digest``'s.
        """
        target = bytes.fromhex(info.target_sha256)
        self.check_delta_base(plan, headers, url)
        if plan.have_sha256 is None or bytes.fromhex(info.base_sha256) != plan.have_sha256:
            raise BaseMismatchError(f"{url}: the server sent a patch for another base")
        if plan.first and (info.method != _EXPANDED_METHOD or info.base_size != 0):
            raise CorruptPatchError(
                f"{url}: a first download was answered with a {info.method} patch; only "
                "EXPANDED patches against the empty base are accepted"
            )
        announced = parse_digest(headers.get("repr-digest", ""))
        etag_sha = etag_to_sha256(headers.get("etag", "")) if headers.get("etag") else None
        if etag_sha is not None and not hmac.compare_digest(etag_sha, target):
            raise DigestMismatchError(
                f"{url}: the patch's target does not match the ETag "
                f"{headers.get('etag')}; nothing was written"
            )
        if "sha-256" in announced:
            if not hmac.compare_digest(announced["sha-256"], target):
                raise DigestMismatchError(
                    f"{url} (patched): the patch's target SHA-256 does not match the "
                    "Repr-Digest the server announced; the data was discarded, retry the "
                    "download"
                )
            return None
        return "sha-512", announced["sha-512"]

    def after_apply(
        self,
        plan: FetchPlan,
        data: bytes,
        limit: int,
        url: str,
        post_digest: tuple[str, bytes] | None,
    ) -> Decision:
        """The patched artifact: size limit, and the one remaining digest check if any."""
        if len(data) > limit:
            raise OutputTooLargeError(
                f"{url}: patched artifact is {len(data)} bytes, over " f"the {limit}-byte limit"
            )
        if post_digest is not None:
            alg, want = post_digest
            if not hmac.compare_digest(compute_digest(data, alg), want):
                raise DigestMismatchError(
                    f"{url} (patched): {alg} of the result does not "
                    "match the Repr-Digest the server announced"
                )
        return Decision("accept", data=data, stat="fetch_expanded" if plan.first else "fetch_delta")

    @staticmethod
    def unusable(exc: BaseException) -> str | None:
        """The stats counter when a patch failure means "take the full artifact", else None.

        Everything a patch can fail with on this side: the platform cannot rebuild it
        (ReproductionUnavailableError), it is over the limits (OutputTooLargeError, memory),
        corrupt or made for another base (CorruptPatchError, BaseMismatchError, any
        DeltaError), or its application ran past the deadline (TimeoutError). Digest
        disagreements are not in this list: they are the server contradicting itself and are
        raised.
        """
        if isinstance(exc, ReproductionUnavailableError):
            return "fetch_delta_unusable"
        if isinstance(exc, (TimeoutError,)):
            return "fetch_delta_timeout"
        if isinstance(exc, (OutputTooLargeError, MemoryError)):
            return "fetch_delta_too_large"
        if isinstance(exc, (CorruptPatchError, BaseMismatchError, DeltaError)):
            return "fetch_delta_failed"
        return None

    # -- verification ---------------------------------------------------------------------------

    @staticmethod
    def _check_etag(url: str, data: bytes, etag: str | None, digests: dict[str, bytes]) -> bool:
        sha = etag_to_sha256(etag) if etag else None
        if sha is None:
            return False
        actual = digests.get("sha-256")
        if actual is None:
            actual = digests["sha-256"] = sha256(data)
        if not hmac.compare_digest(actual, sha):
            raise DigestMismatchError(
                f"{url}: SHA-256 of the artifact does not match its ETag "
                f"{etag}; nothing was written"
            )
        return True


def verify_body(
    raw: bytes, headers: Mapping[str, str], what: str, digests: dict[str, bytes]
) -> None:
    """Check ``raw`` (the bytes as sent) against ``Content-Digest`` and, on a 200, against
    ``Repr-Digest`` (which covers the representation including its content coding); each
    algorithm is computed once and left in ``digests``."""
    for name in ("content-digest", "repr-digest"):
        value = headers.get(name)
        if value:
            verify_digest(raw, value, what=what, digests=digests)
