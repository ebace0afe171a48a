"""CertificateStore: one atomically replaced 0600 file per host; checks before writing."""

from __future__ import annotations

import datetime
import stat

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from registry_core.certs import CertificateStore, normalize_name
from registry_core.certs._acme import AcmeManager, renewal_due
from registry_core.errors import InvalidArgumentError


def issued(ca: trustme.CA, *names: str) -> tuple[bytes, bytes]:
    leaf = ca.issue_cert(*names)
    chain = b"".join(p.bytes() for p in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes()


def test_put_info_lookup_remove(tmp_path) -> None:
    ca = trustme.CA()
    store = CertificateStore(tmp_path / "certs")
    assert stat.S_IMODE((tmp_path / "certs").stat().st_mode) == 0o700
    chain, key = issued(ca, "acme.test")
    info = store.put("ACME.test.", chain, key)
    assert info.name == "acme.test" and info.dns_names == ("acme.test",)
    assert stat.S_IMODE(store.path("acme.test").stat().st_mode) == 0o600
    assert store.names() == ["acme.test"] and "acme.test" in store
    assert store.info("acme.test") == info
    assert store.lookup("Acme.Test") == store.path("acme.test")
    assert store.lookup("other.test") is None
    assert store.lookup("not a name") is None
    wild_chain, wild_key = issued(ca, "*.globex.test")
    store.put("*.globex.test", wild_chain, wild_key)
    assert store.lookup("eu.globex.test") == store.path("*.globex.test")
    assert store.lookup("a.eu.globex.test") is None  # a wildcard covers one label
    assert store.lookup("globex.test") is None
    store.remove("acme.test")
    assert store.info("acme.test") is None
    assert [p.name for p in (tmp_path / "certs").iterdir()] == ["*.globex.test.pem"]  # no temp


def test_put_refuses_mismatched_key_uncovered_name_and_junk(tmp_path) -> None:
    ca = trustme.CA()
    store = CertificateStore(tmp_path)
    chain, _ = issued(ca, "acme.test")
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidArgumentError, match="does not belong"):
        store.put("acme.test", chain, other_key)
    chain, key = issued(ca, "acme.test")
    with pytest.raises(InvalidArgumentError, match="does not name it"):
        store.put("globex.test", chain, key)
    with pytest.raises(InvalidArgumentError, match="no PEM certificate"):
        store.put("acme.test", b"junk", key)
    with pytest.raises(InvalidArgumentError, match="private key"):
        store.put("acme.test", chain, b"junk")
    assert store.names() == []


@pytest.mark.parametrize(
    "bad",
    ["", "..", "../etc/passwd", "a..b", "-a.test", "a_b.test", "*", "x" * 64 + ".test", "a.*.test"],
)
def test_bad_names_refused(bad) -> None:
    with pytest.raises(InvalidArgumentError):
        normalize_name(bad)


@given(
    st.from_regex(
        r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}",
        fullmatch=True,
    )
)
def test_normalize_is_idempotent_and_case_blind(name) -> None:
    assert normalize_name(name.upper() + ".") == normalize_name(name) == name


T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


@given(
    lifetime=st.integers(min_value=60, max_value=10 * 365 * 86400),
    elapsed=st.integers(min_value=-86400, max_value=11 * 365 * 86400),
    later=st.integers(min_value=0, max_value=86400 * 30),
)
def test_renewal_due_at_two_thirds_and_stays_due(lifetime, elapsed, later) -> None:
    start, end = T0, T0 + datetime.timedelta(seconds=lifetime)
    now = T0 + datetime.timedelta(seconds=elapsed)
    due = renewal_due(start, end, now)
    assert due == ((lifetime - elapsed) * 3 < lifetime)
    if due:  # monotonic: once due, due later too
        assert renewal_due(start, end, now + datetime.timedelta(seconds=later))


def test_renewal_due_examples() -> None:
    start, end = T0, T0 + datetime.timedelta(days=90)
    assert not renewal_due(start, end, T0 + datetime.timedelta(days=59))
    assert renewal_due(start, end, T0 + datetime.timedelta(days=61))


def test_manager_arguments_checked(tmp_path) -> None:
    store = CertificateStore(tmp_path)
    ok = {"directory_url": "https://acme.example/dir", "email": None, "domains": ["a.test"]}
    with pytest.raises(InvalidArgumentError, match="challenge"):
        AcmeManager(store, **ok, challenge="dns-01")
    with pytest.raises(InvalidArgumentError, match="https://"):
        AcmeManager(store, **{**ok, "directory_url": "http://acme.example/dir"})
    with pytest.raises(InvalidArgumentError, match="wildcard"):
        AcmeManager(store, **{**ok, "domains": ["*.a.test"]})
    with pytest.raises(InvalidArgumentError, match="CertificateStore"):
        AcmeManager(str(tmp_path), **ok)  # type: ignore[arg-type]
    manager = AcmeManager(store, **ok)
    assert "a.test" in repr(manager) and manager.due() == ["a.test"]


def test_plain_http_directory_only_on_loopback_when_allowed(tmp_path) -> None:
    store = CertificateStore(tmp_path)
    with pytest.raises(InvalidArgumentError, match="allow_http"):
        AcmeManager(store, directory_url="http://127.0.0.1:1/dir", email=None, domains=["a.test"])
    with pytest.raises(InvalidArgumentError, match="loopback"):
        AcmeManager(
            store,
            directory_url="http://acme.example/dir",
            email=None,
            domains=["a.test"],
            allow_http=True,
        )
    AcmeManager(
        store,
        directory_url="http://127.0.0.1:1/dir",
        email=None,
        domains=["a.test"],
        allow_http=True,
    )


def test_import_is_cheap_and_a_missing_acme_extra_names_itself(tmp_path) -> None:
    import subprocess
    import sys

    code = f"""
import sys
import registry_core.certs
heavy = [m for m in ("acme", "josepy", "cryptography", "hypercorn") if m in sys.modules]
assert not heavy, heavy
sys.modules["acme"] = None  # as if the extra were not installed
from registry_core.certs import AcmeManager, CertificateStore
m = AcmeManager(CertificateStore({str(tmp_path)!r}), directory_url="https://a.example/d",
                email=None, domains=["a.test"])
try:
    m.ensure_sync()
except ModuleNotFoundError as exc:
    assert "registry-core[acme]" in str(exc), exc
else:
    raise AssertionError("no error")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
