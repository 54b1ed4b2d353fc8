"""Cheap checks on a file before any decoder opens it.

``open()`` on a FIFO blocks until a writer appears, and a character device such as
``/dev/zero`` never ends: only regular files (after resolving symlinks) may reach PIL, pydicom
or DALI. PNG headers also say which files DALI would decode differently from PIL (see
:func:`png_needs_pil`).
"""

from __future__ import annotations

import os
import stat
import struct
from typing import BinaryIO

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
HEAD_BYTES = 26  # a PNG's signature and IHDR bit depth and colour type
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND"
_TAIL_BYTES = 4096
# PNG colour types DALI decodes to the same grey pixels as PIL at bit depth 8: grey and RGB.
# Palette (3), grey + alpha (4) and RGBA (6) images, and every other bit depth, go to PIL.
_DALI_SAFE_PNG_COLOUR_TYPES = frozenset({0, 2})


def special_file_reason(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` must not be opened (it is a FIFO, socket, device or directory), or None
    for a regular file. A path that cannot be stat'ed (missing, a broken link) is None too:
    the decoder's own error names that better."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks: a link to a FIFO is a FIFO
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _head(path: str | os.PathLike[str]) -> bytes:
    """The first :data:`HEAD_BYTES` bytes of a regular file; b"" when it cannot be read."""
    if special_file_reason(path) is not None:
        return b""
    try:
        with open(path, "rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError:
        return b""


def _png_ihdr(head: bytes) -> tuple[int, int] | None:
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    depth, colour = struct.unpack(">BB", head[24:26])
    return depth, colour


def png_header(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None when ``path`` is not a
    readable regular PNG file (the first 26 bytes are all it reads)."""
    return _png_ihdr(_head(path))


def dali_decodes(path: str | os.PathLike[str]) -> bool:
    """True when the file's header (not its name) says DALI decodes it to PIL's pixels: a
    JPEG, or an 8-bit grey or RGB PNG (see :func:`png_needs_pil`). DICOM, other PNGs and
    anything unreadable are False."""
    return dali_decodes_head(_head(path))


def dali_decodes_head(head: bytes) -> bool:
    """:func:`dali_decodes` for a file's first :data:`HEAD_BYTES` bytes, already read."""
    if head.startswith(_JPEG_SIGNATURE):
        return True
    header = _png_ihdr(head)
    return header is not None and _dali_safe(header)


def ends_whole(handle: BinaryIO, head: bytes) -> bool:
    """Whether an open JPEG or PNG (``head``: its first bytes) has its end marker (JPEG's EOI,
    PNG's IEND) in its last :data:`_TAIL_BYTES` bytes. A truncated file has none, and the one
    bad file would stop a whole DALI pipeline; the PIL path names it instead. A file with more
    than that after its end marker only takes the slower PIL path."""
    marker = _JPEG_END if head.startswith(_JPEG_SIGNATURE) else _PNG_END
    end = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, end - _TAIL_BYTES))
    return marker in handle.read(_TAIL_BYTES)


def is_jpeg_file(path: str | os.PathLike[str]) -> bool:
    """True when the file's header (not its name) says JPEG."""
    return _head(path).startswith(_JPEG_SIGNATURE)


def _dali_safe(header: tuple[int, int]) -> bool:
    depth, colour = header
    return depth == 8 and colour in _DALI_SAFE_PNG_COLOUR_TYPES


def png_needs_pil(path: str | os.PathLike[str]) -> bool:
    """True for a PNG that DALI would decode to other pixels than PIL: 16-bit (PIL stretches
    the image's own range to 8 bits, DALI divides by 65535: 12-bit data comes out nearly
    black), 1/2/4-bit, palette, or with alpha. One intensity rule for every loader means these
    always take the PIL path."""
    header = png_header(path)
    return header is not None and not _dali_safe(header)
