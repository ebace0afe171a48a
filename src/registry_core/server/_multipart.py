"""The upload form twine and uv send (``multipart/form-data``), parsed as it streams in.

:class:`UploadForm` is fed the request body piece by piece (sans-IO: the caller reads the
network). Text fields are kept in memory under tight bounds; the one file part (``content``)
is spooled to a temporary file, so a 100 MB wheel never sits in memory. Every bound refuses
with :class:`UploadRejectedError` (400, or 413 for size), never a crash.
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

from ..errors import UploadRejectedError

__all__ = ["UploadForm"]

_SPOOL_BYTES = 1 << 20  # a file part up to this size stays in memory


class UploadForm:
    """Incremental parser of one upload body.

    ``max_file_bytes``: the file part's limit (413 beyond). ``max_fields`` /
    ``max_field_bytes`` / ``max_fields_bytes``: how many text fields, how large one may be and
    all of them together (metadata such as the description lives here; PyPI allows a few MB).
    ``tmp_dir``: where a large file part is spooled (the system's temp dir when None).
    After :meth:`finish`: ``fields`` (name -> values in order), ``filename`` and ``file``
    (positioned at 0) for the file part, ``file_size``.
    """

    def __init__(
        self,
        content_type: str,
        *,
        max_file_bytes: int,
        max_fields: int = 512,
        max_field_bytes: int = 4 << 20,
        max_fields_bytes: int = 8 << 20,
        tmp_dir: str | None = None,
    ) -> None:
        from python_multipart.multipart import MultipartParser, parse_options_header

        media, params = parse_options_header(content_type)
        if media != b"multipart/form-data":
            raise UploadRejectedError(
                "uploads must be multipart/form-data (as twine and uv send them)",
                status=415,
            )
        boundary = params.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise UploadRejectedError("multipart body without a usable boundary")
        self.max_file_bytes = max_file_bytes
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.max_fields_bytes = max_fields_bytes
        self.tmp_dir = tmp_dir
        self.fields: dict[str, list[str]] = {}
        self.filename: str | None = None
        self.file: IO[bytes] | None = None
        self.file_size = 0
        self._field_count = 0
        self._fields_bytes = 0
        self._ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._part_name: str | None = None
        self._part_is_file = False
        self._value = bytearray()
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(
            boundary, callbacks, max_header_count=16, max_header_size=8192
        )

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the body."""
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.write(data)
        except FormParserError as exc:
            raise UploadRejectedError(f"malformed multipart body: {exc}") from None

    def finish(self) -> None:
        """The body is complete: check it ended properly and rewind the file."""
        if not self._ended:
            raise UploadRejectedError("multipart body ended early (no closing boundary)")
        if self.file is None:
            raise UploadRejectedError("the upload has no file part named 'content'")
        self.file.seek(0)

    def close(self) -> None:
        """Drop the spooled file (also removes it from disk)."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def first(self, name: str) -> str | None:
        """The first value of field ``name``, or None."""
        values = self.fields.get(name)
        return values[0] if values else None

    # -- parser callbacks ------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}
        self._part_name = None
        self._part_is_file = False
        self._value = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name = bytearray()
        self._header_value = bytearray()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition = self._headers.get(b"content-disposition")
        if disposition is None:
            raise UploadRejectedError("multipart part without Content-Disposition")
        kind, params = parse_options_header(disposition)
        name = params.get(b"name")
        if kind != b"form-data" or name is None:
            raise UploadRejectedError("multipart part is not a named form-data field")
        self._part_name = name.decode("utf-8", "replace")
        filename = params.get(b"filename")
        if self._part_name == "content" and filename is not None:
            if self.file is not None:
                raise UploadRejectedError("the upload has more than one file part")
            self._part_is_file = True
            self.filename = filename.decode("utf-8", "replace")
            # lives across parser callbacks; closed (and removed) by close()
            self.file = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                max_size=_SPOOL_BYTES, dir=self.tmp_dir
            )
        else:
            self._field_count += 1
            if self._field_count > self.max_fields:
                raise UploadRejectedError(f"the upload form has over {self.max_fields} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._part_is_file:
            assert self.file is not None
            self.file_size += n
            if self.file_size > self.max_file_bytes:
                raise UploadRejectedError(
                    f"file is larger than the index's limit of {self.max_file_bytes} bytes",
                    status=413,
                )
            self.file.write(data[start:end])
            return
        self._fields_bytes += n
        if (
            len(self._value) + n > self.max_field_bytes
            or self._fields_bytes > self.max_fields_bytes
        ):
            raise UploadRejectedError("upload form fields are too large", status=413)
        self._value += data[start:end]

    def _part_end(self) -> None:
        if not self._part_is_file and self._part_name is not None:
            try:
                value = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadRejectedError(f"form field {self._part_name!r} is not UTF-8") from None
            self.fields.setdefault(self._part_name, []).append(value)
        self._value = bytearray()
        self._part_name = None
        self._part_is_file = False

    def _end(self) -> None:
        self._ended = True
