"""How the app reads its multipart uploads: werkzeug's parser, with two of its answers made
exact.

- A part header that is not UTF-8 (a file name sent in Latin-1 or cp1252 by an older client)
  makes werkzeug drop the whole form without a word, so the upload looked like a request
  without a file. Here such a header is read as Latin-1 instead: the name is only ever shown.
- werkzeug refuses too many parts, or a text field too large, with the same bare 413 as an
  upload over the size limit; here the 413 says which limit it was.
"""

from __future__ import annotations

import io
import re
from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

# What ends a part's header block (werkzeug's own rule: any kind of blank line).
_BLANK_LINE = re.compile(rb"\r\n\r\n|\r\r|\n\n")


class FormLimitError(RequestEntityTooLarge):
    """A form over a limit other than the upload size (``description`` says which)."""


def _utf8_part_headers(body: bytes, boundary: bytes) -> bytes:
    """``body`` with every part's header block made UTF-8 (a block that is not is read as
    Latin-1); ``body`` itself when all of them already are."""
    # A delimiter line, as werkzeug finds them: the parts' contents are never touched.
    delimiter = re.compile(rb"(?:^|\r\n|\r|\n)--" + re.escape(boundary) + rb"[ \t]*(?:\r\n|\r|\n)")
    pieces, start = [], 0
    for match in delimiter.finditer(body):
        blank = _BLANK_LINE.search(body, match.end())
        if blank is None:
            break
        head = body[match.end() : blank.start()]
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pieces += [body[start : match.end()], head.decode("latin-1").encode("utf-8")]
            start = blank.start()
    return body if not pieces else b"".join([*pieces, body[start:]])


class _FormParser(FormDataParser):
    """werkzeug's form parser with the two answers of the module docstring."""

    def _parse_multipart(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict
    ):
        # Bounded by MAX_CONTENT_LENGTH: a larger body raised the upload limit's 413 already.
        body = stream.read()
        boundary = options.get("boundary", "").encode("ascii", "replace")
        if boundary:
            body = _utf8_part_headers(body, boundary)
        try:
            return super()._parse_multipart(io.BytesIO(body), mimetype, content_length, options)
        except RequestEntityTooLarge:
            parts = body.count(b"--" + boundary) - 1
            if self.max_form_parts is not None and parts > self.max_form_parts:
                raise FormLimitError(
                    f"too many form fields ({parts:,}; at most {self.max_form_parts:,}): send "
                    "the image alone, in the field 'file'"
                ) from None
            raise FormLimitError(
                f"a form field other than 'file' is larger than "
                f"{(self.max_form_memory_size or 0) / 1000:g} KB"
            ) from None


class UploadRequest(Request):
    """Flask's request, reading forms with :class:`_FormParser`."""

    form_data_parser_class = _FormParser
