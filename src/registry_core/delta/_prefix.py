"""ZSTD_PREFIX patches: the target as one zstd frame using the base as a raw-content dictionary.

This is what ``zstd --patch-from=base`` does: the compressor may reference any byte of the base
as if it preceded the target, with long-distance matching and a window covering both. It beats
the three-stream delta on small text pairs (JSON index documents, changelogs), where zstd's
entropy coding of literals and repeat offsets matters more than the match model.

Bounds: ``diff`` only tries it when ``base + target`` fits :data:`MAX_WINDOW` (the largest window
a decoder here accepts); ``apply`` refuses a frame whose header does not declare exactly the
patch's ``target_size``, whose window is above :data:`MAX_WINDOW`, that names a dictionary id, or
that leaves bytes after the frame. Memory on apply: the base is
copied once into the dictionary, plus the output (``base + target``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CorruptPatchError, OutputTooLargeError

if TYPE_CHECKING:  # pragma: no cover
    import zstandard

Buffer = bytes | bytearray | memoryview

#: log2 of the largest window (base + target) an encoder writes and a decoder accepts:
#: 2^27 = 128 MiB, zstd's default decoder limit (``ZSTD_WINDOWLOG_LIMIT_DEFAULT``), which
#: ``zstd -d`` also needs no ``--memory`` option for.
MAX_WINDOW_LOG = 27
MAX_WINDOW = 1 << MAX_WINDOW_LOG
#: Above this target size the level is capped like the other sections (see ``_format``).
_BIG = 8 << 20
_BIG_LEVEL = 13


def fits(base_size: int, target_size: int) -> bool:
    """Whether a pair is within the window limit (the base must stay addressable)."""
    return base_size + target_size <= MAX_WINDOW


def _window_log(base_size: int, target_size: int) -> int:
    import zstandard

    total = max(1, base_size + target_size)
    return min(max(zstandard.WINDOWLOG_MIN, (total - 1).bit_length()), MAX_WINDOW_LOG)


def encode(base: Buffer, target: Buffer, *, level: int = 19) -> bytes:
    """One zstd frame of ``target`` with ``base`` as a raw-content prefix dictionary."""
    import zstandard

    if not fits(len(base), len(target)):
        raise OutputTooLargeError(
            f"base and target ({len(base)} + {len(target)} bytes) exceed the {MAX_WINDOW}-byte "
            "window of a ZSTD_PREFIX patch"
        )
    if len(target) > _BIG:
        level = min(level, _BIG_LEVEL)
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        source_size=len(target),
        window_log=_window_log(len(base), len(target)),
        enable_ldm=True,
        write_content_size=1,
        write_checksum=0,  # the patch's target SHA-256 verifies the output
        write_dict_id=0,
    )
    cctx = zstandard.ZstdCompressor(compression_params=params, dict_data=_dictionary(base))
    return cctx.compress(target)


def _dictionary(base: Buffer) -> zstandard.ZstdCompressionDict | None:
    """The base as a raw-content dictionary (None for an empty base: zstd refuses an empty
    dictionary, and there is nothing to reference anyway). The base is copied once."""
    import zstandard

    if not len(base):
        return None
    return zstandard.ZstdCompressionDict(bytes(base), dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def decode(base: Buffer, frame: Buffer, target_size: int) -> bytes:
    """The target from ``base`` and a frame written by :func:`encode`; bounded and checked."""
    import zstandard

    try:
        fp = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise CorruptPatchError(f"ZSTD_PREFIX frame header is malformed: {exc}") from exc
    if fp.content_size != target_size:
        raise CorruptPatchError(
            f"ZSTD_PREFIX frame declares {fp.content_size} bytes of output, the patch "
            f"{target_size}"
        )
    if fp.window_size > MAX_WINDOW:
        raise OutputTooLargeError(
            f"ZSTD_PREFIX frame needs a {fp.window_size}-byte window, above the limit of "
            f"{MAX_WINDOW}"
        )
    if fp.dict_id != 0:
        raise CorruptPatchError(f"ZSTD_PREFIX frame names dictionary id {fp.dict_id} (must be 0)")
    dctx = zstandard.ZstdDecompressor(dict_data=_dictionary(base), max_window_size=MAX_WINDOW)
    try:
        out = dctx.decompress(frame, max_output_size=target_size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptPatchError(
            f"ZSTD_PREFIX frame does not decompress against this base ({exc}): the patch is "
            "corrupt or was made for another base"
        ) from exc
    if len(out) != target_size:
        raise CorruptPatchError(
            f"ZSTD_PREFIX frame decompressed to {len(out)} bytes, expected {target_size}"
        )
    return out
