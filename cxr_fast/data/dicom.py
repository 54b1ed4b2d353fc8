"""Reading DICOM as hospital archives hold it: with or without the Part 10 preamble, compressed
with any common transfer syntax, images mixed with reports, plans and waveforms.

- A file without the ``DICM`` preamble is read with ``force=True`` when what it holds parses as
  DICOM (known public tags); its transfer syntax is inferred from how it was read.
- Objects that are no image to score (no pixel data: SR, RT plans, waveforms, presentation
  states; or pixel data that is no picture: RT dose grids, segmentations) raise
  :class:`DicomSkipped`: a ``skipped`` row, not an error.
- Multi-frame images: the first frame is scored and the row's note says so (a chest X-ray
  series with several frames is rare; one prediction per file keeps one row per file).
- The identifiers that join a row back to the PACS travel with every outcome.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import BinaryIO

import numpy as np

from cxr_fast.data import dicom_intensity
from cxr_fast.data.dicom_codecs import register_decoders
from cxr_fast.data.pixel_limit import check_declared_bytes, check_pixels

# Parquet column -> DICOM keyword; null for other formats.
IDENTIFIER_KEYWORDS: dict[str, str] = {
    "patient_id": "PatientID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "modality": "Modality",
    "view_position": "ViewPosition",
    "body_part_examined": "BodyPartExamined",
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Storage classes whose pixel data is no picture to score (words of their UID names).
_NOT_PICTURES = ("RT Dose", "Segmentation", "Parametric Map")
# Smaller than this is a degenerate array, not an image; DICOM images from this size up to the
# general 32 px minimum are scored with a note (the header, not the size, says they are images).
MIN_DICOM_SIDE = 8


class DicomSkipped(Exception):
    """A DICOM object that is deliberately not scored; ``reason`` goes into the row."""

    def __init__(self, reason: str, info: dict) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = info


def _rewind(source: str | BinaryIO) -> None:
    if not isinstance(source, str):
        source.seek(0)


def _looks_like_dicom(ds) -> bool:
    """A forced read of a non-DICOM file yields unknown even-group tags or only 'private'
    ones; a real headerless file yields dictionary tags."""
    from pydicom.datadict import dictionary_has_tag, repeater_has_tag

    public = 0
    for tag in ds.keys():  # noqa: SIM118 - tags only: iterating ds would convert elements
        if tag.is_private:
            continue
        if not (dictionary_has_tag(tag) or repeater_has_tag(tag)):
            return False
        public += 1
    return public > 0


def _infer_transfer_syntax(ds) -> None:
    """Headerless files (and some broken headers) lack (0002,0010): take the encoding pydicom
    found while reading. Encapsulated (compressed) data cannot be inferred and stays an error."""
    from pydicom import uid
    from pydicom.dataset import FileMetaDataset

    if ds.get("file_meta") is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta or "PixelData" not in ds:
        return
    if ds["PixelData"].is_undefined_length:
        return
    implicit, little = ds.original_encoding
    if implicit:
        ds.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = (
            uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
        )


def read_dataset(
    source: str | BinaryIO, *, header_only: bool = False, max_pixels: int | None = None
):
    """The dataset in ``source``; ``force=True`` only when the forced read parses as DICOM.
    ``header_only``: large values (the pixel data) are left on disk, but still listed, so
    :func:`skip_reason` can tell images from reports. ``max_pixels``: refuse a header that
    declares an element larger than any image within that many pixels takes."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    register_decoders()
    defer = 1024 if header_only else None
    try:
        ds = pydicom.dcmread(source, defer_size=defer)
    except InvalidDicomError:
        _rewind(source)
        try:
            ds = pydicom.dcmread(source, force=True, defer_size=defer)
        except Exception:
            ds = None
        if ds is None or not _looks_like_dicom(ds):
            raise ValueError(
                "not DICOM: no 'DICM' preamble, and the content does not parse as DICOM"
            ) from None
    _check_lengths(ds, max_pixels)
    _infer_transfer_syntax(ds)
    return ds


# An element of undefined length (a sequence, encapsulated pixel data) ends at a delimiter.
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _check_lengths(ds, max_pixels: int | None) -> None:
    """A header bomb: an element that declares gigabytes (read from a stream, its value is
    just the rest of the file, so nothing else would tell)."""
    if max_pixels is None:
        return
    for element in ds.elements():  # raw elements: the lengths as the header declares them
        length = getattr(element, "length", None)
        if length is not None and length != _UNDEFINED_LENGTH:
            check_declared_bytes(f"DICOM element {element.tag}", length, max_pixels)


def identifiers(ds) -> dict[str, str | None]:
    """The PACS identifiers of ``ds`` (None where absent or empty)."""
    found: dict[str, str | None] = {}
    for column, keyword in IDENTIFIER_KEYWORDS.items():
        value = ds.get(keyword)
        found[column] = None if value is None else (str(value).strip() or None)
    # No column of its own: the input gate reads it (cxr_fast/gate/metadata.py).
    sop_class = ds.get("SOPClassUID")
    found["sop_class_uid"] = None if sop_class is None else (str(sop_class).strip() or None)
    return found


def object_name(ds) -> str:
    """The storage class by name (e.g. 'Basic Text SR Storage'), or a generic phrase."""
    from pydicom.uid import UID

    sop = ds.get("SOPClassUID")
    name = UID(str(sop)).name if sop else ""
    return name if name and name != str(sop) else "a DICOM object"


def skip_reason(ds, skip_views: Collection[str] = ()) -> str | None:
    """Why ``ds`` is not scored (None: score it)."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        return f"not an image: {object_name(ds)} without pixel data"
    name = object_name(ds)
    if any(word in name for word in _NOT_PICTURES):
        return f"not an image: {name} (its pixel data is no radiograph)"
    view = str(ds.get("ViewPosition") or "").strip().upper()
    if view and view in skip_views:
        return f"view {view} skipped (--skip-views)"
    return None


def frame_count(ds) -> int:
    """NumberOfFrames (1 when absent)."""
    value = ds.get("NumberOfFrames")
    return int(value) if value not in (None, "") else 1


def check_size(ds, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) from the header; refuses degenerate or oversized images before decoding."""
    if ds.get("Rows") is None or ds.get("Columns") is None:
        raise ValueError("pixel data without Rows/Columns (an incomplete image module)")
    width, height = int(ds.Columns), int(ds.Rows)
    check_pixels((width, height), max_pixels)
    if min(width, height) < MIN_DICOM_SIDE:
        raise ValueError(f"image is {width}x{height} pixels, below the {MIN_DICOM_SIDE} px minimum")
    return width, height


def first_frame(ds) -> tuple[np.ndarray, list[str]]:
    """The first frame's pixels (decoded by pydicom's plugins) and notes about it."""
    frames = frame_count(ds)
    notes = []
    if frames > 1:
        ds.pixel_array_options(index=0)  # decode only the frame that is scored
        notes.append(f"multi-frame ({frames} frames): frame 1 scored")
    return ds.pixel_array, notes


def to_gray8(pixels: np.ndarray, ds) -> np.ndarray:
    """A decoded frame -> one uint8 grey plane (colour by luma, grey by the intensity rules)."""
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        from PIL import Image

        return np.asarray(Image.fromarray(pixels[..., :3].astype(np.uint8)).convert("L"))
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D frame, got pixel data of shape {pixels.shape}")
    return dicom_intensity.apply(pixels, ds)


def read_dicom(
    source: str | BinaryIO,
    *,
    max_pixels: int | None = None,
    skip_views: Collection[str] = (),
    info: dict | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Decode ``source`` to a uint8 grey plane and notes; fills ``info`` with the identifiers as
    soon as they are known (so error rows carry them too). Raises :class:`DicomSkipped`."""
    info = {} if info is None else info
    ds = read_dataset(source, max_pixels=max_pixels)
    info.update(identifiers(ds))
    reason = skip_reason(ds, skip_views)
    if reason is not None:
        raise DicomSkipped(reason, info)
    check_size(ds, max_pixels)
    pixels, notes = first_frame(ds)
    return to_gray8(pixels, ds), notes
