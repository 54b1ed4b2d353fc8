"""DX films for the network tests: the committed real Kaggle X-rays wrapped in DX datasets (one
study), and a CT slice, written as DICOM files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

KAGGLE = Path(__file__).parents[1] / "data" / "images" / "kaggle"
ROOT = "1.2.826.0.1.3680043.8.498.29"  # a UID root for generated test data
STUDY = f"{ROOT}.1.1"


def _dataset(pixels: np.ndarray, index: int, sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}.3.{index}"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = "CXRNET001", "Test^Network"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = f"{ROOT}.2.{1 if modality == 'DX' else 2}"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261207", "120000", "ACC29"
    ds.Modality, ds.InstanceNumber = modality, index + 1
    if modality == "DX":
        ds.ViewPosition, ds.BodyPartExamined = "PA", "CHEST"
        ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    return ds


def write_dx_films(folder: Path, count: int) -> list[Path]:
    """``count`` DX films (real X-rays, 8-bit, one study) written under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    jpegs = sorted(KAGGLE.rglob("*.jpeg"))[:count]
    assert len(jpegs) == count, "not enough committed films"
    paths = []
    for index, jpeg in enumerate(jpegs):
        pixels = np.asarray(Image.open(jpeg).convert("L"))
        ds = _dataset(pixels, index, uid.DigitalXRayImageStorageForPresentation, "DX")
        path = folder / f"dx-{index:03d}.dcm"
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
