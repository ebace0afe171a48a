"""ACME (RFC 8555) certificates for custom domains, with certbot's ``acme`` library.

Flow per domain: account (EC P-256 key kept 0600 next to the store, registered once), new
order, HTTP-01 (our server answers ``/.well-known/acme-challenge/<token>`` through
:attr:`AcmeManager.challenge_app` while the challenge is pending), finalize with a CSR for
a fresh key, download the chain, check it covers the name, store key + chain atomically
(:class:`CertificateStore`). The TLS server picks the new file up at the next handshake.

Renewal is decided by :func:`renewal_due` (sans-IO): renew when less than a third of the
certificate's lifetime is left (Let's Encrypt's 90-day certificates: 30 days before expiry).
TLS verification toward the ACME server is always on (``ca_bundle`` names a private CA).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._util import atomic_write
from ..errors import AcmeError, InvalidArgumentError
from ._store import CertificateStore, normalize_name

__all__ = ["ACME_EXTRA_HINT", "AcmeError", "AcmeManager", "renewal_due"]

ACME_EXTRA_HINT = "ACME needs the acme extra: pip install 'registry-core[acme]'"
CHALLENGE_PREFIX = "/.well-known/acme-challenge/"

log = logging.getLogger("registry_core.certs")


def renewal_due(
    not_valid_before: datetime.datetime,
    not_valid_after: datetime.datetime,
    now: datetime.datetime,
    *,
    fraction: float = 1 / 3,
) -> bool:
    """True when less than ``fraction`` of the certificate's lifetime remains at ``now``."""
    lifetime = not_valid_after - not_valid_before
    return not_valid_after - now < lifetime * fraction


def _require_acme() -> tuple[Any, Any, Any, Any, Any]:
    try:
        import josepy
        from acme import challenges, client, crypto_util, messages
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"{ACME_EXTRA_HINT} ({exc.name} is not installed)", name=exc.name
        ) from None
    return josepy, challenges, client, crypto_util, messages


class AcmeManager:
    """Obtain and renew a certificate for each of ``domains`` into ``store``.

    ``challenge="http-01"``: serve :attr:`challenge_app` (or :meth:`wrap` your app) on port 80
    of every domain (or wherever the ACME server's validator connects). Pending key
    authorizations live in this process's memory only. ``tls-alpn-01`` is refused (see
    docs/domains.md: Python's ssl cannot see the client's ALPN offer when it picks the
    certificate). ``allow_http``: an ``http://`` directory on loopback (a local test CA).
    """

    def __init__(
        self,
        store: CertificateStore,
        *,
        directory_url: str,
        email: str | None,
        domains: Iterable[str],
        ca_bundle: str | None = None,
        challenge: str = "http-01",
        timeout_s: float = 90.0,
        now: Callable[[], datetime.datetime] | None = None,
        allow_http: bool = False,
    ) -> None:
        if not isinstance(store, CertificateStore):
            raise InvalidArgumentError(
                f"store must be a CertificateStore, got {type(store).__name__}"
            )
        if challenge != "http-01":
            raise InvalidArgumentError(
                f"challenge {challenge!r} is not supported (supported: 'http-01')"
            )
        schemes = ("https://", "http://") if allow_http else ("https://",)
        if not isinstance(directory_url, str) or not directory_url.startswith(schemes):
            raise InvalidArgumentError(
                f"directory_url must be an https:// URL, got {directory_url!r}"
                + ("" if allow_http else " (allow_http=True permits http:// on loopback)")
            )
        if allow_http and directory_url.startswith("http://"):
            from urllib.parse import urlsplit

            from .._util import is_loopback

            if not is_loopback(urlsplit(directory_url).hostname or ""):
                raise InvalidArgumentError(
                    f"directory_url {directory_url!r}: plain http:// only on loopback"
                )
        self.store = store
        self.directory_url = directory_url
        self.email = email
        self.domains = [normalize_name(d) for d in domains]
        if any(d.startswith("*") for d in self.domains):
            raise InvalidArgumentError("wildcard names need DNS-01, which is not supported")
        self.ca_bundle = ca_bundle
        self.challenge = challenge
        self.timeout_s = timeout_s
        self._now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self._pending: dict[str, bytes] = {}
        self._lock = threading.Lock()  # one issuance at a time (the account, the pending map)
        self._client: Any = None
        self.challenge_app: Callable[..., Awaitable[None]] | None = (
            self._serve_challenge if challenge == "http-01" else None
        )

    def __repr__(self) -> str:
        return f"AcmeManager({self.directory_url!r}, domains={self.domains!r})"

    # -- HTTP-01 ----------------------------------------------------------------------------

    async def _serve_challenge(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI: the key authorization for a pending token, else 404."""
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        body = None
        if path.startswith(CHALLENGE_PREFIX) and scope.get("method") in ("GET", "HEAD"):
            body = self._pending.get(path[len(CHALLENGE_PREFIX) :])
        status = 200 if body is not None else 404
        body = body if body is not None else b"not found\n"
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""}
        )

    def wrap(self, app: Any) -> Callable[..., Awaitable[None]]:
        """``app`` with ``/.well-known/acme-challenge/*`` answered here first."""

        async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope.get("path", "").startswith(CHALLENGE_PREFIX):
                await self._serve_challenge(scope, receive, send)
            else:
                await app(scope, receive, send)

        return wrapped

    # -- decisions ----------------------------------------------------------------------------

    def due(self) -> list[str]:
        """The domains without a certificate, or whose certificate is due for renewal."""
        now = self._now()
        out = []
        for name in self.domains:
            info = self.store.info(name)
            if info is None or renewal_due(info.not_valid_before, info.not_valid_after, now):
                out.append(name)
        return out

    async def ensure(self) -> list[str]:
        """Issue or renew what is due; returns the names that got a new certificate."""
        due = self.due()
        if not due:
            return []
        return await asyncio.to_thread(self._issue_all, due)

    def ensure_sync(self) -> list[str]:
        """:meth:`ensure` for a caller without an event loop."""
        due = self.due()
        return self._issue_all(due) if due else []

    # -- ACME ---------------------------------------------------------------------------------

    def _issue_all(self, names: list[str]) -> list[str]:
        with self._lock:
            done = []
            for name in names:
                self._issue(name)
                done.append(name)
            return done

    def _account_dir(self) -> Any:
        path = self.store.directory / ".acme"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def _acme_client(self) -> Any:
        if self._client is not None:
            return self._client
        josepy, _, client, _, messages = _require_acme()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        folder = self._account_dir()
        key_path = folder / "account-key.pem"
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            atomic_write(
                key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
                fsync=True,
                mode=0o600,
            )
        jwk = josepy.JWKEC(key=key)
        net = client.ClientNetwork(
            jwk,
            alg=josepy.ES256,
            verify_ssl=self.ca_bundle if self.ca_bundle else True,
            user_agent="registry-core",
            timeout=30,
        )
        try:
            directory = client.ClientV2.get_directory(self.directory_url, net)
            acme = client.ClientV2(directory, net=net)
            # Registering again with the same key answers the existing account (RFC 8555
            # 7.3.1), so no account URL needs keeping between runs.
            regr = messages.NewRegistration.from_data(
                email=self.email, terms_of_service_agreed=True
            )
            try:
                account = acme.new_account(regr)
            except Exception as exc:
                from acme import errors as acme_errors

                if not isinstance(exc, acme_errors.ConflictError):
                    raise
                account = acme.query_registration(
                    messages.RegistrationResource(uri=exc.location, body=messages.Registration())
                )
            net.account = account
            atomic_write(
                folder / "account.json",
                json.dumps({"directory": self.directory_url, "uri": account.uri}).encode(),
            )
        except AcmeError:
            raise
        except Exception as exc:
            raise AcmeError(f"ACME account at {self.directory_url}: {_why(exc)}") from None
        self._client = acme
        return acme

    def _issue(self, name: str) -> None:
        _, challenges, _, crypto_util, _ = _require_acme()
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        acme = self._acme_client()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        csr = crypto_util.make_csr(key_pem, [name])
        tokens: list[str] = []
        try:
            order = acme.new_order(csr)
            for authz in order.authorizations:
                if authz.body.status.name == "valid":
                    continue
                chosen = next(
                    (c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                    None,
                )
                if chosen is None:
                    raise AcmeError(f"{name}: the ACME server offers no HTTP-01 challenge")
                response, validation = chosen.response_and_validation(acme.net.key)
                token = chosen.chall.encode("token")
                self._pending[token] = validation.encode()
                tokens.append(token)
                acme.answer_challenge(chosen, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout_s)
            order = acme.poll_and_finalize(order, deadline)
        except AcmeError:
            raise
        except Exception as exc:
            raise AcmeError(f"{name}: ACME order failed: {_why(exc)}") from None
        finally:
            for token in tokens:
                self._pending.pop(token, None)
        chain = order.fullchain_pem.encode()
        leaf = x509.load_pem_x509_certificates(chain)[0]
        if key.public_key().public_numbers() != leaf.public_key().public_numbers():  # type: ignore[union-attr]
            raise AcmeError(f"{name}: the issued certificate is not for our key")
        self.store.put(name, chain, key_pem)
        log.info("certificate for %s stored (expires %s)", name, leaf.not_valid_after_utc)


def _why(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None) or getattr(exc, "description", None)
    text = str(detail or exc) or type(exc).__name__
    return text.splitlines()[0][:300]
