"""DX films as a modality sends them: the committed real Kaggle X-rays (tests/data/images)
wrapped in DICOM Digital X-Ray (for presentation) datasets, PA chest, in one study or spread
over several, and a CT slice, written as DICOM files.

``write_dx_films(folder, 24)`` writes 24 files (cycling through the 39 films when asked for
more, each with its own UIDs); the network tests and ``bench/listen.py`` push or upload them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

KAGGLE = Path(__file__).parents[1] / "data" / "images" / "kaggle"
ROOT = "1.2.826.0.1.3680043.8.498.29"  # a UID root for generated test data


def study_uid(study: int = 0) -> str:
    """The Study Instance UID of study ``study`` (0-based) of :func:`write_dx_films`."""
    return f"{ROOT}.1.{study + 1}"


STUDY = study_uid(0)


def kaggle_films() -> list[Path]:
    """The committed real films, sorted."""
    return sorted(KAGGLE.rglob("*.jpeg"))


def _dataset(
    pixels: np.ndarray, index: int, sop_class: str, modality: str, study: int = 0
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}.3.{index}"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = f"CXRNET{study + 1:03d}", f"Test^Network{study + 1}"
    ds.StudyInstanceUID = study_uid(study)
    ds.SeriesInstanceUID = f"{ROOT}.2.{study + 1 if modality == 'DX' else 900}"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261207", "120000", f"ACC29{study}"
    ds.StudyID = str(study + 1)
    ds.Modality, ds.InstanceNumber = modality, index + 1
    if modality == "DX":
        ds.ViewPosition, ds.BodyPartExamined = "PA", "CHEST"
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


def write_dx_films(folder: Path, count: int, studies: int = 1) -> list[Path]:
    """``count`` DX films (real X-rays, 8-bit) under ``folder``, film i in study i % studies;
    past the 39 committed films they repeat, each copy with its own UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    jpegs = kaggle_films()
    paths = []
    for index in range(count):
        pixels = np.asarray(Image.open(jpegs[index % len(jpegs)]).convert("L"))
        ds = _dataset(
            pixels, index, uid.DigitalXRayImageStorageForPresentation, "DX", index % studies
        )
        path = folder / f"dx-{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def ct_slice(folder: Path, sop_class: str = uid.CTImageStorage) -> Path:
    """A CT slice (a noise pattern) as ``sop_class``: CT Image Storage, or a class listen
    accepts (Secondary Capture) to reach the input gate."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (128, 128))
    ds = _dataset(pixels, 900, sop_class, "CT")
    path = folder / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
