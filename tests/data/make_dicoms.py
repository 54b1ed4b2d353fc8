"""Write tests/data/images/dicom/: CR/DX DICOMs built from two committed Kaggle films, one per
transfer syntax an archive holds, plus a headerless file and a report. Run once; the output is
committed (see ATTRIBUTION.md):

    python -m tests.data.make_dicoms

The 12-bit films are the 8-bit film times 16 (a CR's usual depth); every lossless file decodes
to exactly the uncompressed one's pixels, which the tests check.
"""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

HERE = Path(__file__).parent / "images"
OUT = HERE / "dicom"
SIDE = 160  # small files: the whole set stays a few hundred KB
FILMS = {
    "pneumonia": HERE / "kaggle/train/PNEUMONIA/person10_bacteria_43.jpeg",
    "normal": HERE / "kaggle/train/NORMAL/IM-0115-0001.jpeg",
}
STUDY_ROOT = "1.2.826.0.1.3680043.8.498.16"  # a UID root for generated test data


def _film(name: str) -> np.ndarray:
    image = Image.open(FILMS[name]).convert("L")
    return np.asarray(image.resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def _dataset(
    pixels: np.ndarray, index: int, modality: str, view: str, bits: int, syntax: str
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = (
        uid.ComputedRadiographyImageStorage
        if modality == "CR"
        else uid.DigitalXRayImageStorageForPresentation
    )
    ds.file_meta.MediaStorageSOPInstanceUID = f"{STUDY_ROOT}.3.{index}"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = f"CXRFAST{index % 2:03d}"
    ds.StudyInstanceUID = f"{STUDY_ROOT}.1.{index % 2}"
    ds.SeriesInstanceUID = f"{STUDY_ROOT}.2.{index}"
    ds.Modality = modality
    ds.ViewPosition = view
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if bits > 8:
        # A window over the lungs' range, so the intensity rules have something to apply.
        ds.WindowCenter, ds.WindowWidth = 2000, 3600
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    return ds


def _save(ds: Dataset, pixels: np.ndarray, frame: bytes | None, name: str, **kwargs) -> None:
    if frame is None:
        ds.PixelData = pixels.astype("<u2" if ds.BitsAllocated == 16 else np.uint8).tobytes()
    else:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
    if kwargs.get("preamble", True):
        ds.save_as(OUT / name, enforce_file_format=True)
    else:  # no 128-byte preamble, no 'DICM', no meta group: the dataset alone
        del ds.file_meta
        ds.preamble = None
        ds.save_as(OUT / name, implicit_vr=True, little_endian=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    film8 = _film("pneumonia")
    film12 = film8.astype(np.uint16) * 16
    cases = [
        ("cr_uncompressed.dcm", uid.ExplicitVRLittleEndian, 12, None),
        ("cr_rle.dcm", uid.RLELossless, 12, "rle"),
        ("cr_jpeg_lossless_sv1.dcm", uid.JPEGLosslessSV1, 12, "ljpeg"),
        ("cr_jpegls_lossless.dcm", uid.JPEGLSLossless, 12, "jpegls"),
        ("cr_j2k_lossless.dcm", uid.JPEG2000Lossless, 12, "j2k"),
        ("cr_jpeg_extended_12bit.dcm", uid.JPEGExtended12Bit, 12, "jpeg12"),
    ]
    for index, (name, syntax, bits, codec) in enumerate(cases):
        ds = _dataset(film12, index, "CR", "PA", bits, syntax)
        if codec == "rle":
            ds.compress(
                uid.RLELossless, film12, encoding_plugin="pydicom", generate_instance_uid=False
            )
            ds.save_as(OUT / name, enforce_file_format=True)
            continue
        frame = {
            None: None,
            "ljpeg": lambda: imagecodecs.jpeg8_encode(film12, lossless=True, predictor=1),
            "jpegls": lambda: imagecodecs.jpegls_encode(film12),
            "j2k": lambda: imagecodecs.jpeg2k_encode(film12, reversible=True, codecformat="J2K"),
            "jpeg12": lambda: imagecodecs.jpeg8_encode(film12, level=92, bitspersample=12),
        }[codec]
        _save(ds, film12, frame() if frame else None, name)
    # JPEG Baseline, as DX: the DALI path's input (MONOCHROME2 and MONOCHROME1).
    baseline = imagecodecs.jpeg8_encode(film8, level=90)
    ds = _dataset(film8, 10, "DX", "PA", 8, uid.JPEGBaseline8Bit)
    _save(ds, film8, baseline, "dx_jpeg_baseline.dcm")
    ds = _dataset(film8, 11, "DX", "AP", 8, uid.JPEGBaseline8Bit)
    ds.PhotometricInterpretation = "MONOCHROME1"  # the film inverted: bone stored dark
    _save(ds, film8, imagecodecs.jpeg8_encode(255 - film8, level=90), "dx_jpeg_baseline_mono1.dcm")
    # An older archive's file: no preamble, no meta header, implicit VR; a lateral view.
    normal = _film("normal")
    ds = _dataset(normal, 12, "DX", "LATERAL", 8, uid.ImplicitVRLittleEndian)
    _save(ds, normal, None, "dx_lateral_no_preamble.dcm", preamble=False)
    # A report in the same study: no pixel data, a skipped row.
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = uid.BasicTextSRStorage
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID = f"{STUDY_ROOT}.3.20"
    report.PatientID, report.StudyInstanceUID = "CXRFAST000", f"{STUDY_ROOT}.1.0"
    report.SeriesInstanceUID, report.Modality = f"{STUDY_ROOT}.2.20", "SR"
    report.save_as(OUT / "sr_report.dcm", enforce_file_format=True)


if __name__ == "__main__":
    main()
