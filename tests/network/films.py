"""DX films as a modality sends them: the committed real Kaggle X-rays (tests/data/images)
wrapped in DICOM Digital X-Ray (for presentation) datasets, PA chest, spread over studies.

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
UID_ROOT = "1.2.826.0.1.3680043.8.498.29"  # generated test data of the network tests


def kaggle_films() -> list[Path]:
    """The committed real films, sorted."""
    return sorted(KAGGLE.rglob("*.jpeg"))


def dx_dataset(pixels: np.ndarray, index: int, studies: int = 2) -> Dataset:
    """A DX For Presentation dataset (Explicit VR Little Endian, 8-bit MONOCHROME2) of
    ``pixels``; instance ``index`` of ``studies`` studies (one patient each)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.3.{index}"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    study = index % studies
    ds.PatientID = f"NET{study:03d}"
    ds.PatientName = f"Network^Test{study}"
    ds.StudyInstanceUID = f"{UID_ROOT}.1.{study}"
    ds.SeriesInstanceUID = f"{UID_ROOT}.2.{study}"
    ds.StudyID, ds.AccessionNumber, ds.InstanceNumber = str(study), f"A{study:05d}", index + 1
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "PA", "CHEST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return ds


def write_dx_films(folder: Path, count: int, studies: int = 2) -> list[Path]:
    """``count`` DX files in ``folder`` (``dx-00000.dcm`` ...), from the real films in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    films = kaggle_films()
    written = []
    for index in range(count):
        pixels = np.asarray(Image.open(films[index % len(films)]).convert("L"))
        path = folder / f"dx-{index:05d}.dcm"
        dx_dataset(pixels, index, studies).save_as(path, enforce_file_format=True)
        written.append(path)
    return written
