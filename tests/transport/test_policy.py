"""FetchPolicy, sans-IO: request headers from what the client holds, decisions from responses.

No sockets and no event loop: headers, statuses and bodies are built here; patches are real
(made with DeltaAggregator).
"""

from __future__ import annotations

import hashlib

import pytest

from registry_core.delta import DeltaAggregator
from registry_core.errors import (
    BaseMismatchError,
    CorruptPatchError,
    DigestMismatchError,
    OutputTooLargeError,
    ReproductionUnavailableError,
    TransportError,
)
from registry_core.transport import FetchPolicy
from registry_core.transport._policy import reproduced_engines
from registry_core.wire import etag_for, format_digest, parse_delta_request

OLD = b"version one of the artifact\n" * 200
NEW = OLD.replace(b"one", b"two", 3) + b"a new line\n"
URL = "https://registry.test/pkg.whl"


def policy(**kw):
    kw.setdefault("delta", True)
    kw.setdefault("dcz", False)
    kw.setdefault("engines", frozenset({"zlib", "miniz"}))
    return FetchPolicy(**kw)


def headers_226(target=NEW, *, repr_of=None, etag_of=None):
    return {
        "im": "rcdelta",
        "repr-digest": format_digest(repr_of or target),
        "etag": etag_for(etag_of or target),
        "delta-base": etag_for(OLD),
    }


def test_plan_names_what_the_client_holds_and_its_engines():
    plan = policy().plan(OLD)
    h = plan.headers
    assert h["if-none-match"] == etag_for(OLD) and h["a-im"] == "rcdelta"
    assert h["delta-engines"] == "zlib, miniz" and h["want-repr-digest"] == "sha-256=10"
    ask = parse_delta_request(h)
    assert ask.wants_rcdelta and ask.engines == {"zlib", "miniz"}
    assert ask.base_sha256s() == [hashlib.sha256(OLD).digest()] == [plan.have_sha256]


def test_plan_without_engines_still_asks_but_says_so():
    h = policy(engines=frozenset()).plan(OLD).headers
    assert h["a-im"] == "rcdelta" and h["delta-engines"] == ""
    assert parse_delta_request(h).engines == frozenset()


def test_plan_with_delta_off_only_names_the_version():
    h = policy(delta=False).plan(OLD).headers
    assert "a-im" not in h and "delta-engines" not in h
    assert h["if-none-match"] == etag_for(OLD)


def test_plan_uses_the_given_digest_instead_of_hashing():
    fake = b"\x01" * 32
    plan = policy().plan(OLD, have_sha256=fake)
    assert plan.headers["if-none-match"] == '"' + fake.hex() + '"'


def test_dcz_plan_offers_the_dictionary():
    from registry_core.compress import Dictionary

    d = Dictionary(OLD)
    plan = policy(dcz=True).plan(OLD, dictionary=d)
    assert plan.dictionary is d and plan.have_sha256 == d.sha256
    assert "available-dictionary" in plan.headers


def test_full_plan_carries_no_delta_headers():
    h = policy().full_plan().headers
    assert not {"if-none-match", "a-im", "delta-engines", "available-dictionary"} & set(h)


def test_304_returns_what_the_client_holds():
    p = policy()
    d = p.decide(p.plan(OLD), 304, {}, b"", url=URL)
    assert d.action == "have" and d.data is OLD
    with pytest.raises(TransportError):
        p.decide(p.plan(None), 304, {}, b"", url=URL)


def test_200_is_accepted_after_its_etag_check():
    p = policy()
    d = p.decide(p.plan(OLD), 200, {"etag": etag_for(NEW)}, NEW, url=URL)
    assert d.action == "accept" and d.data == NEW and d.stat == "fetch_full"
    with pytest.raises(DigestMismatchError):
        p.decide(p.plan(OLD), 200, {"etag": etag_for(OLD)}, NEW, url=URL)
    with pytest.raises(DigestMismatchError, match="no digest"):
        p.decide(p.plan(OLD), 200, {}, NEW, url=URL)


def test_200_reuses_a_digest_already_computed():
    p = policy()
    known = {"sha-256": hashlib.sha256(NEW).digest()}
    d = p.decide(p.plan(None), 200, {"etag": etag_for(NEW)}, NEW, url=URL, digests=known)
    assert d.action == "accept"
    wrong = {"sha-256": b"\0" * 32}  # a (wrong) cached digest is trusted: proves no rehash
    with pytest.raises(DigestMismatchError):
        p.decide(p.plan(None), 200, {"etag": etag_for(NEW)}, NEW, url=URL, digests=wrong)


def test_dcz_answer_counts_as_dcz():
    p = policy()
    d = p.decide(p.plan(OLD), 200, {"etag": etag_for(NEW)}, NEW, url=URL, coding="dcz")
    assert d.stat == "fetch_dcz"


def test_226_goes_to_apply_after_header_checks():
    p = policy()
    patch = DeltaAggregator().diff(OLD, NEW)
    plan = p.plan(OLD)
    d = p.decide(plan, 226, headers_226(), patch, url=URL)
    assert d.action == "apply" and d.patch == patch
    post = p.before_apply(plan, DeltaAggregator.inspect(patch), headers_226(), URL)
    assert post is None  # the patch's declared target is Repr-Digest's: apply verifies it
    out = DeltaAggregator().apply(OLD, patch)
    done = p.after_apply(plan, out, 1 << 20, URL, post)
    assert done.action == "accept" and done.data == NEW and done.stat == "fetch_delta"


@pytest.mark.parametrize(
    "hdrs, error",
    [
        ({"im": "vcdiff", "repr-digest": format_digest(NEW)}, TransportError),
        ({"im": '"rcdelta"', "repr-digest": format_digest(NEW)}, TransportError),
        ({"im": "rcdelta"}, DigestMismatchError),
        ({"im": "rcdelta", "repr-digest": "sha-256=:short:"}, DigestMismatchError),
        ({"im": "rcdelta", "repr-digest": "md5=:AAAAAAAAAAAAAAAAAAAAAA==:"}, DigestMismatchError),
    ],
)
def test_226_with_bad_headers_is_refused(hdrs, error):
    p = policy()
    with pytest.raises(error):
        p.decide(p.plan(OLD), 226, hdrs, b"patch", url=URL)


def test_226_to_a_request_without_a_im_is_refused():
    p = policy(delta=False)
    with pytest.raises(TransportError, match="asked for no"):
        p.decide(p.plan(OLD), 226, headers_226(), b"patch", url=URL)
    with pytest.raises(TransportError):
        p.decide(p.full_plan(), 226, headers_226(), b"patch", url=URL)


def test_patch_contradicting_repr_digest_or_etag_is_a_digest_error():
    p = policy()
    patch = DeltaAggregator().diff(OLD, NEW)
    info = DeltaAggregator.inspect(patch)
    plan = p.plan(OLD)
    with pytest.raises(DigestMismatchError, match="Repr-Digest"):
        p.before_apply(plan, info, headers_226(repr_of=NEW + b"!"), URL)
    with pytest.raises(DigestMismatchError, match="ETag"):
        p.before_apply(plan, info, headers_226(etag_of=NEW + b"!"), URL)


def test_patch_for_another_base_is_unusable_not_fatal():
    p = policy()
    patch = DeltaAggregator().diff(OLD + b"x", NEW)
    with pytest.raises(BaseMismatchError) as exc:
        p.before_apply(p.plan(OLD), DeltaAggregator.inspect(patch), headers_226(), URL)
    assert p.unusable(exc.value) == "fetch_delta_failed"


def test_sha512_only_repr_digest_is_checked_after_apply():
    p = policy()
    patch = DeltaAggregator().diff(OLD, NEW)
    plan = p.plan(OLD)
    hdrs = {**headers_226(), "repr-digest": format_digest(NEW, algorithms=("sha-512",))}
    post = p.before_apply(plan, DeltaAggregator.inspect(patch), hdrs, URL)
    assert post is not None and post[0] == "sha-512"
    assert p.after_apply(plan, NEW, 1 << 20, URL, post).data == NEW
    with pytest.raises(DigestMismatchError):
        p.after_apply(plan, NEW + b"!", 1 << 20, URL, post)
    with pytest.raises(OutputTooLargeError):
        p.after_apply(plan, NEW, 10, URL, post)


@pytest.mark.parametrize(
    "exc, stat",
    [
        (ReproductionUnavailableError("x"), "fetch_delta_unusable"),
        (OutputTooLargeError("x"), "fetch_delta_too_large"),
        (MemoryError(), "fetch_delta_too_large"),
        (CorruptPatchError("x"), "fetch_delta_failed"),
        (BaseMismatchError("x"), "fetch_delta_failed"),
        (TimeoutError(), "fetch_delta_timeout"),
        (DigestMismatchError("x"), None),
        (ValueError("x"), None),
    ],
)
def test_which_patch_failures_mean_take_the_full_artifact(exc, stat):
    assert FetchPolicy.unusable(exc) == stat


def test_other_statuses_are_errors():
    p = policy()
    for status in (404, 500, 206):
        with pytest.raises(TransportError):
            p.decide(p.plan(OLD), status, {}, b"", url=URL)


def test_reproduced_engines_follow_engine_reproduces(monkeypatch):
    from registry_core.delta import _deflate

    monkeypatch.setitem(_deflate._engine_ok, _deflate.ZLIB, False)
    monkeypatch.setitem(_deflate._engine_ok, _deflate.MINIZ, True)
    assert reproduced_engines() == {"miniz", "recon", "zstd-prefix"}
    monkeypatch.setitem(_deflate._engine_ok, _deflate.MINIZ, False)
    # the C core's own reconstruction needs no zlib, nor does a ZSTD_PREFIX patch
    assert reproduced_engines() == {"recon", "zstd-prefix"}
