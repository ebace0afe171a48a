"""Client-side trust: TUF metadata through python-tuf's ngclient, patch envelopes through DSSE.

:class:`TrustedIndex` wraps :class:`tuf.ngclient.Updater` (python-tuf's client, not ours):
it refreshes the top-level metadata, answers ``targetinfo(path)`` (walking hash-bin
delegations as ngclient does) and hands out the keys of the delegated role ``patches``, whose
delegation in the signed targets metadata names the keys (and threshold) that sign patch
envelopes. :class:`Transport` (``trust=``) and :class:`~registry_core.proxy.ProxyApp`
(``trust=``) check every artifact against it before returning or storing a byte.

Where ngclient lacks what we need, the gap is bridged at its edges:

- ngclient is synchronous and fetches with urllib3: metadata is fetched through
  :class:`TransportFetcher`, an ngclient ``FetcherInterface`` over our
  :class:`~registry_core.transport.SyncTransport` (TLS verified, size bounded), and async
  callers run refresh and lookups in a worker thread.
- ``Updater.refresh()`` runs once per Updater: each refresh builds a new Updater over the same
  metadata directory (the cached timestamp/snapshot versions there keep rollback protection).
- ngclient has no public accessor for the verified targets metadata, whose delegations carry
  the patch keys: it is read from the Updater's trusted set (``_trusted_set``, python-tuf
  7.x), i.e. exactly what ngclient verified, never re-read from disk.

:class:`PatchEnvelopes` is the server side: ``RegistryApp(envelopes=PatchEnvelopes(...))``
signs each patch it computes (DSSE, in-toto statement binding base, target and patch SHA-256).
Wire format: docs/wire.md section 7.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .._util import LRU
from ..errors import InvalidArgumentError, SignatureError

try:
    from tuf.api import exceptions as tuf_exceptions
    from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig
except ImportError as exc:  # the optional extra
    raise ImportError(
        "signed registries need the signing extra: pip install 'registry-core[signing]'"
    ) from exc

if TYPE_CHECKING:
    from securesystemslib.signer import Signer, SSlibKey
    from tuf.api.metadata import TargetFile

    from ..transport import SyncTransport

__all__ = ["PATCHES_ROLE", "PatchEnvelopes", "TransportFetcher", "TrustedIndex"]

#: The delegated role whose keys sign patch envelopes (published by TufRepository).
PATCHES_ROLE = "patches"
_MAX_METADATA = 64 << 20
_MAX_ENVELOPE = 1 << 20


class TransportFetcher(FetcherInterface):
    """An ngclient ``FetcherInterface`` over :class:`~registry_core.transport.SyncTransport`.

    ``verify``: as Transport's (True, False, or a CA bundle path). ``http://`` metadata URLs
    go through httpx's pool (TUF metadata is signed; nothing else is trusted over them).
    Non-200 answers raise ngclient's ``DownloadHTTPError`` (its root-version probing needs
    the 404). Bodies are bounded (64 MiB) and digest-checked like every Transport response.
    """

    def __init__(self, *, verify: bool | str = True, timeout: float = 30.0) -> None:
        self.verify = verify
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[bool, SyncTransport] = {}

    def _client(self, plain: bool) -> SyncTransport:
        with self._lock:
            c = self._clients.get(plain)
            if c is None:
                from ..transport import SyncTransport

                kw: dict[str, Any] = {
                    "timeout": self.timeout,
                    "max_response_size": _MAX_METADATA,
                    "coalesce_requests": False,
                }
                if plain:
                    import httpx

                    kw.update(transport=httpx.AsyncHTTPTransport(), allow_http=True)
                else:
                    kw.update(verify=self.verify)
                c = self._clients[plain] = SyncTransport(**kw)
            return c

    def _fetch(self, url: str) -> Iterator[bytes]:
        r = self._client(url.startswith("http://")).get(url)
        if r.status != 200:
            raise tuf_exceptions.DownloadHTTPError(f"GET {url} answered {r.status}", r.status)
        return iter((r.content,))

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()


def _hex32(name: str, value: bytes | str) -> str:
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return bytes(value).hex()
    if isinstance(value, str) and len(value) == 64:
        try:
            bytes.fromhex(value)
        except ValueError:
            pass
        else:
            return value.lower()
    raise InvalidArgumentError(f"{name} must be a SHA-256 digest (32 bytes or 64 hex digits)")


class TrustedIndex:
    """A registry's TUF metadata, verified by python-tuf's ngclient.

    ``root``: the trusted root metadata (bytes, or a path to ``1.root.json`` shipped out of
    band). ``metadata_url``: where the metadata is served (``https://host/tuf/``).
    ``cache_dir``: ngclient's metadata directory (the versions cached there are its rollback
    protection). ``target_base_url``: where targets are served (default: the metadata URL's
    origin, ``/``); an artifact URL maps to the target path below it. ``verify``: TLS
    verification for the default fetcher. ``fetcher``: an ngclient ``FetcherInterface``
    instead. ``max_age``: seconds a refresh is trusted before the next lookup refreshes again
    (a target not found refreshes once more before it is refused). ``require_algorithms``:
    algorithms every patch envelope must carry a valid signature of (e.g. ``("ml-dsa-65",)``),
    beyond the TUF threshold of the ``patches`` role.

    Thread-safe; every method may block on the network (async callers use a worker thread).
    """

    def __init__(
        self,
        root: bytes | str | os.PathLike[str],
        metadata_url: str,
        cache_dir: str | os.PathLike[str],
        *,
        target_base_url: str | None = None,
        verify: bool | str = True,
        fetcher: Any = None,
        max_age: float = 60.0,
        require_algorithms: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(root, (bytes, bytearray)):
            self._root = bytes(root)
        else:
            self._root = Path(root).read_bytes()
        if not metadata_url.startswith(("https://", "http://")):
            raise InvalidArgumentError(f"metadata_url must be http(s)://, not {metadata_url!r}")
        self.metadata_url = metadata_url.rstrip("/") + "/"
        if target_base_url is None:
            parts = urlsplit(self.metadata_url)
            target_base_url = f"{parts.scheme}://{parts.netloc}/"
        self.target_base_url = target_base_url.rstrip("/") + "/"
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._own_fetcher = fetcher is None
        self.fetcher = fetcher if fetcher is not None else TransportFetcher(verify=verify)
        self.max_age = max_age
        self.require_algorithms = tuple(require_algorithms)
        self.clock = clock
        self._lock = threading.RLock()
        self._updater: Updater | None = None
        self._refreshed_at: float | None = None
        self._generation = 0
        self._patch_keys: tuple[dict[str, SSlibKey], int] | None = None
        # targets looked up since the last refresh (async callers skip a thread hop on a hit)
        self._known: LRU[str, TargetFile] = LRU(max_entries=4096)
        self.refreshes = 0

    # -- metadata ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch and verify root (rotations), timestamp, snapshot and targets with ngclient.

        A failure (rollback, freeze, wrong key, expired role, unreachable repository) raises
        :class:`SignatureError` naming ngclient's reason; the previous state is kept.
        """
        with self._lock:
            updater = Updater(
                str(self.cache_dir),
                self.metadata_url,
                target_base_url=self.target_base_url,
                fetcher=self.fetcher,
                # targets are served at their storage paths (TufRepository's layout)
                config=UpdaterConfig(prefix_targets_with_hash=False),
                bootstrap=self._root,
            )
            try:
                updater.refresh()
            except tuf_exceptions.RepositoryError as exc:
                raise SignatureError(
                    f"TUF metadata from {self.metadata_url} refused ({type(exc).__name__}): {exc}"
                ) from exc
            except tuf_exceptions.DownloadError as exc:
                raise SignatureError(
                    f"TUF metadata from {self.metadata_url} could not be fetched: {exc}"
                ) from exc
            self._updater = updater
            self._refreshed_at = self.clock()
            self._generation += 1
            self._patch_keys = None
            self._known = LRU(max_entries=4096)
            self.refreshes += 1

    def _fresh(self) -> tuple[Updater, int]:
        with self._lock:
            if (
                self._updater is None
                or self._refreshed_at is None
                or self.clock() - self._refreshed_at > self.max_age
            ):
                self.refresh()
            assert self._updater is not None
            return self._updater, self._generation

    def target_path(self, url: str) -> str:
        """The TUF target path an artifact URL names; SignatureError if it is not below
        ``target_base_url``."""
        base = self.target_base_url
        if not url.startswith(base):
            raise SignatureError(
                f"{url} is not a target of the trusted index (targets are under {base})"
            )
        path = unquote(urlsplit(url).path)[len(urlsplit(base).path) :]
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
            raise SignatureError(f"{url}: not a TUF target path")
        return path

    def targetinfo(self, path: str) -> TargetFile:
        """The signed length and hashes of ``path``; SignatureError when no role lists it."""
        updater, generation = self._fresh()
        for attempt in range(2):
            try:
                info = updater.get_targetinfo(path)
            except tuf_exceptions.RepositoryError as exc:
                raise SignatureError(
                    f"TUF delegated metadata for {path!r} refused ({type(exc).__name__}): {exc}"
                ) from exc
            except tuf_exceptions.DownloadError as exc:
                raise SignatureError(
                    f"TUF delegated metadata for {path!r} could not be fetched: {exc}"
                ) from exc
            if info is not None:
                if "sha256" not in info.hashes:
                    raise SignatureError(f"TUF target {path!r} has no sha256 hash")
                with self._lock:
                    if self._generation == generation:
                        self._known.put(path, info)
                return info
            if attempt == 0:  # perhaps uploaded since the last refresh: refresh once (shared)
                with self._lock:
                    if self._generation == generation:
                        self.refresh()
                    assert self._updater is not None
                    updater = self._updater
        raise SignatureError(f"{path!r} is not a target of the TUF targets metadata (any role)")

    def ready(self, path: str) -> TargetFile | None:
        """``path``'s target info when it can be answered without I/O (fresh metadata, path
        looked up before, patch keys loaded): async callers then stay on their loop."""
        with self._lock:
            if (
                self._refreshed_at is None
                or self._patch_keys is None
                or self.clock() - self._refreshed_at > self.max_age
            ):
                return None
            return self._known.get(path)

    def verify_target(self, path: str, data: bytes) -> TargetFile:
        """Check ``data`` against the signed length and sha256 of ``path`` (SignatureError)."""
        info = self.targetinfo(path)
        if len(data) != info.length:
            raise SignatureError(
                f"{path!r}: {len(data)} bytes, but the TUF targets metadata says {info.length}"
            )
        got = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(got, info.hashes["sha256"].lower()):
            raise SignatureError(
                f"{path!r}: sha256 {got} does not match the TUF targets metadata "
                f"({info.hashes['sha256']})"
            )
        return info

    def download(self, path: str, dest: str | os.PathLike[str]) -> str:
        """ngclient's own verified download of target ``path`` to ``dest`` (a file path)."""
        updater, _ = self._fresh()
        info = self.targetinfo(path)
        try:
            return updater.download_target(info, str(dest))
        except tuf_exceptions.RepositoryError as exc:
            raise SignatureError(f"TUF target {path!r} refused: {exc}") from exc

    # -- patch envelopes -----------------------------------------------------------------------

    def patch_keys(self) -> tuple[dict[str, SSlibKey], int]:
        """(keys by key id, threshold) of the ``patches`` role, from the verified targets
        metadata's delegations; SignatureError when it delegates no such role."""
        updater, _ = self._fresh()
        with self._lock:
            if self._patch_keys is not None:
                return self._patch_keys
            trusted = getattr(updater, "_trusted_set", None)
            if trusted is None:  # pragma: no cover - a python-tuf without the trusted set
                raise SignatureError("this python-tuf exposes no verified targets metadata")
            targets = trusted.targets
            delegations = targets.delegations
            role = None
            if delegations is not None and delegations.roles:
                role = delegations.roles.get(PATCHES_ROLE)
            if role is None:
                raise SignatureError(
                    f"the TUF targets metadata delegates no {PATCHES_ROLE!r} role: "
                    "patch envelopes cannot be verified"
                )
            assert delegations is not None
            keys = {k: delegations.keys[k] for k in role.keyids if k in delegations.keys}
            if len(keys) < role.threshold:
                raise SignatureError(
                    f"the {PATCHES_ROLE!r} role lists {len(keys)} known key(s) for a "
                    f"threshold of {role.threshold}"
                )
            self._patch_keys = (keys, role.threshold)
            return self._patch_keys

    def verify_patch(
        self,
        envelope: bytes,
        *,
        target_path: str,
        base_sha256: bytes | str,
        target_sha256: bytes | str,
        patch_sha256: bytes | str,
        refresh: bool = True,
    ) -> None:
        """Verify a patch's DSSE envelope: signed by the ``patches`` role's keys (TUF
        threshold, ``require_algorithms``) and binding exactly this base, target and patch.
        SignatureError otherwise.

        An envelope signed only by keys the current metadata does not know (the registry
        rotated its patch keys since the last refresh) refreshes the metadata once and is
        checked again (``refresh=False``: never; no I/O then)."""
        from ._dsse import verify_patch_envelope

        if not isinstance(envelope, (bytes, bytearray)) or len(envelope) > _MAX_ENVELOPE:
            raise SignatureError("patch envelope missing or over 1 MiB")
        base, target, patch = (
            _hex32("base_sha256", base_sha256),
            _hex32("target_sha256", target_sha256),
            _hex32("patch_sha256", patch_sha256),
        )
        for attempt in range(2):
            generation = self._generation
            keys, threshold = self.patch_keys()
            try:
                verify_patch_envelope(
                    bytes(envelope),
                    keys,
                    threshold,
                    base_sha256=base,
                    target_sha256=target,
                    patch_sha256=patch,
                    require_algorithms=self.require_algorithms,
                    target_name=target_path,
                    role=PATCHES_ROLE,
                )
                return
            except SignatureError:
                if attempt or not refresh or not _signed_by_unknown(bytes(envelope), keys):
                    raise
                with self._lock:
                    if self._generation == generation:
                        self.refresh()

    def close(self) -> None:
        """Close the default fetcher's connections."""
        if self._own_fetcher:
            close = getattr(self.fetcher, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> TrustedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrustedIndex({self.metadata_url!r}, targets at {self.target_base_url!r})"


def _signed_by_unknown(envelope: bytes, keys: Mapping[str, Any]) -> bool:
    """Whether an envelope carries signatures and none is by a key of ``keys``."""
    try:
        ids = {str(sig["keyid"]) for sig in json.loads(envelope)["signatures"]}
    except (ValueError, KeyError, TypeError):
        return False
    return bool(ids) and not ids & set(keys)


class PatchEnvelopes:
    """Signs patch envelopes on the server: ``RegistryApp(envelopes=PatchEnvelopes(...))``.

    ``signers``: securesystemslib Signers (a hybrid pair: Ed25519 + ML-DSA-65), or a
    :class:`~registry_core.signing.Keyring` whose active ``role`` (``patches``) keys are used:
    every active key signs, so during a rotation (old and new pairs both active) whichever
    pair the TUF ``patches`` role lists verifies. The keyring is read again (at most once a
    second), so a rotation or retirement takes effect without a restart; :attr:`keyids` says
    which keys sign now, and RegistryApp re-signs a stored envelope whose keys differ.
    Called as ``envelopes(target_name, target_sha256, base_sha256, patch_sha256)`` with raw
    32-byte digests; returns the DSSE envelope bytes.
    """

    def __init__(self, signers: Sequence[Signer] | Any, *, role: str = PATCHES_ROLE) -> None:
        self.role = role
        self._lock = threading.Lock()
        self._keyring: Any = None
        self._signers: list[Signer] = []
        self._checked_at = 0.0
        self.recheck = 1.0  # seconds between looks at the keyring
        if hasattr(signers, "keys") and hasattr(signers, "signer"):  # a Keyring
            self._keyring = signers
            self.signers()  # fail now when there is no usable key
        else:
            self._signers = list(signers)
        if not self._signers:
            raise InvalidArgumentError("PatchEnvelopes needs at least one signer")

    def signers(self) -> list[Signer]:
        """The signers used now (the keyring's active keys of the role, when given one)."""
        if self._keyring is None:
            return self._signers
        now = time.monotonic()
        if self._signers and now - self._checked_at < self.recheck:
            return self._signers  # RegistryApp asks on the event loop: at most one stat a second
        ids = sorted(k.key_id for k in self._keyring.keys(self.role))
        with self._lock:
            self._checked_at = now
            if ids != sorted(s.public_key.keyid for s in self._signers):
                if not ids:
                    from ..errors import SigningKeyError

                    raise SigningKeyError(f"the keyring has no active {self.role!r} key")
                self._signers = [self._keyring.signer(i) for i in ids]
            return self._signers

    @property
    def keyids(self) -> frozenset[str]:
        """Key ids of the signers used now."""
        return frozenset(s.public_key.keyid for s in self.signers())

    def __call__(
        self, target_name: str, target_sha256: bytes, base_sha256: bytes, patch_sha256: bytes
    ) -> bytes:
        from ._dsse import patch_statement, sign_envelope

        statement = patch_statement(
            target_name,
            _hex32("target_sha256", target_sha256),
            _hex32("base_sha256", base_sha256),
            _hex32("patch_sha256", patch_sha256),
        )
        return sign_envelope(statement, self.signers())

    def __repr__(self) -> str:
        return f"PatchEnvelopes({len(self._signers)} signer(s) for {self.role!r})"
