"""DICOM as archives hold it: every common transfer syntax, headerless files, non-image objects,
identifiers, captured warnings (tests/data/images/dicom, pydicom's own test files)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid

from cxr_fast.contract import PreprocessContract
from cxr_fast.data import dicom_intensity
from cxr_fast.data.decode import ImageReadError, ImageSkipped, read_image
from cxr_fast.data.dicom import read_dataset

DICOM = Path(__file__).parent / "images" / "dicom"
LOSSLESS = ["cr_rle.dcm", "cr_jpeg_lossless_sv1.dcm", "cr_jpegls_lossless.dcm"]
LOSSLESS.append("cr_j2k_lossless.dcm")
CONTRACT = PreprocessContract(image_size=96)
# The files ship inside the pydicom wheel; a test never downloads (absent ones are skipped).
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
COMPRESSED = {
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    *uid.JPEGLSTransferSyntaxes,
    uid.JPEGExtended12Bit,
    *uid.JPEG2000TransferSyntaxes,
    uid.RLELossless,
}
# pydicom's README: "a copy of JPEG2000.dcm with 4 of the encoded pixel data bytes replaced
# with the Sequence Delimiter ... almost certainly not a valid JPEG anymore".
CORRUPT = {"JPEG2000-embedded-sequence-delimiter.dcm"}
NON_IMAGES = {
    "reportsi.dcm": "SR",
    "test-SR.dcm": "SR",
    "rtplan.dcm": "RT Plan",
    "rtstruct.dcm": "RT Structure Set",
    "waveform_ecg.dcm": "Waveform",
    "rtdose.dcm": "RT Dose",
    "ExplVR_LitEndNoMeta.dcm": "RT Ion Plan",  # no preamble either: parsed, then skipped
    "ExplVR_BigEndNoMeta.dcm": "RT Ion Plan",
}


def test_every_lossless_syntax_gives_the_uncompressed_pixels():
    reference = read_image(str(DICOM / "cr_uncompressed.dcm"), CONTRACT)
    for name in LOSSLESS:
        ds = read_dataset(str(DICOM / name))
        assert ds.file_meta.TransferSyntaxUID.is_compressed
        read = read_image(str(DICOM / name), CONTRACT)
        np.testing.assert_array_equal(read.pixels, reference.pixels, err_msg=name)
        assert read.size == reference.size == (160, 160)
        assert read.info["warnings"] is None


def test_jpeg_extended_12_bit_decodes_close_to_the_original():
    # pydicom's GDCM plugin refuses 12-bit JPEG Extended: this is the imagecodecs plugin.
    reference = read_image(str(DICOM / "cr_uncompressed.dcm"), CONTRACT).pixels.astype(float)
    lossy = read_image(str(DICOM / "cr_jpeg_extended_12bit.dcm"), CONTRACT).pixels
    assert np.abs(lossy - reference).mean() < 2.0


def test_identifiers_come_with_the_pixels():
    read = read_image(str(DICOM / "cr_jpeg_lossless_sv1.dcm"), CONTRACT)
    ds = pydicom.dcmread(DICOM / "cr_jpeg_lossless_sv1.dcm", stop_before_pixels=True)
    assert read.info["sop_instance_uid"] == ds.SOPInstanceUID
    assert read.info["study_instance_uid"] == ds.StudyInstanceUID
    assert read.info["series_instance_uid"] == ds.SeriesInstanceUID
    assert (read.info["patient_id"], read.info["modality"]) == (ds.PatientID, "CR")
    assert (read.info["view_position"], read.info["body_part_examined"]) == ("PA", "CHEST")


def test_headerless_file_is_read_and_views_can_be_skipped(tmp_path):
    path = DICOM / "dx_lateral_no_preamble.dcm"
    assert path.read_bytes()[128:132] != b"DICM"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(path)
    read = read_image(str(path), CONTRACT)
    assert read.size == (160, 160) and read.info["view_position"] == "LATERAL"
    with pytest.raises(ImageSkipped, match="LATERAL") as skipped:
        read_image(str(path), CONTRACT, skip_views={"LATERAL", "LL"})
    assert skipped.value.info["modality"] == "DX"  # a skipped row keeps its identifiers
    text = tmp_path / "notes.dcm"
    text.write_text("a radiology report saved as .dcm, not DICOM at all\n" * 5)
    with pytest.raises(ImageReadError, match="not DICOM") as failed:
        read_image(str(text), CONTRACT)
    assert not isinstance(failed.value, ImageSkipped)


def test_a_report_is_skipped_not_an_error():
    with pytest.raises(ImageSkipped, match="Basic Text SR Storage without pixel data") as skip:
        read_image(str(DICOM / "sr_report.dcm"), CONTRACT)
    assert skip.value.info["sop_instance_uid"].endswith(".3.20")


def test_monochrome1_is_inverted_to_the_usual_look():
    mono2 = read_image(str(DICOM / "dx_jpeg_baseline.dcm"), CONTRACT).pixels.astype(float)
    mono1 = read_image(str(DICOM / "dx_jpeg_baseline_mono1.dcm"), CONTRACT).pixels
    assert np.abs(mono1 - mono2).mean() < 2.0


def test_linear_window_equals_pydicoms_own_functions():
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(DICOM / "cr_uncompressed.dcm")
    ds.WindowCenter, ds.WindowWidth = 1500, 1200  # narrow: clips both ends
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024  # the window is in rescaled units
    pixels = ds.pixel_array
    rule = dicom_intensity.linear_intensity(ds)
    assert rule is not None and rule.low is not None
    ours = dicom_intensity.apply(pixels, ds).astype(int)
    theirs = dicom_intensity.stretch_to_uint8(
        apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    ).astype(int)
    assert np.abs(ours - theirs).max() <= 1
    assert (ours == 0).mean() > 0.05 and (ours == 255).mean() > 0.05  # the window did clip


def _pydicom_files() -> list[Path]:
    files = sorted(PYDICOM_FILES.glob("*.dcm"))
    if not files:
        pytest.skip("pydicom's test files are not installed")
    return files


def test_pydicom_test_files_compressed_images_ok_non_images_skipped(capfd):
    statuses: dict[str, str] = {}
    for path in _pydicom_files():
        try:
            read_image(str(path), CONTRACT)
            statuses[path.name] = "ok"
        except ImageSkipped:
            statuses[path.name] = "skipped"
        except ImageReadError:
            statuses[path.name] = "error"
    checked = 0
    for path in _pydicom_files():
        if path.name in CORRUPT or statuses[path.name] == "skipped":
            continue
        with warnings.catch_warnings():  # this test's own read: its warnings are not checked
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax in COMPRESSED and int(ds.get("NumberOfFrames") or 1) == 1:
            assert statuses[path.name] == "ok", path.name
            checked += 1
    assert checked >= 15
    for name, kind in NON_IMAGES.items():
        if name in statuses:
            assert statuses[name] == "skipped", (name, kind)
    # Warnings (padding, implicit VR, GDCM/OpenJPEG's own prints) went into rows, not here.
    out, err = capfd.readouterr()
    assert out == "" and err == ""
