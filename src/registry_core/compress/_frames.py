"""A structural walker over zstd frames (RFC 8878 section 3.1), fed incrementally.

The zstd library happily returns a short output for a truncated stream without saying so, so
the decoders pass every compressed byte through :class:`ZstdFrameWalker`, which reads only the
frame and block headers (it skips block contents) and knows at end of input whether the last
frame was complete. It also sums the declared content sizes, so a bomb that announces its size
is refused before any decoding.
"""

from __future__ import annotations

from ..errors import CompressionError

ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MIN = 0x184D2A50
_SKIPPABLE_MAX = 0x184D2A5F
_MAX_BLOCK = 128 * 1024

# states
_MAGIC, _SKIP_LEN, _SKIP_DATA, _DESCRIPTOR, _HEADER_REST, _BLOCK_HEADER, _BLOCK_DATA, _CHECKSUM = (
    range(8)
)


class ZstdFrameWalker:
    """Follow frame and block boundaries of a zstd stream without decoding it."""

    __slots__ = (
        "_buf",
        "_checksum",
        "_fcs",
        "_last_block",
        "_need",
        "_skip",
        "_state",
        "declared_size",
        "frames",
        "unknown_size",
    )

    def __init__(self) -> None:
        self._state = _MAGIC
        self._buf = bytearray()
        self._need = 4
        self._skip = 0
        self._checksum = False
        self._fcs = (0, 0, 0)
        self._last_block = False
        self.frames = 0
        self.declared_size = 0  # sum of Frame_Content_Size of frames that declare one
        self.unknown_size = False  # some frame does not declare its content size

    def feed(self, data: bytes | memoryview) -> None:
        """Consume ``data``; raise CompressionError on a structurally invalid stream."""
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                if self._skip == 0:
                    self._after_skip()
                continue
            take = min(self._need - len(self._buf), end - pos)
            self._buf += view[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                self._on_field(bytes(self._buf))

    def _after_skip(self) -> None:
        if self._state == _SKIP_DATA:
            self._expect(_MAGIC, 4)
        elif self._state == _BLOCK_DATA:
            self._block_done()

    def _expect(self, state: int, need: int) -> None:
        self._state = state
        self._need = need
        self._buf.clear()

    def _on_field(self, field: bytes) -> None:
        state = self._state
        if state == _MAGIC:
            magic = int.from_bytes(field, "little")
            if magic == ZSTD_MAGIC:
                self._expect(_DESCRIPTOR, 1)
            elif _SKIPPABLE_MIN <= magic <= _SKIPPABLE_MAX:
                self._expect(_SKIP_LEN, 4)
            else:
                raise CompressionError(
                    "not a zstd stream: bad frame magic number (the body is corrupt, or it "
                    "was encoded with another coding than the one announced)"
                )
        elif state == _SKIP_LEN:
            size = int.from_bytes(field, "little")
            self._state = _SKIP_DATA
            self._buf.clear()
            self._skip = size
            if size == 0:
                self._after_skip()
        elif state == _DESCRIPTOR:
            desc = field[0]
            if desc & 0x08:
                raise CompressionError("corrupt zstd frame: reserved bit set in frame header")
            fcs_flag = desc >> 6
            single = (desc >> 5) & 1
            did_flag = desc & 3
            self._checksum = bool(desc & 0x04)
            fcs_size = (0, 2, 4, 8)[fcs_flag] if (fcs_flag or not single) else 1
            rest = (0 if single else 1) + (0, 1, 2, 4)[did_flag] + fcs_size
            self._fcs = (fcs_size, single, did_flag)
            self._need = 1 + rest
            # keep the descriptor byte in the buffer; wait for the rest of the header
            self._state = _HEADER_REST
            if rest == 0:
                self._on_field(field)
        elif state == _HEADER_REST:
            fcs_size, single, did_flag = self._fcs
            if fcs_size:
                raw = int.from_bytes(field[len(field) - fcs_size :], "little")
                self.declared_size += raw + 256 if fcs_size == 2 else raw
            else:
                self.unknown_size = True
            self._expect(_BLOCK_HEADER, 3)
        elif state == _BLOCK_HEADER:
            header = int.from_bytes(field, "little")
            last = header & 1
            btype = (header >> 1) & 3
            size = header >> 3
            if btype == 3:
                raise CompressionError("corrupt zstd frame: reserved block type")
            if size > _MAX_BLOCK:
                raise CompressionError("corrupt zstd frame: block larger than 128 KiB")
            payload = 1 if btype == 1 else size  # RLE blocks carry one byte
            self._last_block = bool(last)
            self._state = _BLOCK_DATA
            self._buf.clear()
            self._skip = payload
            if payload == 0:
                self._after_skip()
        elif state == _CHECKSUM:
            self._end_frame()
        else:  # pragma: no cover - states above are exhaustive
            raise AssertionError(state)

    def _block_done(self) -> None:
        if self._last_block:
            if self._checksum:
                self._expect(_CHECKSUM, 4)
            else:
                self._end_frame()
        else:
            self._expect(_BLOCK_HEADER, 3)

    def _end_frame(self) -> None:
        self.frames += 1
        self._expect(_MAGIC, 4)

    @property
    def complete(self) -> bool:
        """True when the input so far ends exactly at the end of a frame."""
        return self._state == _MAGIC and not self._buf and not self._skip and self.frames > 0

    def finish(self) -> None:
        """Raise CompressionError unless the stream ended on a frame boundary."""
        if not self.complete:
            raise CompressionError(
                "truncated zstd stream: input ended inside a frame (the download was cut "
                "short or the body is corrupt); fetch it again"
            )
