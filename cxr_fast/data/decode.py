"""Host-side image decoding with PIL (and pydicom for DICOM): any supported file -> one grey
uint8 plane at the contract's size.

JPEGs much larger than the target are decoded in draft mode: libjpeg scales them down by 1/2,
1/4 or 1/8 inside the inverse DCT, which skips most of the decoding work of a 2000 px film.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.captured import capture_native_stderr, capture_warnings
from cxr_fast.data.decode_budget import decode_budget
from cxr_fast.data.dicom import DicomSkipped, read_dataset, read_dicom
from cxr_fast.data.dicom_intensity import stretch_to_uint8
from cxr_fast.data.discover import is_dicom_bytes, is_dicom_file
from cxr_fast.data.equalize import equalize_uint8
from cxr_fast.data.filecheck import special_file_reason
from cxr_fast.data.pixel_limit import check_pixels
from cxr_fast.errors import CxrFastError

_PIL_FILTERS = {
    "linear": Image.Resampling.BILINEAR,
    "cubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
# Draft decoding scales by the largest power of two that keeps both sides >= target size *
# DRAFT_OVERSAMPLE. Measured on 200 films of 1000-2200 px (docs/benchmarks.md): 1 is 17% faster
# than 2 and differs from DALI's full decode + resize by at most 0.009 mean absolute (0.005 at 2);
# the IDCT's own downscaling is a clean low-pass, so the extra pixels bought little.
DRAFT_OVERSAMPLE = 1
# Smaller than this is no radiograph (a 1x1 placeholder, an icon): an error, not a prediction.
MIN_IMAGE_SIDE = 32


class ImageReadError(CxrFastError):
    """A file that cannot be turned into an image: ``reason`` says why, for an error row;
    ``info``: what is known of the file all the same (DICOM identifiers, warnings)."""

    def __init__(self, path: str, reason: str, info: dict | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.info = info or {}


class ImageSkipped(ImageReadError):
    """A file deliberately not scored (a DICOM report, plan, waveform; a skipped view)."""


@dataclass(frozen=True)
class ReadResult:
    """Model pixels uint8 [S,S], original (width, height), and the row's extra columns."""

    pixels: np.ndarray
    size: tuple[int, int]
    info: dict


def _reason(path: str | None, exc: Exception) -> str:
    """A readable reason for a decoding failure (the path is reported separately; None for
    in-memory data, which no decoder message names)."""
    if isinstance(exc, FileNotFoundError):
        return "file not found (a broken link, or removed while scoring)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused as a possible decompression bomb: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        try:
            empty = path is not None and os.path.getsize(path) == 0
        except OSError:
            empty = False
        return "empty file (0 bytes)" if empty else "not an image in a format cxr-fast reads"
    text = str(exc) if path is None else str(exc).replace(path, "")
    text = text.strip(" :'\"") or type(exc).__name__
    if "truncated" in text or "Premature end" in text:
        return f"truncated or corrupt image data ({text})"
    return f"{type(exc).__name__}: {text}" if isinstance(exc, OSError) else text


_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "YCbCr", "CMYK")
_CHROMA_SIDE = 128


def _chroma(image: Image.Image) -> float:
    """Mean chroma (max - min of R, G, B, 0-255) of a small copy of ``image``: 0 for a grey
    picture stored in colour. Plain numpy: the head start decodes before torch is imported."""
    factor = max(1, max(image.size) // _CHROMA_SIDE)
    try:  # reduced in its own mode first: a huge picture is never copied whole as RGB
        small = (image.reduce(factor) if factor > 1 else image).convert("RGB")
    except ValueError:  # a mode reduce does not take (palette, CMYK)
        small = image.convert("RGB").reduce(factor)
    rgb = np.asarray(small, dtype=np.int16)
    return float((rgb.max(axis=-1) - rgb.min(axis=-1)).mean())


def _to_gray8(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Medical 16-bit PNGs seldom use the full range: stretch their own range to 8 bits.
        return Image.fromarray(stretch_to_uint8(np.asarray(image)))
    return image if image.mode == "L" else image.convert("L")


def _dicom_gray(
    source: str | BinaryIO,
    max_pixels: int | None = None,
    *,
    skip_views: Collection[str] = (),
    info: dict | None = None,
    notes: list[str] | None = None,
) -> Image.Image:
    gray, frame_notes = read_dicom(source, max_pixels=max_pixels, skip_views=skip_views, info=info)
    if notes is not None:
        notes.extend(frame_notes)
    return Image.fromarray(gray)


def _check_size(size: tuple[int, int]) -> None:
    if min(size) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image is {size[0]}x{size[1]} pixels, below the {MIN_IMAGE_SIDE} px minimum"
        )


def decoded_bytes(image: Image.Image) -> int:
    """Bytes that decoding ``image`` (opened, its draft chosen) to 8-bit grey holds at its
    peak: the decoded pixels and the grey copy; a wider image also its array copy and what
    :func:`stretch_to_uint8` makes of it (a byte per pixel for 16 bits, float32 temporaries
    for 32)."""
    width, height = image.size
    mode = ImageMode.getmode(image.mode)
    depth = int(mode.typestr[-1])  # bytes per band: '|u1' -> 1, '<u2' -> 2, '<f4' -> 4
    if depth == 1:  # PIL keeps a pixel of several bands in 4 bytes (RGB too)
        per_pixel = (4 if len(mode.bands) > 1 else 1) + 1
    else:
        per_pixel = 2 * depth + 2 + (12 if depth > 2 else 0)
    return width * height * per_pixel


def open_gray(
    source: str | BinaryIO,
    *,
    dicom: bool,
    draft: int | None = None,
    max_pixels: int | None = None,
    skip_views: Collection[str] = (),
    info: dict | None = None,
    notes: list[str] | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``source`` (a path or a binary file) to a loaded 8-bit grey image and its original
    (width, height). ``draft``: a JPEG may come out scaled down by a power of two as long as
    both sides stay >= ``draft`` px. ``max_pixels``: refuse larger images from their header,
    before any pixel is decoded (PIL's own bomb limit applies regardless). Errors are the
    decoders' own; callers name the file. DICOM only: ``skip_views``, ``info`` (filled with the
    identifiers) and ``notes`` (appended to), see :func:`cxr_fast.data.dicom.read_dicom`."""
    if dicom:
        gray = _dicom_gray(source, max_pixels, skip_views=skip_views, info=info, notes=notes)
        original = gray.size
        # The header says it is an image: a small one is scored, with a note (read_dicom
        # refuses degenerate ones).
        if min(original) < MIN_IMAGE_SIDE and notes is not None:
            notes.append(
                f"small image ({original[0]}x{original[1]} px, under {MIN_IMAGE_SIDE}): scored"
            )
        return gray, original
    with Image.open(source) as image:
        original = image.size
        check_pixels(original, max_pixels)
        _check_size(original)
        if draft is not None and image.format == "JPEG":
            image.draft("L", (draft, draft))
        # A huge image waits for room among the decodes in flight (decode_budget.py).
        with decode_budget(decoded_bytes(image)):
            if info is not None and image.format != "JPEG" and image.mode in _COLOUR_MODES:
                # JPEGs are drafted straight to grey (their chroma is never decoded): the
                # content check judges those; other formats are decoded whole, colour is free.
                info["chroma"] = _chroma(image)
            gray = _to_gray8(image)
            gray.load()  # PIL decodes lazily: finish while the file is open
    return gray, original


def _model_pixels(
    source: str | BinaryIO,
    contract: PreprocessContract,
    dicom: bool,
    max_pixels: int | None = None,
    **dicom_options,
) -> tuple[np.ndarray, tuple[int, int]]:
    # Draft no lower than what the crop needs to keep image_size pixels across.
    draft = math.ceil(contract.image_size * DRAFT_OVERSAMPLE / contract.crop)
    gray, original = open_gray(
        source, dicom=dicom, draft=draft, max_pixels=max_pixels, **dicom_options
    )
    size = contract.image_size
    box = None if contract.crop == 1.0 else contract.crop_box(*gray.size)
    pixels = np.array(gray.resize((size, size), _PIL_FILTERS[contract.interpolation], box=box))
    if contract.normalize == "equalize":
        pixels = equalize_uint8(pixels)
    return pixels, original


def read_gray(path: str, contract: PreprocessContract) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` to a uint8 [S,S] array per the contract; also return the original
    (width, height). Raises :class:`ImageReadError` for anything that is not a readable image."""
    if (special := special_file_reason(path)) is not None:  # a FIFO would block open() forever
        raise ImageReadError(path, special)
    try:
        return _model_pixels(path, contract, is_dicom_file(path))
    except Exception as exc:  # any decoder failure is this file's error, not ours
        raise ImageReadError(path, _reason(path, exc)) from exc


def read_image(
    path: str, contract: PreprocessContract, skip_views: Collection[str] = ()
) -> ReadResult:
    """:func:`read_gray` for a scoring row: also the file's DICOM identifiers and the warnings
    and notes its decoding raised (captured, never printed). Raises :class:`ImageSkipped` for
    DICOM objects that are not scored and :class:`ImageReadError` (with ``info``) otherwise."""
    if (special := special_file_reason(path)) is not None:  # a FIFO would block open() forever
        raise ImageReadError(path, special)
    info: dict = {}
    notes: list[str] = []
    dicom = is_dicom_file(path)
    # Only DICOM decoders are native libraries that print (and redirecting costs syscalls).
    native = capture_native_stderr(notes) if dicom else contextlib.nullcontext()
    try:
        with capture_warnings(notes), native:
            pixels, size = _model_pixels(
                path, contract, dicom, skip_views=skip_views, info=info, notes=notes
            )
    except DicomSkipped as exc:
        raise ImageSkipped(path, exc.reason, _with_notes(info, notes)) from None
    except Exception as exc:  # any decoder failure is this file's error, not ours
        raise ImageReadError(path, _reason(path, exc), _with_notes(info, notes)) from exc
    return ReadResult(pixels, size, _with_notes(info, notes))


def _with_notes(info: dict, notes: list[str]) -> dict:
    return {**info, "warnings": "; ".join(notes) or None}


def is_dicom_content(data: bytes) -> bool:
    """How in-memory files are told apart (the content, never a name): a DICOM Part 10 file,
    or content in no picture format PIL knows that reads as a DICOM object (a dataset without
    the preamble, as older archives hold: `score` reads it from its .dcm name)."""
    if is_dicom_bytes(data):
        return True
    try:
        Image.open(io.BytesIO(data)).close()  # the header only: which format, if any
    except UnidentifiedImageError:
        return _parses_as_dicom(data)
    except Exception:  # a picture PIL knows, but cannot open: its read says why
        return False
    return False


def _parses_as_dicom(data: bytes) -> bool:
    """True when ``data`` reads as a DICOM object: a storage class or pixel data, which stray
    bytes that merely parse (zeros) do not have."""
    try:
        ds = read_dataset(io.BytesIO(data), header_only=True)
    except Exception:  # anything unreadable is simply not DICOM here
        return False
    return "SOPClassUID" in ds or "PixelData" in ds


def read_gray_bytes(
    data: bytes,
    contract: PreprocessContract,
    name: str = "upload",
    max_pixels: int | None = None,
    info: dict | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_gray` for an in-memory file (an upload), with the very same pixels; the
    format is sniffed from the content (:func:`is_dicom_content`), never taken from a name.
    ``info`` is filled as :func:`read_image` fills a row's (DICOM identifiers, colour)."""
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    try:
        return _model_pixels(
            io.BytesIO(data), contract, is_dicom_content(data), max_pixels, info=info
        )
    except Exception as exc:  # decoders never saw ``name``: there is nothing to strip
        raise ImageReadError(name, _reason(None, exc)) from exc


def display_gray(source: str | bytes, max_side: int) -> Image.Image:
    """The image as a grey picture for people, longest side at most ``max_side`` px (aspect
    kept). Call after the model's read succeeded: errors are not translated here."""
    if isinstance(source, bytes):
        gray, _ = open_gray(io.BytesIO(source), dicom=is_dicom_content(source), draft=max_side)
    else:
        gray, _ = open_gray(source, dicom=is_dicom_file(source), draft=max_side)
    gray.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return gray


def probe(path: str) -> tuple[int, int]:
    """Fully decode ``path`` as cheaply as possible and return its (width, height).

    JPEGs are decoded at 1/8 scale: every byte of the entropy-coded stream is still read, so a
    truncated or corrupt file fails here as it would in a loader. Raises :class:`ImageSkipped`
    for DICOM objects that hold no image to score (as ``score`` skips them).
    """
    if (special := special_file_reason(path)) is not None:
        raise ImageReadError(path, special)
    try:
        if is_dicom_file(path):
            return _dicom_gray(path).size
        with Image.open(path) as image:
            original = image.size
            image.draft(image.mode, (max(1, original[0] // 8), max(1, original[1] // 8)))
            image.load()
            return original
    except DicomSkipped as exc:  # a report or plan: `score` skips it too, so no error here
        raise ImageSkipped(path, exc.reason, exc.info) from None
    except Exception as exc:  # any decoder failure is this file's error, not ours
        raise ImageReadError(path, _reason(path, exc)) from exc
