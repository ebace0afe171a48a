"""Any raw deflate stream, rebuilt byte-exact from its content plus a small correction record.

Thin wrapper over the C core (``csrc/deflate_tokens.c``, ``csrc/deflate_predict.c``):

- :func:`tokenize` decodes a stream into its content, tokens and block records (every encoder
  decision), and :func:`encode` writes them back bit for bit;
- :func:`correction_record` predicts the stream's tokens with a reference model (zlib's
  matcher, which GNU gzip shares) and keeps only what the real stream does differently;
  :func:`rebuild_stream` predicts again, applies the corrections and re-encodes.

The record format and the model are part of the layout format (docs/delta-format.md,
"Reconstructed deflate streams"). Every rebuild is verified by the caller (the stream's
length here, the artifact's SHA-256 at the end of ``apply``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._util import byte_view
from ..errors import CorruptPatchError, InvalidArgumentError, OutputTooLargeError

__all__ = [
    "MODELS",
    "ReconStats",
    "Tokens",
    "correction_record",
    "encode",
    "rebuild_stream",
    "rebuild_stream_into",
    "tokenize",
]

#: Reference models the record may name (1..18): zlib levels 1-9, greedy, Z_FILTERED 4-9,
#: Z_HUFFMAN_ONLY, Z_RLE. ``-1`` lets :func:`correction_record` choose.
MODELS = range(1, 19)
#: Default bound on blocks per stream (each costs at least 10 bits of input).
DEFAULT_MAX_BLOCKS = 1 << 22

Buffer = bytes | bytearray | memoryview


def _lib():  # the C core is loaded on first use (cheap `import registry_core`)
    from .._native import ffi, lib

    return ffi, lib


def _check(rc: int, what: str) -> None:
    if rc == 0:
        return
    _, lib = _lib()
    if rc == lib.RC_ERANGE:
        raise OutputTooLargeError(f"{what}: a size limit was exceeded")
    if rc == lib.RC_ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    if rc == lib.RC_EINVAL:
        raise InvalidArgumentError(f"{what}: invalid argument")
    raise CorruptPatchError(f"{what}: malformed deflate stream or record")


@dataclass(frozen=True)
class Tokens:
    """A decoded stream: ``content``, ``tokens`` (uint32 each, see csrc/registry_core.h),
    ``blocks`` (the block records) and ``consumed`` (the stream's length in bytes)."""

    content: bytes
    tokens: tuple[int, ...]
    blocks: bytes
    consumed: int


@dataclass(frozen=True)
class ReconStats:
    """What :func:`correction_record` found: the model used, token, correction and block
    counts, and how many dynamic headers were zlib's for their tokens."""

    model: int
    tokens: int
    corrections: int
    blocks: int
    predicted_trees: int


def tokenize(stream: Buffer, *, max_content: int, max_blocks: int = DEFAULT_MAX_BLOCKS) -> Tokens:
    """Decode the raw deflate stream at the start of ``stream`` (bounded by ``max_content``
    inflated bytes and ``max_blocks`` blocks). Raises CorruptPatchError on an invalid stream,
    OutputTooLargeError beyond a limit."""
    ffi, lib = _lib()
    buf = byte_view(stream, "stream")
    out = ffi.new("rc_deflate_tokens *")
    _check(
        lib.rc_deflate_tokenize(ffi.from_buffer(buf), len(buf), max_content, max_blocks, out),
        "tokenize",
    )
    try:
        return Tokens(
            bytes(ffi.buffer(out.content, out.content_len)) if out.content_len else b"",
            tuple(ffi.unpack(out.tokens, out.n_tokens)) if out.n_tokens else (),
            bytes(ffi.buffer(out.blocks, out.blocks_len)),
            int(out.consumed),
        )
    finally:
        lib.rc_deflate_tokens_free(out)


def encode(
    content: Buffer, tokens: tuple[int, ...] | list[int], blocks: Buffer, *, max_output: int
) -> bytes:
    """Write tokens + block records back as the exact stream (at most ``max_output`` bytes)."""
    ffi, lib = _lib()
    cbuf = byte_view(content, "content")
    bbuf = byte_view(blocks, "blocks")
    toks = ffi.new("uint32_t[]", list(tokens)) if tokens else ffi.NULL
    out = ffi.new("uint8_t[]", max(1, max_output))
    n = ffi.new("size_t *")
    _check(
        lib.rc_deflate_encode(
            ffi.from_buffer(cbuf),
            len(cbuf),
            toks,
            len(tokens),
            ffi.from_buffer(bbuf),
            len(bbuf),
            out,
            max_output,
            n,
        ),
        "encode",
    )
    return bytes(ffi.buffer(out, n[0]))


def correction_record(
    stream: Buffer, *, max_content: int, max_blocks: int = DEFAULT_MAX_BLOCKS, model: int = -1
) -> tuple[bytes, ReconStats]:
    """The correction record of ``stream`` (exactly one raw deflate stream, nothing after).

    ``model`` names the reference model (:data:`MODELS`) or ``-1``: the one with the fewest
    corrections on the stream's first 4096 tokens. Raises CorruptPatchError when ``stream`` is
    not exactly one valid stream, OutputTooLargeError beyond ``max_content`` / ``max_blocks``.
    """
    if model != -1 and model not in MODELS:
        raise InvalidArgumentError(f"model must be -1 or in 1..18, not {model}")
    ffi, lib = _lib()
    buf = byte_view(stream, "stream")
    rec = ffi.new("rc_bytes *")
    st = ffi.new("rc_recon_stats *")
    _check(
        lib.rc_deflate_record(
            ffi.from_buffer(buf), len(buf), max_content, max_blocks, model, rec, st
        ),
        "correction record",
    )
    try:
        record = bytes(ffi.buffer(rec.data, rec.len))
    finally:
        lib.rc_bytes_free(rec)
    return record, ReconStats(
        int(st.model), int(st.tokens), int(st.corrections), int(st.blocks), int(st.predicted_trees)
    )


def rebuild_stream(content: Buffer, record: Buffer, clen: int) -> bytes:
    """The stream ``record`` describes for ``content``; it must be exactly ``clen`` bytes.
    Raises CorruptPatchError when the record is malformed, does not fit the content, or gives
    another length."""
    ffi, lib = _lib()
    cbuf = byte_view(content, "content")
    rbuf = byte_view(record, "record")
    out = ffi.new("uint8_t[]", max(1, clen))
    n = ffi.new("size_t *")
    rc = lib.rc_deflate_rebuild(
        ffi.from_buffer(cbuf), len(cbuf), ffi.from_buffer(rbuf), len(rbuf), out, clen, n
    )
    if rc == lib.RC_ERANGE:
        raise CorruptPatchError(f"reconstructed stream is longer than {clen} bytes")
    _check(rc, "rebuild")
    if n[0] != clen:
        raise CorruptPatchError(f"reconstructed stream is {n[0]} bytes, expected {clen}")
    return bytes(ffi.buffer(out, n[0]))


def rebuild_stream_into(content: Buffer, record: Buffer, out: memoryview) -> None:
    """:func:`rebuild_stream` writing straight into ``out`` (exactly the stream's length, a
    writable buffer): no copy of the stream. The C call releases the GIL."""
    ffi, lib = _lib()
    cbuf = byte_view(content, "content")
    rbuf = byte_view(record, "record")
    clen = len(out)
    n = ffi.new("size_t *")
    with ffi.from_buffer(out, require_writable=True) as obuf:
        rc = lib.rc_deflate_rebuild(
            ffi.from_buffer(cbuf),
            len(cbuf),
            ffi.from_buffer(rbuf),
            len(rbuf),
            obuf if clen else ffi.new("uint8_t[]", 1),
            clen,
            n,
        )
    if rc == lib.RC_ERANGE:
        raise CorruptPatchError(f"reconstructed stream is longer than {clen} bytes")
    _check(rc, "rebuild")
    if n[0] != clen:
        raise CorruptPatchError(f"reconstructed stream is {n[0]} bytes, expected {clen}")
