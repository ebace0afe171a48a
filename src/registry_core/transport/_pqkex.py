"""Hybrid post-quantum key exchange for HTTP/3: the X25519MLKEM768 TLS group in aioquic.

aioquic's TLS 1.3 knows only classical groups. :func:`install` teaches it X25519MLKEM768
(codepoint 0x11EC, draft-ietf-tls-ecdhe-mlkem), built only from cryptography's ML-KEM-768 and
X25519 primitives, combined as the draft says (no cryptography of our own):

* client key share: ML-KEM-768 encapsulation key (1184 B) || X25519 public key (32 B);
* server key share: ML-KEM-768 ciphertext (1088 B) || X25519 public key (32 B);
* shared secret: ML-KEM-768 shared secret (32 B) || X25519 shared secret (32 B).

The group is offered first; the classical groups stay in aioquic's own order after it, so a
peer without the group negotiates a classical one (aioquic's client lists P-256 first, a
server picks the first share of the client's it supports). A share of the wrong length, an
invalid encapsulation key or ciphertext, or an all-zero X25519 result raises ValueError,
which aioquic turns into an illegal_parameter alert: the handshake fails, nothing crashes.

PROCESS-WIDE: the patch changes module ``aioquic.tls`` itself, so every aioquic connection
made afterwards in this process (clients and servers, ours and anyone else's) offers and
accepts the group. There is no uninstall. It is opt-in (flag PQ_KEY_EXCHANGE) because it has
only been tested against itself, not against an independent implementation.
"""

from __future__ import annotations

import threading
import types
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import RegistryCoreError

__all__ = [
    "X25519MLKEM768",
    "PQKeyExchangeUnsupportedError",
    "hybrid_exchanges",
    "install",
    "installed",
    "supported",
]

X25519MLKEM768 = 0x11EC  # draft-ietf-tls-ecdhe-mlkem, IANA TLS Supported Groups

EK_LEN = 1184  # ML-KEM-768 encapsulation key
CT_LEN = 1088  # ML-KEM-768 ciphertext
X25519_LEN = 32
CLIENT_SHARE_LEN = EK_LEN + X25519_LEN
SERVER_SHARE_LEN = CT_LEN + X25519_LEN

_lock = threading.Lock()
_counts = {"client": 0, "server": 0}
_installed = False


class PQKeyExchangeUnsupportedError(RegistryCoreError):
    """The installed aioquic or cryptography cannot carry X25519MLKEM768."""


def _primitives() -> tuple[Any, Any]:
    """cryptography's ``mlkem`` and ``x25519`` modules (ML-KEM needs cryptography >= 47)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
    except ImportError:
        import cryptography

        raise PQKeyExchangeUnsupportedError(
            "X25519MLKEM768 needs ML-KEM-768 from cryptography >= 47 "
            f"(installed: cryptography {cryptography.__version__})"
        ) from None
    if not hasattr(mlkem, "MLKEM768PrivateKey"):
        raise PQKeyExchangeUnsupportedError("cryptography's mlkem module has no MLKEM768PrivateKey")
    return mlkem, x25519


def _count(role: str) -> None:
    with _lock:
        _counts[role] += 1


def hybrid_exchanges(role: str | None = None) -> int:
    """How many X25519MLKEM768 exchanges completed in this process: as ``"client"``, as
    ``"server"``, or both (None). A failed exchange is not counted."""
    with _lock:
        if role is None:
            return _counts["client"] + _counts["server"]
        if role not in _counts:
            raise ValueError(f"role must be 'client', 'server' or None, not {role!r}")
        return _counts[role]


def installed() -> bool:
    """Whether :func:`install` has patched aioquic in this process."""
    return _installed


class _Curve:
    """Stands for the group where aioquic expects an elliptic curve (it instantiates it)."""

    name = "X25519MLKEM768"
    key_size = 256


class _PrivateKey:
    """Our half of one exchange. The role follows from the order aioquic uses it in: a client
    encodes its share (encapsulation key) before exchanging; a server exchanges (encapsulates
    to the client's key) before encoding its share (the ciphertext)."""

    curve = _Curve()

    def __init__(self) -> None:
        mlkem, x25519 = _primitives()
        self._mlkem, self._x25519 = mlkem, x25519
        self._x = x25519.X25519PrivateKey.generate()
        self._dk: Any = None  # client: ML-KEM decapsulation key, made at first encode
        self._ct: bytes | None = None  # server: the ciphertext, made by exchange()
        self._done = False

    def public_key(self) -> _Share:
        return _Share(b"", self)

    def encode(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        x = self._x.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if self._ct is not None:  # server, after exchange()
            return self._ct + x
        if self._done:
            raise ValueError("X25519MLKEM768: share requested after the exchange")
        if self._dk is None:
            self._dk = self._mlkem.MLKEM768PrivateKey.generate()
        return self._dk.public_key().public_bytes_raw() + x

    def exchange(self, _algorithm: Any, peer: Any) -> bytes:
        data = peer.data if isinstance(peer, _Share) else b""
        if self._done:
            raise ValueError("X25519MLKEM768: key already used")
        if self._dk is not None:  # client: the server answered with a ciphertext
            if len(data) != SERVER_SHARE_LEN:
                raise ValueError(f"X25519MLKEM768 server share is {len(data)} B, not 1120")
            ss = self._dk.decapsulate(data[:CT_LEN])
            role = "client"
        else:  # server: the client sent an encapsulation key
            if len(data) != CLIENT_SHARE_LEN:
                raise ValueError(f"X25519MLKEM768 client share is {len(data)} B, not 1216")
            ek = self._mlkem.MLKEM768PublicKey.from_public_bytes(data[:EK_LEN])
            ss, ct = ek.encapsulate()
            role = "server"
        xs = self._x.exchange(self._x25519.X25519PublicKey.from_public_bytes(data[-X25519_LEN:]))
        if role == "server":
            self._ct = ct
        self._done = True
        _count(role)
        return bytes(ss) + xs


class _Share(ec.EllipticCurvePublicKey):
    """A key share of the group: the peer's raw bytes, or ours (``key``, encoded on demand).

    It subclasses cryptography's EllipticCurvePublicKey only so aioquic's isinstance dispatch
    routes it to its generic-curve branch; none of the EC methods apply."""

    curve = _Curve()  # type: ignore[assignment]
    key_size = 256

    def __init__(self, data: bytes, key: _PrivateKey | None = None) -> None:
        self.data, self.key = data, key

    def _no(self, *_: Any, **__: Any) -> Any:
        raise TypeError("an X25519MLKEM768 share is not an elliptic-curve key")

    public_numbers = public_bytes = verify = __copy__ = __deepcopy__ = _no

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def _decode_share(data: bytes) -> Any:
    if len(data) not in (CLIENT_SHARE_LEN, SERVER_SHARE_LEN):
        raise ValueError(f"X25519MLKEM768 share of {len(data)} B")
    return _Share(bytes(data))


def _check() -> tuple[Any, Any]:
    """aioquic.tls and its Context.__init__, once every internal the patch touches is there."""
    _primitives()
    try:
        import aioquic
        from aioquic import tls
    except ImportError as exc:
        raise PQKeyExchangeUnsupportedError(f"aioquic cannot be imported ({exc})") from None
    version = getattr(aioquic, "__version__", "?")
    needed = ("ec", "GROUP_TO_CURVE", "decode_public_key", "encode_public_key", "Context")
    missing = [n for n in needed if not hasattr(tls, n)]
    context_init = vars(getattr(tls, "Context", object)).get("__init__")
    if missing or context_init is None or (getattr(tls, "ec", None) is not ec and not _installed):
        raise PQKeyExchangeUnsupportedError(
            f"aioquic {version}: aioquic.tls lacks the internals X25519MLKEM768 hooks into "
            f"({', '.join(missing) or 'Context.__init__ / ec'})"
        )
    if not isinstance(getattr(tls.Context(is_client=True), "_supported_groups", None), list):
        raise PQKeyExchangeUnsupportedError(
            f"aioquic {version}: tls.Context has no _supported_groups list"
        )
    return tls, context_init


def supported() -> bool:
    """Whether :func:`install` would work here (cryptography has ML-KEM-768, aioquic has the
    internals it hooks into), checked without patching anything."""
    try:
        _check()
    except PQKeyExchangeUnsupportedError:
        return False
    return True


def install() -> None:
    """Patch ``aioquic.tls`` so every TLS context in this process offers X25519MLKEM768 first
    (idempotent, thread-safe). Raises :class:`PQKeyExchangeUnsupportedError` naming the
    versions when cryptography has no ML-KEM-768 or aioquic's internals differ."""
    global _installed
    with _lock:
        if _installed:
            return
        tls, context_init = _check()
        # aioquic calls ec.generate_private_key(GROUP_TO_CURVE[group]()) for every group in
        # GROUP_TO_CURVE; a module standing in for ``ec`` inside aioquic.tls answers our curve.
        ec_proxy = types.ModuleType(ec.__name__)
        ec_proxy.__dict__.update(vars(ec))
        generate = ec.generate_private_key

        def generate_private_key(curve: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(curve, _Curve):
                return _PrivateKey()
            return generate(curve, *args, **kwargs)

        ec_proxy.generate_private_key = generate_private_key  # type: ignore[attr-defined]

        decode, encode = tls.decode_public_key, tls.encode_public_key

        def decode_public_key(key_share: tuple[int, bytes]) -> Any:
            if key_share[0] == X25519MLKEM768:
                return _decode_share(key_share[1])
            return decode(key_share)

        def encode_public_key(public_key: Any) -> tuple[int, bytes]:
            if isinstance(public_key, _Share) and public_key.key is not None:
                return (X25519MLKEM768, public_key.key.encode())
            return encode(public_key)

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            context_init(self, *args, **kwargs)
            if X25519MLKEM768 not in self._supported_groups:
                self._supported_groups.insert(0, X25519MLKEM768)

        tls.ec = ec_proxy
        tls.GROUP_TO_CURVE[X25519MLKEM768] = _Curve
        tls.decode_public_key = decode_public_key
        tls.encode_public_key = encode_public_key
        tls.Context.__init__ = __init__
        tls.X25519MLKEM768 = X25519MLKEM768
        _installed = True
